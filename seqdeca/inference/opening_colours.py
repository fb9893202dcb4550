"""The colours seen through the openings of the face mesh (eyes, mouth), learnt from the frames.

A face model without eyeballs or a mouth interior renders nothing through its openings. Fit
mode paints what the frames show there instead (:func:`~seqdeca.render.openings.fill_openings`):
per face, an albedo for each cell of each opening (a coarse polar grid,
:func:`~seqdeca.render.openings.opening_cells`): the mean, over the pixels seen through the cell
inside the 3-class face mask, of the frame divided by the light's shading of a camera-facing
surface, shrunk towards its opening's mean by ``PRIOR_PIXELS`` pixels' worth. The grid is
coarse: it separates the corners of an eye from its middle and the lips' edge from the inside
of the mouth, not an iris or teeth; an opening never seen open stays black.
"""

from __future__ import annotations

import torch

from seqdeca.inference.texture_map import MIN_SHADING  # a failed light teaches nothing
from seqdeca.render.openings import facing_shading

__all__ = ["OpeningColours"]

PRIOR_PIXELS = 4.0  # weight of its opening's mean in a cell's colour


class OpeningColours:
    """Running mean albedo of each cell of the openings.

    Args:
        cell_opening: (C,) int64 the opening of each cell
            (:func:`~seqdeca.render.openings.cell_openings`).
    """

    def __init__(self, cell_opening: torch.Tensor) -> None:
        self.cell_opening = cell_opening
        self.sums = torch.zeros(len(cell_opening), 3, device=cell_opening.device)
        self.weights = torch.zeros(len(cell_opening), device=cell_opening.device)

    def add(
        self,
        cells: torch.Tensor,
        images: torch.Tensor,
        classes: torch.Tensor,
        light: torch.Tensor,
        keep: torch.Tensor,
    ) -> None:
        """Add the pixels seen through the openings in the frames ``keep``.

        Args:
            cells: (n, H, W) :func:`~seqdeca.render.openings.opening_cells` of the frames.
            images: (n, 3, H, W) the frames at that size, RGB in [0, 1].
            classes: (n, H, W) their 3-class masks (0: not face).
            light: (n, 9, 3) their SH lights.
            keep: (n,) bool, the frames to learn from.
        """
        shade = facing_shading(light)  # (n, 3)
        use = (cells >= 0) & (classes > 0) & keep[:, None, None].to(cells.device)
        use &= (shade.amin(-1) > MIN_SHADING)[:, None, None]
        frame, row, col = use.nonzero(as_tuple=True)
        if not frame.numel():
            return
        albedo = images.permute(0, 2, 3, 1)[frame, row, col] / shade[frame]
        which = cells[frame, row, col]
        self.sums.index_add_(0, which, albedo.to(self.sums))
        self.weights += torch.bincount(which, minlength=self.weights.shape[0]).to(self.weights)

    def opening_means(self) -> torch.Tensor:
        """(K, 3) each opening's mean albedo so far (black for one never seen)."""
        k = int(self.cell_opening.max()) + 1 if len(self.cell_opening) else 0
        sums = self.sums.new_zeros(k, 3).index_add_(0, self.cell_opening, self.sums)
        weights = self.weights.new_zeros(k).index_add_(0, self.cell_opening, self.weights)
        return sums / weights.clamp_min(1)[:, None]

    def colours(self) -> torch.Tensor:
        """(C, 3) each cell's albedo so far in [0, 1]: its mean shrunk towards its opening's."""
        prior = self.opening_means()[self.cell_opening]
        colours = (self.sums + PRIOR_PIXELS * prior) / (self.weights + PRIOR_PIXELS)[:, None]
        return colours.clamp(0, 1)
