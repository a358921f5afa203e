"""Training data: structures with reference densities on grids, cached, and probe sampling.

A :class:`DensitySample` is one structure, the grid its density is compared on, and a
way to compute the reference values there. :func:`find_samples` discovers samples in a
folder: reference records (``*.npz``: PySCF records evaluated on a box grid of the
requested spacing, periodic records on the cell grid of their samples) and density files
(cube, CHGCAR; their own grid).

Computing a record's density on a full grid costs seconds (PySCF), and parsing a cube
file about as much, so :class:`GridCache` does it once per sample and grid and keeps the
values on disk as float32 ``.npy``, memory-mapped on use: hundreds of grids never sit in
memory at once.

:func:`sample_probes` draws grid points for the probe-sampled loss, more of them where
the reference density is large (where all-electron densities vary fastest), with
importance weights that make the sampled sum an unbiased estimate of the full-grid sum.

Legend: P probes, G grid points.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from ase import Atoms

from .errors import FileFormatError, InvalidInputError
from .grid import Grid
from .io import density_format, read_density
from .io._atomic import atomic_path
from .reference import PeriodicRecord, load_record, qm9_index, split_of

__all__ = [
    "DensitySample",
    "GridCache",
    "NEAR_NUCLEUS_RADII",
    "Probes",
    "find_samples",
    "near_nuclei",
    "qm9_rule",
    "refuse_test",
    "sample_probes",
    "split_samples",
]


@dataclass(frozen=True, eq=False)
class DensitySample:
    """A structure with a reference density on a grid.

    Parameters
    ----------
    name : str
        Unique label (the file stem); keys the cache.
    atoms : ase.Atoms
        The structure, Angstrom.
    grid : Grid
        Where the reference is known and the loss is computed.
    source : Path
        The file it came from.
    split : str or None
        ``"train"``, ``"validation"`` or ``"test"`` for QM9 records, else None.
    reference_values : callable
        ``reference_values()`` computes the reference density on ``grid``, (nx, ny, nz)
        ndarray, e/Angstrom^3. Slow (PySCF, or parsing the file): go through :class:`GridCache`.
    reference_dipole : callable or None
        ``reference_dipole()`` gives the exact dipole of nuclei and electrons, (3,) ndarray,
        e * Angstrom; None where the source has no exact density (cube and CHGCAR files).
    reference_nuclei : callable or None
        ``reference_nuclei()`` gives the exact reference density at and around each nucleus,
        at :func:`near_nuclei` of its positions, (N * M,) ndarray, e/Angstrom^3; None where the
        source has no exact density (periodic records, which hold grid samples only, and
        density files).
    """

    name: str
    atoms: Atoms
    grid: Grid
    source: Path
    split: str | None
    reference_values: Callable[[], np.ndarray]
    reference_dipole: Callable[[], np.ndarray] | None = None
    reference_nuclei: Callable[[], np.ndarray] | None = None


def find_samples(folder: str | Path, spacing: float = 0.1, margin: float = 4.0) -> list[DensitySample]:
    """All samples in ``folder``: reference records, cube and CHGCAR files, by name.

    Density files are parsed here for their atoms and grid, and once more when their
    cache entry is written.

    Parameters
    ----------
    folder : path
        Searched non-recursively; other files are ignored.
    spacing, margin : float, Angstrom
        Box grid of molecular reference records (:meth:`Grid.for_molecule`). Periodic
        records and density files keep their grids.

    Raises
    ------
    FileFormatError
        If ``folder`` is not a folder, holds no sample, or a file is unreadable.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileFormatError(f"{folder}: not a folder")
    samples: dict[str, DensitySample] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        if path.suffix.lower() == ".npz":
            sample = _record_sample(path, spacing, margin)
        elif _is_density_file(path):
            sample = _file_sample(path)
        else:
            continue
        if sample.name in samples:
            raise InvalidInputError(f"{folder}: several samples are named '{sample.name}' ({path.name})")
        samples[sample.name] = sample
    if not samples:
        raise FileFormatError(f"{folder}: no reference records (*.npz), cube or CHGCAR files")
    return list(samples.values())


def _is_density_file(path: Path) -> bool:
    try:
        density_format(path)
    except InvalidInputError:
        return False
    return True


