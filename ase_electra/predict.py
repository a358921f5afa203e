"""Atoms -> model -> Gaussian mixture -> density on a grid."""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms

from .density import Density
from .evaluate import Backend, Sampling, evaluate
from .grid import DEFAULT_MAX_POINTS, Grid
from .models import DensityModel

__all__ = ["predict_densities", "grid_for", "in_box_frame"]


def grid_for(atoms: Atoms, spacing: float, margin: float, max_points: int = DEFAULT_MAX_POINTS) -> Grid:
    """The default grid of a structure: its cell if periodic along any axis (crystals, slabs), else a box
    (Angstrom); see :meth:`Grid.for_atoms`."""
    return Grid.for_atoms(atoms, spacing=spacing, margin=margin, max_points=max_points)


def in_box_frame(atoms: Atoms, grid: Grid) -> tuple[Atoms, Grid]:
    """Move a molecule and its box grid so the box starts at the origin, with the box as cell.

    Formats that have no origin (CHGCAR) need the grid to start at zero; the density is
    unchanged up to this translation. Periodic grids are returned unchanged.
    """
    if any(grid.pbc) or not np.any(grid.origin):
        return atoms, grid
    moved = atoms.copy()
    moved.translate(-grid.origin)
    moved.cell = grid.cell
    return moved, Grid(grid.cell, grid.shape, np.zeros(3), grid.pbc)


def predict_densities(
    model: DensityModel,
    structures: list[Atoms],
    grids: list[Grid],
    *,
    backend: Backend = "auto",
    sampling: Sampling = "point",
) -> list[Density]:
    """Predict each structure's density on its grid.

    Parameters
    ----------
    model : DensityModel
        Any model; the batch goes through it in one call.
    structures : list of ase.Atoms
        Positions in Angstrom.
    grids : list of Grid
        One grid per structure.
    backend : {"auto", "torch", "numba", "cupy"}
        Evaluator, as in :func:`~ase_electra.evaluate.evaluate`.
    sampling : {"point", "voxel"}
        "point": the density at each grid point. "voxel": values whose grid sum times the
        voxel volume is each mixture's electron count (for Bader analysis and other
        integrals); see :func:`~ase_electra.evaluate.evaluate`.

    Returns
    -------
    list of Density, values in e/Angstrom^3 (float64, on the CPU).
    """
    with torch.no_grad():
        mixtures = model.predict(structures).split()
        return [
            Density(atoms, grid, evaluate(m, grid, backend=backend, sampling=sampling).double().cpu().numpy())
            for atoms, grid, m in zip(structures, grids, mixtures)
        ]
