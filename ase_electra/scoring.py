"""Scoring predicted densities against references: NMAE on a shared grid.

NMAE = sum |rho_pred - rho_ref| / sum |rho_ref| over the grid points, a fraction
(callers print percent). Both densities must sit on the same grid. References are
density files (cube, CHGCAR) or reference records (``*.npz``, :mod:`ase_electra.reference`):
a molecule's exact density from its orbitals, evaluated on the prediction's grid, or a
crystal's density samples, which score a prediction on the same cell grid only.
Folders are scored file by file, matched by file stem (``water.cube`` <-> ``water.npz``).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .density import Density
from .errors import FileFormatError, InvalidInputError
from .grid import Grid
from .io import density_format, read_density
from .io._compressed import plain_name

__all__ = [
    "DISTANCE_EDGES",
    "FAR",
    "GRID_ATOL",
    "ScoreRow",
    "distance_bands",
    "nmae",
    "nmae_beyond",
    "nmae_by_distance",
    "pair_files",
    "score_pair",
    "score_paths",
]

#: Largest difference in grid cell or origin (Angstrom) still counted as the same grid:
#: far below any grid spacing, and above the rounding of cube headers (6 decimals of
#: bohr per voxel vector, multiplied by up to a few thousand points).
GRID_ATOL = 1e-3

_REFERENCE_SUFFIX = ".npz"

#: Bin edges (Angstrom) of :func:`nmae_by_distance`: nuclear cusps, core shells, valence
#: shells and bonds, the outer valence, the tail.
DISTANCE_EDGES = (0.15, 0.35, 0.7, 1.2, 2.0)

#: Distance from every nucleus (Angstrom) beyond which :func:`nmae_beyond` scores: the
#: bonding region, away from the cusps that dominate an all-electron grid NMAE.
FAR = 0.5


def _grid_mismatch(pred: Grid, ref: Grid) -> str | None:
    """What differs between two grids (shape, cell, origin; not pbc), or None."""
    if pred.shape != ref.shape:
        return "shape"
    same_points = pred.same_as(dataclasses.replace(ref, pbc=pred.pbc), atol=GRID_ATOL)
    if same_points:
        return None
    cell = float(np.abs(pred.cell - ref.cell).max())
    origin = float(np.abs(pred.origin - ref.origin).max())
    return f"cell by up to {cell:.3g} A, origin by up to {origin:.3g} A"


def nmae(pred: Density, ref: Density) -> float:
    """Normalised mean absolute error ``sum |pred - ref| / sum |ref|``, a fraction.

    Parameters
    ----------
    pred, ref : Density
        Values (nx, ny, nz), e/Angstrom^3, on the same grid (shape, cell and origin
        within :data:`GRID_ATOL`; periodicity flags are ignored).

    Raises
    ------
    InvalidInputError
        If the grids differ (the message describes both) or ``ref`` is zero everywhere.

    Examples
    --------
    >>> from ase import Atoms
    >>> g = Grid(np.eye(3), (1, 1, 2))
    >>> nmae(Density(Atoms(), g, [[[1.0, 3.0]]]), Density(Atoms(), g, [[[2.0, 2.0]]]))
    0.5
    """
    problem = _grid_mismatch(pred.grid, ref.grid)
    if problem is not None:
        raise InvalidInputError(
            f"grids differ in {problem}: prediction {pred.grid.describe()}, "
            f"origin {np.round(pred.grid.origin, 4).tolist()} A; reference {ref.grid.describe()}, "
            f"origin {np.round(ref.grid.origin, 4).tolist()} A"
        )
    norm = np.abs(ref.values).sum()
    if norm == 0:
        raise InvalidInputError("reference density is zero everywhere: NMAE undefined")
    return float(np.abs(pred.values - ref.values).sum() / norm)


def distance_bands(edges: tuple[float, ...] = DISTANCE_EDGES) -> list[str]:
    """Labels of the bands :func:`nmae_by_distance` returns, e.g. ``'< 0.15'``, ``'0.15-0.35'``, ``'> 2.0'``."""
    return [f"< {edges[0]}"] + [f"{a}-{b}" for a, b in zip(edges, edges[1:])] + [f"> {edges[-1]}"]


def nmae_by_distance(
    pred: np.ndarray, ref: np.ndarray, grid: Grid, positions: np.ndarray, edges: tuple[float, ...] = DISTANCE_EDGES
) -> np.ndarray:
    """Where the NMAE lies: its share from grid points in each band of distance to the nearest nucleus.

    Parameters
    ----------
    pred, ref : ndarray
        Values (nx, ny, nz) on ``grid``, e/Angstrom^3.
    grid : Grid
        Molecular or periodic grid; along periodic axes the nearest periodic image counts.
    positions : ndarray
        Nuclei (N, 3), Angstrom.
    edges : tuple of float
        Increasing band edges, Angstrom; for a periodic grid below half the cell's
        smallest width along its periodic axes.

    Returns
    -------
    ndarray
        (len(edges) + 1,) fractions summing to ``sum |pred - ref| / sum |ref|``: band 0 is
        closer than ``edges[0]``, the last band beyond ``edges[-1]``.
    """
    error = np.abs(np.asarray(pred, dtype=np.float64) - ref).reshape(-1)
    shares = np.zeros(len(edges) + 1)
    for part, nearest in _nearest_nucleus(grid, positions):
        shares += np.bincount(np.searchsorted(edges, nearest), error[part], minlength=len(edges) + 1)
    return shares / np.abs(np.asarray(ref, dtype=np.float64)).sum()


def nmae_beyond(pred: np.ndarray, ref: np.ndarray, grid: Grid, positions: np.ndarray, radius: float = FAR) -> float:
    """NMAE over the grid points farther than ``radius`` (Angstrom) from every nucleus, a fraction.

    ``sum |pred - ref| / sum |ref|`` with both sums over those points only: the bonding
    region, where a superposition of free atoms is several times worse than on the whole
    grid (whose NMAE the nuclear cusps dominate). Periodic axes use the nearest image.

    Raises
    ------
    InvalidInputError
        If the reference is zero on every such point (or there are none).
    """
    pred = np.asarray(pred, dtype=np.float64).reshape(-1)
    ref = np.asarray(ref, dtype=np.float64).reshape(-1)
    error = norm = 0.0
    for part, nearest in _nearest_nucleus(grid, positions):
        far = nearest > radius
        error += np.abs(pred[part][far] - ref[part][far]).sum()
        norm += np.abs(ref[part][far]).sum()
    if norm == 0:
        raise InvalidInputError(f"reference density is zero beyond {radius} A of the nuclei: NMAE undefined")
    return float(error / norm)


def _nearest_nucleus(grid: Grid, positions: np.ndarray) -> Iterator[tuple[slice, np.ndarray]]:
    """``(flat_slice, distance)`` per chunk of ``grid``: each point's distance to the nearest nucleus, Angstrom.

    Along periodic axes the nuclei's images in the neighbouring cells count too (exact
    for distances below half the cell's smallest width along those axes).
    """
    shifts = np.array(list(itertools.product(*[(-1, 0, 1) if p else (0,) for p in grid.pbc])), dtype=np.float64)
    nuclei = (np.asarray(positions, dtype=np.float64).reshape(-1, 3)[:, None, :] + (shifts @ grid.cell)[None]).reshape(-1, 3)
    for part, points in grid.chunks():
        nearest = np.full(len(points), np.inf)
        for r in nuclei:
            d = points - r
            nearest = np.minimum(nearest, np.einsum("ij,ij->i", d, d))
        yield part, np.sqrt(nearest)


@dataclass(frozen=True)
class ScoreRow:
    """The score of one prediction; a file found on one side only has ``None`` scores.

    ``nmae`` is a fraction over the whole grid, ``nmae_far`` over the points farther than
    :data:`FAR` from every nucleus (:func:`nmae_beyond`); electron counts are grid sums
    times the voxel volume.
    """

    name: str
    nmae: float | None = None
    nmae_far: float | None = None
    electrons_pred: float | None = None
    electrons_ref: float | None = None
    pred: Path | None = None
    ref: Path | None = None

    @property
    def matched(self) -> bool:
        """True if both a prediction and a reference exist."""
        return self.pred is not None and self.ref is not None


def _density_files(folder: Path, references: bool) -> dict[str, Path]:
    """Density files of a folder by stem (reference records too if ``references``)."""
    by_stem: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        if not (references and path.suffix.lower() == _REFERENCE_SUFFIX):
            try:
                density_format(path)
            except InvalidInputError:
                continue  # not a density file: ignored
        stem = Path(plain_name(path)).stem  # md_007.cube.gz pairs with md_007.cube
        if stem in by_stem:
            raise InvalidInputError(f"{folder}: several files are named '{stem}' ({by_stem[stem].name}, {path.name})")
        by_stem[stem] = path
    return by_stem


def pair_files(pred: str | os.PathLike, ref: str | os.PathLike) -> list[ScoreRow]:
    """Pair predictions with references: two files, or two folders matched by stem.

    Returns unscored rows, matched pairs first (by name), then files found in one folder
    only, with the other path ``None``.

    Raises
    ------
    FileFormatError
        If a path does not exist.
    InvalidInputError
        If one path is a folder and the other a file, two files in a folder share a
        stem, or no names match.
    """
    pred, ref = Path(pred), Path(ref)
    for path in (pred, ref):
        if not path.exists():
            raise FileFormatError(f"{path}: no such file or folder")
    if pred.is_dir() != ref.is_dir():
        raise InvalidInputError(f"{pred} and {ref}: expected two files or two folders")
    if not pred.is_dir():
        return [ScoreRow(pred.stem, pred=pred, ref=ref)]
    preds, refs = _density_files(pred, references=False), _density_files(ref, references=True)
    matched = sorted(preds.keys() & refs.keys())
    if not matched:
        raise InvalidInputError(f"{pred}: no density file has a namesake in {ref}")
    return (
        [ScoreRow(name, pred=preds[name], ref=refs[name]) for name in matched]
        + [ScoreRow(name, pred=preds[name]) for name in sorted(preds.keys() - refs.keys())]
        + [ScoreRow(name, ref=refs[name]) for name in sorted(refs.keys() - preds.keys())]
    )


def _reference_density(ref: Path, pred: Density) -> Density:
    """The reference as a Density on the prediction's grid (a file, or an ``.npz`` record).

    Raises InvalidInputError if it holds another structure than the prediction.
    """
    if ref.suffix.lower() != _REFERENCE_SUFFIX:
        density = read_density(ref)
        _check_same_structure(pred, density.atoms)
        return density
    try:
        from ase_electra.reference import load_record
    except ImportError as err:
        raise ImportError(
            f"{ref}: scoring against a reference record needs ase_electra.reference and its "
            f"dependencies (pip install 'ase-electra[reference]'): {err}"
        ) from err
    record = load_record(ref)
    _check_same_structure(pred, record.atoms)
    values = record.density_on(pred.grid)  # (nx, ny, nz), e/Angstrom^3
    try:
        return Density(record.atoms, pred.grid, values)
    except InvalidInputError as err:
        raise InvalidInputError(f"{ref}: reference record evaluated badly: {err}") from err


def _check_same_structure(pred: Density, ref_atoms) -> None:
    """Refuse a reference of another structure: other elements, or nuclei moved by more than 1e-3 A.

    Positions are compared up to lattice vectors along the prediction grid's periodic axes
    (files may wrap atoms into the cell). Either side without atoms is not checked.
    """
    if len(pred.atoms) == 0 or len(ref_atoms) == 0:
        return
    if len(pred.atoms) != len(ref_atoms) or (pred.atoms.numbers != ref_atoms.numbers).any():
        raise InvalidInputError(
            f"another structure: {pred.atoms.get_chemical_formula()} against {ref_atoms.get_chemical_formula()}"
        )
    delta = ref_atoms.positions - pred.atoms.positions
    periodic = np.array(pred.grid.pbc)
    fractional = delta @ np.linalg.inv(pred.grid.cell)
    fractional[:, periodic] -= np.round(fractional[:, periodic])
    moved = float(np.linalg.norm(fractional @ pred.grid.cell, axis=1).max())
    if moved > 1e-3:
        raise InvalidInputError(f"another structure: nuclei differ by up to {moved:.3g} A")


def score_pair(row: ScoreRow) -> ScoreRow:
    """Score one matched row from :func:`pair_files`; unmatched rows come back unchanged."""
    if not row.matched:
        return row
    pred = read_density(row.pred)
    try:
        ref = _reference_density(row.ref, pred)
        error = nmae(pred, ref)
        far = nmae_beyond(pred.values, ref.values, pred.grid, pred.atoms.positions)
    except InvalidInputError as err:
        raise InvalidInputError(f"{row.pred} vs {row.ref}: {err}") from err
    return dataclasses.replace(
        row, nmae=error, nmae_far=far, electrons_pred=pred.n_electrons, electrons_ref=ref.n_electrons
    )


def score_paths(pred: str | os.PathLike, ref: str | os.PathLike) -> list[ScoreRow]:
    """Score two files or two folders (see :func:`pair_files`); stops at the first error.

    Raises
    ------
    FileFormatError
        For missing or unreadable files.
    InvalidInputError
        For mismatched grids or paths that cannot be paired.
    ImportError
        For ``.npz`` references when :mod:`ase_electra.reference` cannot be imported.

    Every message is one line and starts with the file(s) concerned.
    """
    return [score_pair(row) for row in pair_files(pred, ref)]

