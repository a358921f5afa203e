"""Regular grids in space: the one grid convention used everywhere.

A :class:`Grid` is a parallelepiped ``cell`` (rows a, b, c, Angstrom) divided into
``shape = (nx, ny, nz)`` voxels, shifted by ``origin``. Grid point (i, j, k) sits at::

    origin + (i / nx) a + (j / ny) b + (k / nz) c

so the voxel vectors are the cell rows divided by the shape. This is the convention of
Gaussian cube files (voxel vectors = cell row / n, first point at the origin) and of
VASP CHGCAR files (origin zero, the cell is the lattice); evaluators, file formats and
scoring all use it. Values on a grid are arrays of shape ``shape`` indexed ``[i, j, k]``.

For a periodic axis the cell row is the lattice vector and point ``n`` would repeat
point ``0``. For a molecule in a box (no periodic axis) the cell is
``shape * spacing`` along each Cartesian axis, so the last point lies one spacing short
of the far face.

Which grid a structure gets (:meth:`Grid.for_atoms`): a structure periodic along any axis
(a crystal, a slab, a wire) gets its own cell, origin zero, with its ``pbc``; its cell
holds the vacuum along non-periodic axes. A structure periodic along no axis gets a box
around its atoms, unless ``use_cell`` asks for its cell (as ASE calculators place
``get_pseudo_density()`` on ``atoms.cell``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from .errors import GridTooLargeError, InvalidInputError

__all__ = ["Grid", "DEFAULT_MAX_POINTS", "fft_friendly"]

#: Largest grid accepted by default: 2 GB of float64 values.
DEFAULT_MAX_POINTS = 2 * 1024**3 // 8


def fft_friendly(n: int) -> int:
    """Smallest integer >= ``n`` whose prime factors are 2, 3 and 5 only.

    VASP and FFT libraries are fastest on such sizes.

    >>> fft_friendly(97)
    100
    """
    m = max(int(n), 1)
    while True:
        k = m
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 1


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float64)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Grid:
    """A regular grid of points in a parallelepiped.

    Parameters
    ----------
    cell : array, shape (3, 3), Angstrom
        Rows are the cell vectors a, b, c spanned by the grid.
    shape : tuple of 3 int
        Number of points (nx, ny, nz) along a, b, c.
    origin : array, shape (3,), Angstrom
        Position of point (0, 0, 0).
    pbc : tuple of 3 bool
        Periodic axes. Periodic images of densities are summed along them.

    Examples
    --------
    >>> g = Grid(np.diag([2.0, 2.0, 2.0]), (4, 4, 4))
    >>> g.spacing.tolist(), round(g.voxel_volume, 12), g.n_points
    ([0.5, 0.5, 0.5], 0.125, 64)
    """

    cell: np.ndarray
    shape: tuple[int, int, int]
    origin: np.ndarray = field(default_factory=lambda: np.zeros(3))
    pbc: tuple[bool, bool, bool] = (False, False, False)

    def __post_init__(self) -> None:
        cell = np.asarray(self.cell, dtype=np.float64)
        origin = np.asarray(self.origin, dtype=np.float64)
        if cell.shape != (3, 3):
            raise InvalidInputError(f"grid cell: expected shape (3, 3), got {cell.shape}")
        if origin.shape != (3,):
            raise InvalidInputError(f"grid origin: expected shape (3,), got {origin.shape}")
        if not (np.isfinite(cell).all() and np.isfinite(origin).all()):
            raise InvalidInputError("grid cell and origin must be finite")
        if abs(np.linalg.det(cell)) < 1e-12:
            raise InvalidInputError(f"grid cell is singular: {cell.tolist()}")
        shape = tuple(int(n) for n in self.shape)
        if len(shape) != 3 or min(shape) < 1:
            raise InvalidInputError(f"grid shape: expected 3 positive integers, got {self.shape}")
        pbc = tuple(bool(p) for p in np.broadcast_to(self.pbc, 3))
        object.__setattr__(self, "cell", _readonly(cell))
        object.__setattr__(self, "origin", _readonly(origin))
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "pbc", pbc)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def for_molecule(
        cls,
        positions: np.ndarray,
        spacing: float = 0.1,
        margin: float = 4.0,
        max_points: int = DEFAULT_MAX_POINTS,
    ) -> Grid:
        """Cubic-voxel box around a molecule, not periodic.

        Parameters
        ----------
        positions : array, shape (N, 3), Angstrom
            Atom positions; the box extends ``margin`` beyond them on every side and is
            centred on them.
        spacing : float, Angstrom
            Distance between neighbouring grid points along x, y and z.
        margin : float, Angstrom
            Vacuum kept around the outermost atoms.
        max_points : int
            Refuse grids with more points (:class:`GridTooLargeError`).
        """
        pos = np.asarray(positions, dtype=np.float64)
        if pos.ndim != 2 or pos.shape[1] != 3 or len(pos) == 0:
            raise InvalidInputError(f"positions: expected shape (N, 3) with N > 0, got {pos.shape}")
        if not np.isfinite(pos).all():
            raise InvalidInputError("positions: non-finite coordinates")
        _check_positive("spacing", spacing)
        if not (margin >= 0 and math.isfinite(margin)):
            raise InvalidInputError(f"margin: expected a finite value >= 0, got {margin}")
        lo, hi = pos.min(0) - margin, pos.max(0) + margin
        shape = tuple(int(math.ceil((h - l) / spacing - 1e-9)) + 1 for l, h in zip(lo, hi))
        _check_size(shape, max_points, "use a coarser spacing or a smaller margin")
        centre = 0.5 * (lo + hi)
        origin = centre - 0.5 * spacing * (np.array(shape) - 1)
        return cls(np.diag(np.array(shape) * spacing), shape, origin, (False, False, False))

    @classmethod
    def for_cell(
        cls,
        cell: np.ndarray,
        spacing: float = 0.1,
        pbc: tuple[bool, bool, bool] = (True, True, True),
        max_points: int = DEFAULT_MAX_POINTS,
    ) -> Grid:
        """Grid spanning a cell, origin at zero (the CHGCAR layout, and ASE's ``write_cube``).

        Parameters
        ----------
        cell : array, shape (3, 3), Angstrom
            Cell vectors as rows.
        spacing : float, Angstrom
            Largest allowed distance between points along each cell vector; the
            number of points per axis is rounded up to an FFT-friendly size.
        pbc : tuple of 3 bool
            Periodic axes: images are summed along these only.
        max_points : int
            Refuse grids with more points (:class:`GridTooLargeError`).
        """
        cell = np.asarray(cell, dtype=np.float64)
        _check_positive("spacing", spacing)
        if cell.shape != (3, 3):
            raise InvalidInputError(f"cell: expected shape (3, 3), got {cell.shape}")
        lengths = np.linalg.norm(cell, axis=1)
        shape = tuple(fft_friendly(math.ceil(length / spacing - 1e-9)) for length in lengths)
        _check_size(shape, max_points, "use a coarser spacing (the grid spans the cell)")
        return cls(cell, shape, np.zeros(3), pbc)

    @classmethod
    def for_atoms(
        cls,
        atoms,
        spacing: float = 0.1,
        margin: float = 4.0,
        max_points: int = DEFAULT_MAX_POINTS,
        *,
        use_cell: bool = False,
    ) -> Grid:
        """The default grid for an ASE ``Atoms``: its cell if periodic along any axis, else a box.

        A structure periodic along some axis (a crystal, or a slab or wire whose cell holds
        the vacuum along its other axes) gets :meth:`for_cell` on ``atoms.cell`` with
        ``atoms.pbc``: images are summed along the periodic axes only, and ``margin`` is not
        used. A structure periodic along no axis (a molecule; ``electra-density``) gets a
        :meth:`for_molecule` box with ``margin`` around its atoms, whatever its cell, unless
        ``use_cell`` is set and it has a cell (three non-zero vectors): then it too gets
        its cell, as :class:`~ase_electra.calculator.ElectraCalculator` does so that
        ``get_pseudo_density()`` lies on ``atoms.cell`` like an ASE DFT calculator's.

        Raises
        ------
        InvalidInputError
            If a structure that uses its cell has a zero cell vector or a singular cell,
            or an atom outside the cell along a non-periodic axis (its density would be
            cut off at the cell's face).
        """
        pbc = tuple(bool(p) for p in atoms.pbc)
        has_cell = bool(np.all(atoms.cell.lengths() > 0))
        if not any(pbc) and not (use_cell and has_cell):
            return cls.for_molecule(atoms.positions, spacing, margin, max_points)
        if not has_cell:
            raise InvalidInputError(
                f"cell {np.round(atoms.cell.array, 4).tolist()} with pbc {list(pbc)}: the grid spans the cell, "
                "so every cell vector must be non-zero (give non-periodic axes their vacuum: atoms.center(vacuum=...))"
            )
        if abs(atoms.cell.volume) < 1e-9:
            raise InvalidInputError(f"cell {np.round(atoms.cell.array, 4).tolist()} is singular")
        frac = atoms.cell.scaled_positions(atoms.positions)
        outside = [a for a in range(3) if not pbc[a] and (frac[:, a].min() < -1e-9 or frac[:, a].max() > 1 + 1e-9)]
        if outside:
            axis = "abc"[outside[0]]
            raise InvalidInputError(
                f"atoms outside the cell along non-periodic axis {axis} (fractional {frac[:, outside[0]].min():.3g} "
                f"to {frac[:, outside[0]].max():.3g}): the grid spans the cell; centre them (atoms.center())"
            )
        return cls.for_cell(atoms.cell.array, spacing, pbc, max_points)

    # ------------------------------------------------------------------ derived values
    @property
    def n_points(self) -> int:
        """Total number of grid points."""
        return math.prod(self.shape)

    @property
    def voxels(self) -> np.ndarray:
        """Voxel vectors as rows, shape (3, 3), Angstrom: ``cell[i] / shape[i]``."""
        return self.cell / np.array(self.shape, dtype=np.float64)[:, None]

    @property
    def spacing(self) -> np.ndarray:
        """Length of each voxel vector, shape (3,), Angstrom."""
        return np.linalg.norm(self.voxels, axis=1)

    @property
    def voxel_volume(self) -> float:
        """Volume of one voxel, Angstrom^3; ``values.sum() * voxel_volume`` integrates."""
        return float(abs(np.linalg.det(self.cell)) / self.n_points)

    def points(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Cartesian positions of grid points in flat C order, shape (P, 3), Angstrom.

        ``start`` and ``stop`` select a slice of the flattened grid (index
        ``(i * ny + j) * nz + k``) so large grids can be walked in chunks.
        """
        stop = self.n_points if stop is None else min(stop, self.n_points)
        return self.points_at(np.arange(start, stop))

    def points_at(self, flat_indices: np.ndarray) -> np.ndarray:
        """Cartesian positions of the points with these flat C-order indices, shape (P, 3), Angstrom."""
        ijk = np.stack(np.unravel_index(flat_indices, self.shape), axis=1).astype(np.float64)
        return self.origin + (ijk / np.array(self.shape)) @ self.cell

    def chunks(self, chunk_size: int = 1 << 20) -> Iterator[tuple[slice, np.ndarray]]:
        """Yield ``(flat_slice, points)`` pairs covering the grid, ``chunk_size`` points each."""
        for start in range(0, self.n_points, chunk_size):
            stop = min(start + chunk_size, self.n_points)
            yield slice(start, stop), self.points(start, stop)

    def same_as(self, other: Grid, atol: float = 1e-6) -> bool:
        """True if both grids have the same shape, cell, origin and periodicity."""
        return (
            self.shape == other.shape
            and self.pbc == other.pbc
            and np.allclose(self.cell, other.cell, atol=atol)
            and np.allclose(self.origin, other.origin, atol=atol)
        )

    def describe(self) -> str:
        """Short human-readable summary, used in error messages."""
        return f"shape {self.shape}, spacing {np.round(self.spacing, 4).tolist()} A, pbc {self.pbc}"

    def __repr__(self) -> str:
        return (
            f"Grid(shape={self.shape}, cell={self.cell.tolist()}, "
            f"origin={self.origin.tolist()}, pbc={self.pbc})"
        )


def _check_positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise InvalidInputError(f"{name}: expected a finite value > 0, got {value}")


def _check_size(shape: tuple[int, ...], max_points: int, remedy: str) -> None:
    """:class:`GridTooLargeError` ending in ``remedy`` if ``shape`` has more than ``max_points`` points."""
    n = math.prod(shape)
    if n > max_points:
        gb = n * 8 / 1e9
        raise GridTooLargeError(
            f"grid of shape {shape} has {n:,} points ({gb:.1f} GB as float64), "
            f"more than the limit of {max_points:,}; {remedy}"
        )
