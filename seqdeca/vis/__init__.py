"""Pictures for people: image grids and PNG saving (never imported by models/)."""

from seqdeca.vis.grid import image_grid, save_png, to_uint8

__all__ = ["image_grid", "save_png", "to_uint8"]
