"""Inference (video2mesh): video -> tracking and crops -> centred windows -> network or fitting
-> face model -> meshes, codes, landmarks, overlay video and a summary.

Import the submodules directly (``seqdeca.inference.checkpoint``, ``.windows``, ``.fit``,
``.pipeline``); this package file imports nothing heavy.
"""