def _record_sample(path: Path, spacing: float, margin: float) -> DensitySample:
    record = load_record(path)
    atoms = record.atoms
    atoms.info["charge"] = record.charge  # sets the electron count of the model's graph
    if isinstance(record, PeriodicRecord):  # density samples on its own cell grid; a crystal has no dipole
        return DensitySample(path.stem, atoms, record.grid, path, None, partial(_record_values, path, record.grid))
    grid = Grid.for_molecule(atoms.positions, spacing, margin)
    try:
        split = split_of(qm9_index(path.stem))
    except InvalidInputError:
        split = None
    return DensitySample(path.stem, atoms, grid, path, split, partial(_record_values, path, grid),
                         partial(_record_dipole, path), partial(_record_nuclei, path))


def _record_values(path: Path, grid: Grid) -> np.ndarray:
    return load_record(path).density_on(grid)


def _record_dipole(path: Path) -> np.ndarray:
    return load_record(path).dipole_moment()


def _record_nuclei(path: Path) -> np.ndarray:
    record = load_record(path)
    return record.density_at(near_nuclei(record.atoms.positions)[0])


#: Distances from a nucleus (Angstrom) of the points of :func:`near_nuclei`: the innermost core
#: Gaussians are 0.004-0.016 Angstrom wide, and a 0.1 Angstrom grid may pass that close.
NEAR_NUCLEUS_RADII = (0.005, 0.01, 0.02, 0.03)


def near_nuclei(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points at each nucleus and ``NEAR_NUCLEUS_RADII`` from it along +-x, +-y, +-z, and their weights.

    Returns (points (N * M, 3) Angstrom, atom by atom; weights (N * M,)): 1 at a nucleus and
    1/6 at each point off it, so that every radius weighs as one grid point.
    """
    axes = np.vstack([np.eye(3), -np.eye(3)])  # (6, 3)
    offsets = np.vstack([np.zeros((1, 3))] + [r * axes for r in NEAR_NUCLEUS_RADII])  # (M, 3)
    weights = np.concatenate([[1.0], np.full(len(offsets) - 1, 1.0 / len(axes))])  # (M,)
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    return (positions[:, None, :] + offsets).reshape(-1, 3), np.tile(weights, len(positions))


def _file_sample(path: Path) -> DensitySample:
    density = read_density(path)
    return DensitySample(path.stem, density.atoms, density.grid, path, None, partial(_file_values, path))


def _file_values(path: Path) -> np.ndarray:
    return read_density(path).values


# ---------------------------------------------------------------------- splits
def refuse_test(samples: list[DensitySample]) -> None:
    """Raise :class:`InvalidInputError` if any sample is a QM9 test-split record."""
    for s in samples:
        if s.split == "test":
            raise InvalidInputError(
                f"{s.source}: QM9 test-split record (index ending in 9); refusing to train on it "
                "(pass its folder as --val to evaluate on it)"
            )


def qm9_rule(samples: list[DensitySample]) -> tuple[list[DensitySample], list[DensitySample]]:
    """(train, validation): QM9 validation-split records (indices ending in 8) validate, the rest train."""
    return [s for s in samples if s.split != "validation"], [s for s in samples if s.split == "validation"]


def split_samples(
    samples: list[DensitySample], val_fraction: float | None = None, seed: int = 0
) -> tuple[list[DensitySample], list[DensitySample]]:
    """Split into (train, validation).

    With ``val_fraction``, a random held-out fraction (at least one sample, drawn with
    ``seed``); without, the QM9 rule: validation-split records validate, everything
    else trains. Test-split records are refused (:func:`refuse_test`).
    """
    refuse_test(samples)
    if val_fraction is None:
        train, val = qm9_rule(samples)
    else:
        if not 0.0 < val_fraction < 1.0:
            raise InvalidInputError(f"validation fraction: expected in (0, 1), got {val_fraction}")
        order = np.random.default_rng(seed).permutation(len(samples))
        n_val = max(1, round(val_fraction * len(samples)))
        held = set(order[:n_val].tolist())
        train = [s for i, s in enumerate(samples) if i not in held]
        val = [s for i, s in enumerate(samples) if i in held]
    if not train or not val:
        raise InvalidInputError(
            f"split of {len(samples)} samples left {len(train)} for training and {len(val)} for "
            "validation; pass a validation folder or a validation fraction"
        )
    return train, val


# ---------------------------------------------------------------------- cache
class GridCache:
    """Reference densities on their grids, computed once and kept as float32 ``.npy``.

    Entries are named ``<sample name>-<grid digest>.npy``; the digest covers the grid's
    shape, cell, origin and periodicity, so a new spacing makes new entries. Source
    files are assumed not to change under the same name (clear the folder if they do).

    Parameters
    ----------
    folder : path
        Created if missing.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, sample: DensitySample) -> Path:
        """Where the entry of ``sample`` lives."""
        g = sample.grid
        key = repr((g.shape, np.round(g.cell, 6).tolist(), np.round(g.origin, 6).tolist(), g.pbc))
        return self.folder / f"{sample.name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npy"

    def values(self, sample: DensitySample) -> np.ndarray:
        """Reference density of ``sample`` on its grid, read-only memmap (nx, ny, nz), float32, e/A^3.

        Computed and written (atomically) on first use.
        """
        path = self.path(sample)
        if not path.exists():
            values = np.asarray(sample.reference_values(), dtype=np.float32)
            if values.shape != sample.grid.shape:
                raise FileFormatError(
                    f"{sample.source}: reference of shape {values.shape}, expected {sample.grid.shape}"
                )
            with atomic_path(path) as tmp, open(tmp, "wb") as fh:
                np.save(fh, values)
        try:
            values = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as err:
            raise FileFormatError(f"{path}: unreadable cache entry ({err}); delete it to recompute") from err
        if values.shape != sample.grid.shape or values.dtype != np.float32:
            raise FileFormatError(f"{path}: cache entry of shape {values.shape}, expected {sample.grid.shape}")
        return values


