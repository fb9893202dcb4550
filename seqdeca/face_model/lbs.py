"""Linear blend skinning for FLAME-format models, as pure functions over a flat batch N.

The pipeline (FLAME / SMPL family)::

    v_shaped = v_template + blend_shapes(shape, shapedirs) + blend_shapes(expression, exprdirs)
    joints   = regress_joints(j_regressor, v_shaped)
    R        = axis_angle_to_matrix(full_pose)                     # (N, J, 3, 3)
    v_posed  = v_shaped + blend_shapes(pose_features(R), posedirs)  # pose correctives
    posed_joints, A = rigid_transforms(R, joints, parents)          # world joint frames
    vertices = skin_vertices(v_posed, A, lbs_weights)

Every function takes a flat batch ``N``; callers fold ``(B, T)`` into ``N`` first. Nothing here
knows about FLAME's sizes: V, J, S, E come from the arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from seqdeca.geometry.rotation import axis_angle_to_matrix


def blend_shapes(coeffs: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Linear combination of per-vertex displacement bases.

    Args:
        coeffs: (N, K) coefficients. K may be smaller than the basis size: the first K
            components are used (the others count as zero).
        dirs: (V, 3, K') basis with K' >= K.

    Returns:
        (N, V, 3) displacements (same units as ``dirs``).
    """
    k = coeffs.shape[-1]
    return torch.einsum("nk,vck->nvc", coeffs, dirs[..., :k])


def regress_joints(j_regressor: torch.Tensor, vertices: torch.Tensor) -> torch.Tensor:
    """Joint locations as fixed linear combinations of vertices.

    Args:
        j_regressor: (J, V) regressor (rows usually sum to 1).
        vertices: (N, V, 3).

    Returns:
        (N, J, 3) joints.
    """
    return torch.einsum("jv,nvc->njc", j_regressor, vertices)


def pose_features(rot_mats: torch.Tensor) -> torch.Tensor:
    """Pose-corrective features: ``R - I`` of every non-root joint, flattened row-major.

    Args:
        rot_mats: (N, J, 3, 3) local joint rotations (joint 0 is the root).

    Returns:
        (N, 9 * (J - 1)) features, zero at the rest pose; joint 1's nine entries come first.
    """
    n, j = rot_mats.shape[:2]
    eye = torch.eye(3, dtype=rot_mats.dtype, device=rot_mats.device)
    return (rot_mats[:, 1:] - eye).reshape(n, 9 * (j - 1))


def rigid_transforms(
    rot_mats: torch.Tensor, joints: torch.Tensor, parents: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Compose local joint rotations along the kinematic tree.

    Each joint rotates about its own rest location; children inherit their parent's frame.

    Args:
        rot_mats: (N, J, 3, 3) local rotations.
        joints: (N, J, 3) rest-pose joint locations.
        parents: J parent indices, -1 for the root, every parent listed before its children.

    Returns:
        posed_joints: (N, J, 3) joint locations after posing.
        skinning: (N, J, 4, 4) transforms that map a REST-pose point rigidly attached to joint j
            to its posed location (world frame of joint j composed with the inverse rest offset).
    """
    j = joints.shape[1]
    # Offsets of every joint from its parent in the rest pose (the root keeps its location).
    offsets = [joints[:, 0]] + [joints[:, i] - joints[:, parents[i]] for i in range(1, j)]
    local = _homogeneous(rot_mats, torch.stack(offsets, dim=1))  # (N, J, 4, 4)
    world = [local[:, 0]]
    for i in range(1, j):
        world.append(world[parents[i]] @ local[:, i])
    world_t = torch.stack(world, dim=1)  # (N, J, 4, 4)
    posed_joints = world_t[..., :3, 3]
    # Remove the rest location: T_j * (x - j_rest) expressed as one affine map of x.
    shift = torch.einsum("njab,njb->nja", world_t[..., :3, :3], joints)
    skinning = _homogeneous(world_t[..., :3, :3], posed_joints - shift)
    return posed_joints, skinning


def skin_vertices(
    vertices: torch.Tensor, transforms: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Linear blend skinning.

    Args:
        vertices: (N, V, 3) rest-pose vertices (with blend shapes applied).
        transforms: (N, J, 4, 4) per-joint skinning transforms from :func:`rigid_transforms`.
        weights: (V, J) skinning weights.

    Returns:
        (N, V, 3) posed vertices.
    """
    per_vertex = torch.einsum("vj,njab->nvab", weights, transforms[..., :3, :])  # (N, V, 3, 4)
    return torch.einsum("nvab,nvb->nva", per_vertex[..., :3], vertices) + per_vertex[..., 3]


def lbs(
    shape: torch.Tensor,
    expression: torch.Tensor,
    full_pose: torch.Tensor,
    *,
    v_template: torch.Tensor,
    shapedirs: torch.Tensor,
    exprdirs: torch.Tensor,
    posedirs: torch.Tensor,
    j_regressor: torch.Tensor,
    parents: Sequence[int],
    lbs_weights: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The full FLAME-format forward pass on a flat batch.

    Args:
        shape: (N, S') identity coefficients, S' <= S.
        expression: (N, E') expression coefficients, E' <= E.
        full_pose: (N, 3 * J) axis-angle (radians) per joint, in joint order.
        v_template: (V, 3) mean shape, metres.
        shapedirs: (V, 3, S); exprdirs: (V, 3, E); posedirs: (V, 3, 9 * (J - 1)).
        j_regressor: (J, V).
        parents: J parent indices (-1 for the root).
        lbs_weights: (V, J).

    Returns:
        vertices: (N, V, 3) posed vertices, metres.
        joints: (N, J, 3) posed joints, metres.
        rot_mats: (N, J, 3, 3) local joint rotations (reused for landmark selection).
    """
    n = full_pose.shape[0]
    v_shaped = v_template + blend_shapes(shape, shapedirs) + blend_shapes(expression, exprdirs)
    joints = regress_joints(j_regressor, v_shaped)
    rot_mats = axis_angle_to_matrix(full_pose.reshape(n, j_regressor.shape[0], 3))
    v_posed = v_shaped + blend_shapes(pose_features(rot_mats), posedirs)
    posed_joints, transforms = rigid_transforms(rot_mats, joints, parents)
    return skin_vertices(v_posed, transforms, lbs_weights), posed_joints, rot_mats


def _homogeneous(rot: torch.Tensor, trans: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotations and (..., 3) translations -> (..., 4, 4) rigid transforms."""
    top = torch.cat([rot, trans[..., None]], dim=-1)  # (..., 3, 4)
    bottom = torch.zeros_like(top[..., :1, :])
    bottom[..., 0, 3] = 1
    return torch.cat([top, bottom], dim=-2)
