"""Feature grids, named by their size relative to the HR image: ``"1"``, ``"1/2"``, ``"1/4"``, ``"1/8"``, ``"1/16"``.

A :class:`Grid` is the name itself (a ``str``, so it keys dicts and configs) with its factor: HR pixels
per grid cell. This is the one place that knows how a grid name maps to a size.
"""

from __future__ import annotations

__all__ = ["Grid", "GRIDS", "QUERY_GRID", "TRANSFER_GRIDS"]


class Grid(str):
    """A grid name (``"1/4"``) with its :attr:`factor` (4 HR pixels per cell)."""

    def __new__(cls, name: str) -> Grid:
        num, _, den = name.partition("/")
        if num != "1" or not (den == "" or den.isdigit()) or den == "0":
            raise ValueError(f"grid names are '1' or '1/n', got {name!r}")
        return super().__new__(cls, name)

    @property
    def factor(self) -> int:
        """HR pixels per cell along each axis."""
        _, _, den = self.partition("/")
        return int(den) if den else 1

    def cells_per(self, coarser: Grid) -> int:
        """How many cells of this grid span one cell of ``coarser`` along each axis."""
        if coarser.factor % self.factor:
            raise ValueError(f"grid {coarser} is not a multiple of {self}")
        return coarser.factor // self.factor


GRIDS: tuple[Grid, ...] = tuple(Grid(g) for g in ("1", "1/2", "1/4", "1/8", "1/16"))
QUERY_GRID = Grid("1/4")  # queries live on the 1/4 grid (relu3), as TTSR and the authors' code
TRANSFER_GRIDS: tuple[Grid, ...] = GRIDS[:3]  # texture is transferred to the 1, 1/2 and 1/4 grids