# ---------------------------------------------------------------------- probes
@dataclass(frozen=True)
class Probes:
    """Grid points drawn for one structure, with importance weights.

    ``sum(weights * f[indices])`` is an unbiased estimate of ``f.sum()`` over the grid
    for any per-point ``f``.

    Attributes
    ----------
    indices : ndarray, shape (P,), int64
        Flat (C-order) grid indices.
    points : ndarray, shape (P, 3), Angstrom
    reference : ndarray, shape (P,), e/Angstrom^3
    weights : ndarray, shape (P,)
        ``1 / (P q_i)``, q the sampling distribution.
    total : float
        Sum of |reference| over the full grid (the NMAE denominator), e/Angstrom^3.
    """

    indices: np.ndarray
    points: np.ndarray
    reference: np.ndarray
    weights: np.ndarray
    total: float


def sample_probes(
    values: np.ndarray, grid: Grid, n: int, rng: np.random.Generator, uniform_fraction: float = 0.25
) -> Probes:
    """Draw ``n`` grid points with probability q_i = u / G + (1 - u) |rho_i| / sum |rho|.

    Parameters
    ----------
    values : ndarray, shape ``grid.shape``, e/Angstrom^3
        Reference density (a memmap is read once, in order).
    grid : Grid
    n : int
        Number of probes (drawn with replacement).
    rng : numpy Generator
    uniform_fraction : float
        u in (0, 1]: the uniform part keeps every point's probability positive, so the
        estimate stays unbiased where the prediction is wrong but the reference small.
    """
    if not 0.0 < uniform_fraction <= 1.0:
        raise InvalidInputError(f"uniform_fraction: expected in (0, 1], got {uniform_fraction}")
    flat = np.asarray(values, dtype=np.float64).reshape(-1)  # (G,)
    magnitude = np.abs(flat)
    cumulative = np.cumsum(magnitude)  # (G,)
    total = float(cumulative[-1])
    if not total > 0:
        raise InvalidInputError("reference density: zero everywhere on the grid")
    g = magnitude.shape[0]
    uniform = rng.random(n) < uniform_fraction
    indices = np.where(
        uniform,
        rng.integers(0, g, n),
        np.searchsorted(cumulative, rng.random(n) * total, side="right").clip(max=g - 1),
    )  # (P,)
    q = uniform_fraction / g + (1.0 - uniform_fraction) * magnitude[indices] / total  # (P,)
    points = grid.points_at(indices)  # (P, 3)
    return Probes(indices, points, flat[indices], 1.0 / (n * q), total)
