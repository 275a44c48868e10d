"""Pictures a person can look at: grids, GIFs, strips and plots."""

from .grid import make_grid, save_grid, save_gif, save_strip  # noqa: F401
