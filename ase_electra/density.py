"""A density on a grid: what models produce and files hold."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms

from .errors import InvalidInputError
from .grid import Grid

__all__ = ["Density"]


@dataclass(frozen=True, eq=False)
class Density:
    """Electron density sampled on a :class:`Grid`.

    Parameters
    ----------
    atoms : ase.Atoms
        The structure, positions in Angstrom.
    grid : Grid
        Where the values live.
    values : ndarray, shape ``grid.shape``, e/Angstrom^3
        Density at each grid point, float64.
    """

    atoms: Atoms
    grid: Grid
    values: np.ndarray

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=np.float64)
        if values.shape != self.grid.shape:
            raise InvalidInputError(f"density values: expected shape {self.grid.shape}, got {values.shape}")
        if not np.isfinite(values).all():
            raise InvalidInputError("density values: non-finite entries")
        object.__setattr__(self, "values", values)

    @property
    def n_electrons(self) -> float:
        """Grid sum times voxel volume, electrons (a quadrature: coarse near nuclei)."""
        return float(self.values.sum() * self.grid.voxel_volume)
