"""seqdeca: temporal 3D face reconstruction from video (a "sequential DECA").

Shape glossary used in every docstring of the package:

    B  clips (windows) in a batch          T  frames in a window (time is always dim 1)
    N  B*T images, when time is folded     V  mesh vertices          F  mesh faces
    J  skeleton joints (5: root, neck, jaw, left eye, right eye)
    L  landmarks                           K  action units
    S  identity (shape) components         E  expression components
    H, W  image or UV-map height and width

Units: model space is metres, y up, z towards the camera. Normalised image coordinates are in
[-1, 1] with x to the right and y DOWN (DECA's convention after its y flip); pixel coordinates
are continuous with the centre of pixel (row i, column j) at (j + 0.5, i + 0.5). RGB is in [0, 1].
Rotations are axis-angle (radians) unless a name says otherwise.
"""

__version__ = "0.1.0"
