"""Reference records: the file format of reference densities, and reading and writing it.

A record is one ``.npz`` file (no pickles) of one of two kinds, told apart by their keys:
:class:`ReferenceRecord` (a molecule's orbitals: ``mo_coeff_occ``) and :class:`PeriodicRecord`
(a crystal's density samples: ``density``). :func:`load_record` reads either kind.

Molecules
---------
A :class:`ReferenceRecord` is one closed-shell molecule and its occupied molecular
orbitals (MOs) in a Gaussian basis, the ``qm9-pbe-def2svp`` format: one ``.npz`` per
molecule with the keys

=============  ============================================================
numbers        atomic numbers, int16, shape (N,)
positions      Angstrom, float64, shape (N, 3)
basis, xc      PySCF names, e.g. 'def2-svp', 'pbe' (spherical AOs, all electrons)
mo_coeff_occ   occupied MO coefficients, float32, shape (n, K); 2 electrons each
energy         total energy, Hartree
source, name   where the structure came from; the record's name (file stem)
scf_seconds    optional: wall-clock seconds of the SCF
scf_cycles     optional: number of SCF iterations
grid_level     optional: PySCF DFT grid level of the SCF (absent: 3)
conv_tol       optional: SCF convergence threshold, Hartree (absent: 1e-9)
=============  ============================================================

The density is exact at any point::

    rho(r) = 2 sum_k (sum_mu C[mu, k] phi_mu(r))^2        (electrons / bohr^3)

with ``phi`` PySCF's spherical AOs, evaluated by :mod:`ase_electra.reference._orbitals`
(points in Angstrom, densities in e/Angstrom^3; 1 bohr = 0.529177210903 Angstrom).

Crystals and slabs
------------------
A :class:`PeriodicRecord` is one crystal (periodic along a, b and c) or slab (periodic along
a and b, with vacuum along c) and its all-electron density (GPAW,
:mod:`ase_electra.reference.gpaw`) sampled at the points of ``Grid.for_cell(cell, spacing, pbc)``,
with the keys

==============  ===========================================================
numbers         atomic numbers, int16, shape (N,)
positions       Angstrom, float64, shape (N, 3)
cell, pbc       Angstrom, float64, shape (3, 3), rows a, b, c; bool (3,): all True
                (a crystal), or True, True, False (a slab: c is orthogonal to a and b
                and holds at least 4 A of vacuum on each side of the atoms, so the
                density vanishes at the cell's faces along c); files without ``pbc``
                are crystals
density         e/Angstrom^3, float32, shape (nx, ny, nz): the density's value at
                point (i, j, k) = (i/nx) a + (j/ny) b + (k/nz) c (the CHGCAR layout)
missing_charge  electrons, float64, shape (N,): what each atom's cusp holds beyond
                the point samples (see below)
spacing         Angstrom: the largest spacing asked of the grid (``Grid.for_cell``)
xc, code        'pbe'; the code and its version, e.g. 'gpaw 26.7.0'
ecut            plane-wave cutoff, eV
kpts            int, shape (3,): Gamma-centred Monkhorst-Pack k-point grid (1 along c
                for a slab)
smearing        Fermi-Dirac width, eV
spin_polarized  bool: spin-polarised SCF (the density stored is the total)
charge          total charge, elementary charges
energy          GPAW's energy, Hartree, relative to its free reference atoms
source, name    where the structure came from; the record's name (file stem)
scf_seconds     optional: wall-clock seconds of the SCF
scf_cycles      optional: number of SCF iterations
==============  ===========================================================

``density`` holds point samples: no value is adjusted. A grid cannot integrate the
cusp of an all-electron density, so ``density.sum() * voxel_volume`` is not the
electron count (at 0.1 A with the nuclei off grid points, ``benchmarks/gpaw_labelling.py``:
Si 27.27 e for 28, NaCl 27.12 for 28, Al 12.71 for 13; a nucleus on a grid point
over-counts instead); ``missing_charge`` is the difference per atom, so that

    density.sum() * voxel_volume + missing_charge.sum() = electrons

GPAW's own ``get_all_electron_density`` adds ``missing_charge[a] / voxel_volume`` to the
grid point nearest nucleus ``a``, which is then no sample of the density. A nucleus on or
next to a grid point makes any grid-point NMAE mostly that one cusp value: keep nuclei off
grid points (translate the structure by a random fraction of a voxel) in training and
validation sets.

Legend: N atoms, P points, n spherical AOs, K occupied orbitals.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from ase import Atoms

from ..errors import FileFormatError, InvalidInputError
from ..grid import Grid
from ..io._atomic import atomic_path
from ..io._files import require_file
from ._orbitals import BOHR, CHUNK_BYTES, chunk_points, density_chunks, density_factorised

__all__ = ["BOHR", "PeriodicRecord", "ReferenceRecord", "load_record", "save_record"]

_REQUIRED = ("numbers", "positions", "basis", "xc", "mo_coeff_occ", "energy", "source", "name")
_OPTIONAL = ("scf_seconds", "scf_cycles", "grid_level", "conv_tol")
_PERIODIC_REQUIRED = ("numbers", "positions", "cell", "density", "missing_charge", "spacing", "xc", "code",
                      "ecut", "kpts", "smearing", "spin_polarized", "charge", "energy", "source", "name")
_PERIODIC_OPTIONAL = ("scf_seconds", "scf_cycles", "pbc")
_ARRAYS = ("numbers", "positions", "mo_coeff_occ", "cell", "pbc", "density", "missing_charge", "kpts")
#: Periodicity of a crystal and of a slab (vacuum along c).
_CRYSTAL, _SLAB = (True, True, True), (True, True, False)


def _readonly(a: np.ndarray, dtype: type) -> np.ndarray:
    a = np.array(a, dtype=dtype)
    a.setflags(write=False)
    return a


def _check_atoms(numbers: np.ndarray, positions: np.ndarray) -> None:
    if numbers.ndim != 1 or len(numbers) == 0 or numbers.dtype.kind not in "iu":
        raise InvalidInputError(f"numbers: expected integers of shape (N,), got {numbers.dtype} {numbers.shape}")
    if numbers.min() < 1 or numbers.max() > 118:
        raise InvalidInputError(f"numbers: expected 1..118, got {numbers.min()}..{numbers.max()}")
    if positions.shape != (len(numbers), 3) or not np.isfinite(positions).all():
        raise InvalidInputError(f"positions: expected finite values of shape ({len(numbers)}, 3), got {positions.shape}")


def _check_run(record, strings: tuple[str, ...]) -> None:
    """Strings non-empty (``source`` may be empty), energy finite, SCF seconds and cycles >= 0."""
    for key in strings:
        value = getattr(record, key)
        if not isinstance(value, str) or (not value and key != "source"):
            raise InvalidInputError(f"{key}: expected a non-empty string, got {value!r}")
    if not math.isfinite(record.energy):
        raise InvalidInputError(f"energy: expected a finite value, got {record.energy}")
    if record.scf_seconds is not None and not (record.scf_seconds >= 0 and math.isfinite(record.scf_seconds)):
        raise InvalidInputError(f"scf_seconds: expected a finite value >= 0, got {record.scf_seconds}")
    if record.scf_cycles is not None and not (int(record.scf_cycles) == record.scf_cycles >= 0):
        raise InvalidInputError(f"scf_cycles: expected an integer >= 0, got {record.scf_cycles}")
    object.__setattr__(record, "energy", float(record.energy))
    if record.scf_seconds is not None:
        object.__setattr__(record, "scf_seconds", float(record.scf_seconds))
    if record.scf_cycles is not None:
        object.__setattr__(record, "scf_cycles", int(record.scf_cycles))


@dataclass(frozen=True, eq=False)
class ReferenceRecord:
    """A closed-shell molecule and its occupied Kohn-Sham orbitals.

    Parameters
    ----------
    numbers : array of int, shape (N,)
    positions : array, shape (N, 3), Angstrom
    basis, xc : str
        PySCF basis set (spherical AOs) and functional.
    mo_coeff_occ : array, shape (n, K)
        Occupied MO coefficients, each orbital doubly occupied; kept as float32 as in
        the file format (evaluation accumulates in float64).
    energy : float, Hartree
    source, name : str
    scf_seconds : float, optional
    scf_cycles : int, optional
    grid_level : int, optional
        PySCF DFT grid level of the SCF (records without it used 3).
    conv_tol : float, optional, Hartree
        SCF convergence threshold (records without it used 1e-9).
    """

    numbers: np.ndarray
    positions: np.ndarray
    basis: str
    xc: str
    mo_coeff_occ: np.ndarray
    energy: float
    source: str
    name: str
    scf_seconds: float | None = None
    scf_cycles: int | None = None
    grid_level: int | None = None
    conv_tol: float | None = None

    def __post_init__(self) -> None:
        numbers, positions = np.asarray(self.numbers), np.asarray(self.positions)
        coeff = np.asarray(self.mo_coeff_occ)
        _check_atoms(numbers, positions)
        if coeff.ndim != 2 or min(coeff.shape) < 1 or not np.isfinite(coeff).all():
            raise InvalidInputError(f"mo_coeff_occ: expected finite values of shape (n, K), got {coeff.shape}")
        _check_run(self, ("basis", "xc", "name", "source"))
        object.__setattr__(self, "numbers", _readonly(numbers, np.int16))
        object.__setattr__(self, "positions", _readonly(positions, np.float64))
        object.__setattr__(self, "mo_coeff_occ", _readonly(coeff, np.float32))

    @property
    def atoms(self) -> Atoms:
        """A new ``ase.Atoms`` (Angstrom, not periodic) with ``info['name']`` and ``info['source']``."""
        return Atoms(numbers=self.numbers.astype(int), positions=self.positions.copy(),
                     info={"name": self.name, "source": self.source})

    @property
    def n_electrons(self) -> int:
        """Electrons held by the orbitals: two per occupied orbital."""
        return 2 * self.mo_coeff_occ.shape[1]

    @property
    def charge(self) -> int:
        """Total charge, elementary charges: nuclear charge minus :attr:`n_electrons`."""
        return int(self.numbers.sum()) - self.n_electrons

    def mole(self):
        """A new built ``pyscf.gto.Mole`` (Angstrom input, spherical AOs, closed shell).

        Raises InvalidInputError if the basis does not give one AO per coefficient row.
        """
        try:
            from pyscf import gto
        except ImportError as err:
            raise ImportError(f"reference densities need PySCF: pip install 'ase-electra[reference]' ({err})") from err
        atom = [(int(z), p.tolist()) for z, p in zip(self.numbers, self.positions)]
        mol = gto.M(atom=atom, basis=self.basis, unit="Angstrom", charge=self.charge, spin=0, cart=False, verbose=0)
        if mol.nao != self.mo_coeff_occ.shape[0]:
            raise InvalidInputError(
                f"record {self.name}: mo_coeff_occ has {self.mo_coeff_occ.shape[0]} rows but basis "
                f"{self.basis!r} gives {mol.nao} spherical AOs for these atoms"
            )
        return mol

    def dipole_moment(self) -> np.ndarray:
        """Exact dipole of nuclei and electrons, (3,), e * Angstrom (about the origin if charged).

        p = sum_i Z_i R_i - tr(D r) with D = 2 C C^T and r the AO position integrals.
        """
        mol = self.mole()
        coeff = self.mo_coeff_occ.astype(np.float64)
        r = mol.intor_symmetric("int1e_r")  # (3, n, n), bohr
        electrons = 2.0 * np.einsum("xij,ik,jk->x", r, coeff, coeff)  # e * bohr
        return self.numbers.astype(np.float64) @ self.positions - electrons * BOHR

    def density_at(self, points: np.ndarray, *, chunk_bytes: int = CHUNK_BYTES) -> np.ndarray:
        """Exact density at arbitrary points.

        Parameters
        ----------
        points : array, shape (P, 3), Angstrom
        chunk_bytes : int
            Memory bound of one chunk of work.

        Returns
        -------
        ndarray, shape (P,), e/Angstrom^3
        """
        points = np.asarray(points, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 3 or not np.isfinite(points).all():
            raise InvalidInputError(f"points: expected finite values of shape (P, 3), got {points.shape}")
        mol = self.mole()
        size = chunk_points(chunk_bytes, 2 * mol.nao + self.mo_coeff_occ.shape[1])
        chunks = ((slice(s, s + size), points[s:s + size]) for s in range(0, len(points), size))
        return density_chunks(mol, self.mo_coeff_occ.astype(np.float64), chunks, len(points), size)

    def density_on(self, grid: Grid, *, chunk_bytes: int = CHUNK_BYTES) -> np.ndarray:
        """Exact density at every point of ``grid``.

        The molecule is isolated: periodic axes of ``grid`` add no periodic images.

        Returns
        -------
        ndarray, shape ``grid.shape``, e/Angstrom^3, float64
        """
        mol, coeff = self.mole(), self.mo_coeff_occ.astype(np.float64)  # coeff (n, K)
        off_diagonal = grid.cell - np.diag(np.diag(grid.cell))
        if np.abs(off_diagonal).max() <= 1e-12 * np.abs(grid.cell).max():
            return density_factorised(mol, coeff, grid, chunk_bytes)
        size = chunk_points(chunk_bytes, 2 * mol.nao + coeff.shape[1])
        return density_chunks(mol, coeff, grid.chunks(size), grid.n_points, size).reshape(grid.shape)


@dataclass(frozen=True, eq=False)
class PeriodicRecord:
    """A crystal or slab and its all-electron density sampled at the points of its cell grid.

    Parameters
    ----------
    numbers : array of int, shape (N,)
    positions : array, shape (N, 3), Angstrom
    cell : array, shape (3, 3), Angstrom
        Lattice vectors as rows.
    density : array, shape (nx, ny, nz), e/Angstrom^3
        Point samples on ``Grid.for_cell(cell, spacing, pbc)``; kept as float32 as in the file.
    missing_charge : array, shape (N,), electrons
        Per atom, the charge of its cusp beyond the point samples (module docstring).
    spacing : float, Angstrom
        The largest grid spacing asked for; with ``cell`` it fixes the grid's shape.
    xc, code : str
        Functional and the code with its version ('gpaw 26.7.0').
    ecut : float, eV
    kpts : array of int, shape (3,)
    smearing : float, eV
    spin_polarized : bool
    charge : int, elementary charges
    energy : float, Hartree (GPAW's, relative to its free reference atoms)
    source, name : str
    scf_seconds : float, optional
    scf_cycles : int, optional
    pbc : tuple of 3 bool
        Periodic axes: (True, True, True) for a crystal, (True, True, False) for a slab
        (vacuum along c, which is orthogonal to a and b).
    """

    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    density: np.ndarray
    missing_charge: np.ndarray
    spacing: float
    xc: str
    code: str
    ecut: float
    kpts: np.ndarray
    smearing: float
    spin_polarized: bool
    charge: int
    energy: float
    source: str
    name: str
    scf_seconds: float | None = None
    scf_cycles: int | None = None
    pbc: tuple[bool, bool, bool] = _CRYSTAL

    def __post_init__(self) -> None:
        numbers, positions = np.asarray(self.numbers), np.asarray(self.positions)
        cell, density = np.asarray(self.cell, dtype=np.float64), np.asarray(self.density)
        missing, kpts = np.asarray(self.missing_charge, dtype=np.float64), np.asarray(self.kpts)
        _check_atoms(numbers, positions)
        if cell.shape != (3, 3) or not np.isfinite(cell).all() or abs(np.linalg.det(cell)) < 1e-9:
            raise InvalidInputError(f"cell: expected finite, non-singular (3, 3) rows, got {cell.tolist()}")
        pbc = np.asarray(self.pbc)
        if pbc.shape != (3,) or pbc.dtype != bool or tuple(pbc.tolist()) not in (_CRYSTAL, _SLAB):
            raise InvalidInputError(
                f"pbc: expected {list(_CRYSTAL)} (a crystal) or {list(_SLAB)} (a slab), got {pbc.tolist()}")
        if not (self.spacing > 0 and math.isfinite(self.spacing)):
            raise InvalidInputError(f"spacing: expected a finite value > 0, got {self.spacing}")
        shape = Grid.for_cell(cell, self.spacing).shape
        if density.shape != shape or not np.isfinite(density).all():
            raise InvalidInputError(
                f"density: expected finite values of shape {shape} (the cell at spacing {self.spacing:g} A), "
                f"got {density.shape}"
            )
        if missing.shape != (len(numbers),) or not np.isfinite(missing).all():
            raise InvalidInputError(f"missing_charge: expected finite values of shape ({len(numbers)},), got {missing.shape}")
        if kpts.shape != (3,) or kpts.dtype.kind not in "iu" or kpts.min() < 1:
            raise InvalidInputError(f"kpts: expected 3 integers >= 1, got {kpts.tolist()}")
        for key in ("ecut", "smearing"):
            if not (getattr(self, key) >= 0 and math.isfinite(getattr(self, key))):
                raise InvalidInputError(f"{key}: expected a finite value >= 0, got {getattr(self, key)}")
        if int(self.charge) != self.charge:
            raise InvalidInputError(f"charge: expected an integer, got {self.charge}")
        _check_run(self, ("xc", "code", "name", "source"))
        for key, value in (("numbers", _readonly(numbers, np.int16)), ("positions", _readonly(positions, np.float64)),
                           ("cell", _readonly(cell, np.float64)), ("density", _readonly(density, np.float32)),
                           ("missing_charge", _readonly(missing, np.float64)), ("kpts", _readonly(kpts, np.int64)),
                           ("spacing", float(self.spacing)), ("ecut", float(self.ecut)),
                           ("smearing", float(self.smearing)), ("spin_polarized", bool(self.spin_polarized)),
                           ("charge", int(self.charge)), ("pbc", tuple(pbc.tolist()))):
            object.__setattr__(self, key, value)

    @property
    def atoms(self) -> Atoms:
        """A new ``ase.Atoms`` (Angstrom, its cell and :attr:`pbc`) with ``info['name']`` and ``info['source']``."""
        return Atoms(numbers=self.numbers.astype(int), positions=self.positions.copy(), cell=self.cell.copy(),
                     pbc=self.pbc, info={"name": self.name, "source": self.source})

    @property
    def grid(self) -> Grid:
        """The grid of :attr:`density`: the cell, origin zero, periodic along :attr:`pbc`."""
        return Grid(self.cell, self.density.shape, np.zeros(3), self.pbc)

    @property
    def n_electrons(self) -> int:
        """Electrons: nuclear charge minus :attr:`charge`."""
        return int(self.numbers.astype(np.int64).sum()) - self.charge

    def density_on(self, grid: Grid) -> np.ndarray:
        """The stored samples, float64 (nx, ny, nz) e/Angstrom^3, if ``grid`` has the same points.

        Raises
        ------
        InvalidInputError
            For any other grid (shape, cell or origin differing by more than 1e-3 A): the
            samples are known at their own points only.
        """
        if not (grid.shape == self.density.shape and grid.same_as(replace(self.grid, pbc=grid.pbc), atol=1e-3)):
            raise InvalidInputError(
                f"record {self.name} holds density samples on its cell grid {self.grid.describe()} only "
                f"(spacing {self.spacing:g} A), not on {grid.describe()}"
            )
        return self.density.astype(np.float64)



# ---------------------------------------------------------------------------- files
def load_record(path: str | os.PathLike) -> ReferenceRecord | PeriodicRecord:
    """Read a record file of either kind (``.npz`` of the format above; pickles are never loaded).

    Raises
    ------
    FileFormatError
        If the file is missing, unreadable, lacks a required key, or holds values of the
        wrong type or shape; the message names the file and the problem.
    """
    import zipfile
    import zlib

    path = require_file(path)
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise FileFormatError(f"{path}: not an .npz archive")
        with data:
            periodic = "density" in data.files
            required, optional = (_PERIODIC_REQUIRED, _PERIODIC_OPTIONAL) if periodic else (_REQUIRED, _OPTIONAL)
            missing = [key for key in required if key not in data.files]
            if missing:
                raise FileFormatError(f"{path}: not a reference record, missing keys {missing}")
            values = {key: data[key] for key in required + optional if key in data.files}
    except FileFormatError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise FileFormatError(f"{path}: unreadable ({err.__class__.__name__}: {err})") from err
    try:
        fields = {key: value if key in _ARRAYS else _scalar(key, value) for key, value in values.items()}
        return PeriodicRecord(**fields) if periodic else ReferenceRecord(**fields)
    except InvalidInputError as err:
        raise FileFormatError(f"{path}: {err}") from err


def _scalar(key: str, value: np.ndarray) -> str | float | int | bool:
    """The Python value of a 0-d array of the kind ``key`` needs, else InvalidInputError."""
    number, integer = ("a number", "fiu"), ("an integer", "iu")
    expected, kinds = {"energy": number, "scf_seconds": number, "scf_cycles": integer, "grid_level": integer,
                       "conv_tol": number, "spacing": number, "ecut": number, "smearing": number,
                       "charge": integer, "spin_polarized": ("a boolean", "b")}.get(key, ("a string", "U"))
    if value.shape != () or value.dtype.kind not in kinds:
        raise InvalidInputError(f"{key}: expected {expected}, got {value.dtype} array of shape {value.shape}")
    return value.item()


def save_record(path: str | os.PathLike, record: ReferenceRecord | PeriodicRecord) -> Path:
    """Write ``record`` to ``path`` atomically, compressed, with the keys of its kind above.

    Molecular records hold exactly the keys of the shared ``qm9-pbe-def2svp`` files
    (optional ones only when set). Returns the path written.
    """
    path = Path(path)
    if isinstance(record, PeriodicRecord):
        arrays = {
            "numbers": record.numbers, "positions": record.positions, "cell": record.cell,
            "pbc": np.array(record.pbc, dtype=bool), "density": record.density, "missing_charge": record.missing_charge,
            "spacing": np.float64(record.spacing), "xc": np.str_(record.xc), "code": np.str_(record.code),
            "ecut": np.float64(record.ecut), "kpts": record.kpts, "smearing": np.float64(record.smearing),
            "spin_polarized": np.bool_(record.spin_polarized), "charge": np.int64(record.charge),
        }
    else:
        arrays = {"numbers": record.numbers, "positions": record.positions, "basis": np.str_(record.basis),
                  "xc": np.str_(record.xc), "mo_coeff_occ": record.mo_coeff_occ}
        if record.grid_level is not None:
            arrays["grid_level"] = np.int64(record.grid_level)
        if record.conv_tol is not None:
            arrays["conv_tol"] = np.float64(record.conv_tol)
    arrays |= {"energy": np.float64(record.energy), "source": np.str_(record.source), "name": np.str_(record.name)}
    if record.scf_seconds is not None:
        arrays["scf_seconds"] = np.float64(record.scf_seconds)
    if record.scf_cycles is not None:
        arrays["scf_cycles"] = np.int64(record.scf_cycles)
    with atomic_path(path) as tmp, open(tmp, "wb") as stream:
        np.savez_compressed(stream, **arrays)
    return path
