"""Reference records: the file format of reference densities, and reading and writing it.

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

Legend: N atoms, P points, n spherical AOs, K occupied orbitals.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

from ..errors import FileFormatError, InvalidInputError
from ..grid import Grid
from ..io._atomic import atomic_path
from ..io._files import require_file
from ._orbitals import BOHR, CHUNK_BYTES, chunk_points, density_chunks, density_factorised

__all__ = ["BOHR", "ReferenceRecord", "load_record", "save_record"]

_REQUIRED = ("numbers", "positions", "basis", "xc", "mo_coeff_occ", "energy", "source", "name")
_OPTIONAL = ("scf_seconds", "scf_cycles", "grid_level", "conv_tol")


def _readonly(a: np.ndarray, dtype: type) -> np.ndarray:
    a = np.array(a, dtype=dtype)
    a.setflags(write=False)
    return a


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
        if numbers.ndim != 1 or len(numbers) == 0 or numbers.dtype.kind not in "iu":
            raise InvalidInputError(f"numbers: expected integers of shape (N,), got {numbers.dtype} {numbers.shape}")
        if numbers.min() < 1 or numbers.max() > 118:
            raise InvalidInputError(f"numbers: expected 1..118, got {numbers.min()}..{numbers.max()}")
        if positions.shape != (len(numbers), 3) or not np.isfinite(positions).all():
            raise InvalidInputError(
                f"positions: expected finite values of shape ({len(numbers)}, 3), got {positions.shape}"
            )
        if coeff.ndim != 2 or min(coeff.shape) < 1 or not np.isfinite(coeff).all():
            raise InvalidInputError(f"mo_coeff_occ: expected finite values of shape (n, K), got {coeff.shape}")
        for key in ("basis", "xc", "name", "source"):
            value = getattr(self, key)
            if not isinstance(value, str) or (not value and key != "source"):
                raise InvalidInputError(f"{key}: expected a non-empty string, got {value!r}")
        if not math.isfinite(self.energy):
            raise InvalidInputError(f"energy: expected a finite value, got {self.energy}")
        if self.scf_seconds is not None and not (self.scf_seconds >= 0 and math.isfinite(self.scf_seconds)):
            raise InvalidInputError(f"scf_seconds: expected a finite value >= 0, got {self.scf_seconds}")
        if self.scf_cycles is not None and not (int(self.scf_cycles) == self.scf_cycles >= 0):
            raise InvalidInputError(f"scf_cycles: expected an integer >= 0, got {self.scf_cycles}")
        object.__setattr__(self, "numbers", _readonly(numbers, np.int16))
        object.__setattr__(self, "positions", _readonly(positions, np.float64))
        object.__setattr__(self, "mo_coeff_occ", _readonly(coeff, np.float32))
        object.__setattr__(self, "energy", float(self.energy))
        if self.scf_seconds is not None:
            object.__setattr__(self, "scf_seconds", float(self.scf_seconds))
        if self.scf_cycles is not None:
            object.__setattr__(self, "scf_cycles", int(self.scf_cycles))

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



# ---------------------------------------------------------------------------- files
def load_record(path: str | os.PathLike) -> ReferenceRecord:
    """Read a record file (``.npz`` of the format above; pickles are never loaded).

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
            missing = [key for key in _REQUIRED if key not in data.files]
            if missing:
                raise FileFormatError(f"{path}: not a reference record, missing keys {missing}")
            values = {key: data[key] for key in _REQUIRED + _OPTIONAL if key in data.files}
    except FileFormatError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise FileFormatError(f"{path}: unreadable ({err.__class__.__name__}: {err})") from err
    try:
        arrays = {key: values.pop(key) for key in ("numbers", "positions", "mo_coeff_occ")}
        return ReferenceRecord(**arrays, **{key: _scalar(key, value) for key, value in values.items()})
    except InvalidInputError as err:
        raise FileFormatError(f"{path}: {err}") from err


def _scalar(key: str, value: np.ndarray) -> str | float | int:
    """The Python value of a 0-d array of the kind ``key`` needs, else InvalidInputError."""
    expected, kinds = {"energy": ("a number", "fiu"), "scf_seconds": ("a number", "fiu"),
                       "scf_cycles": ("an integer", "iu"), "grid_level": ("an integer", "iu"),
                       "conv_tol": ("a number", "fiu")}.get(key, ("a string", "U"))
    if value.shape != () or value.dtype.kind not in kinds:
        raise InvalidInputError(f"{key}: expected {expected}, got {value.dtype} array of shape {value.shape}")
    return value.item()


def save_record(path: str | os.PathLike, record: ReferenceRecord) -> Path:
    """Write ``record`` to ``path`` atomically, in the format of the shared data set.

    The file is compressed like the ``qm9-pbe-def2svp`` files and holds exactly their keys
    (``scf_seconds`` and ``scf_cycles`` only when set). Returns the path written.
    """
    path = Path(path)
    arrays = {
        "numbers": record.numbers, "positions": record.positions, "basis": np.str_(record.basis),
        "xc": np.str_(record.xc), "mo_coeff_occ": record.mo_coeff_occ, "energy": np.float64(record.energy),
        "source": np.str_(record.source), "name": np.str_(record.name),
    }
    if record.scf_seconds is not None:
        arrays["scf_seconds"] = np.float64(record.scf_seconds)
    if record.scf_cycles is not None:
        arrays["scf_cycles"] = np.int64(record.scf_cycles)
    if record.grid_level is not None:
        arrays["grid_level"] = np.int64(record.grid_level)
    if record.conv_tol is not None:
        arrays["conv_tol"] = np.float64(record.conv_tol)
    with atomic_path(path) as tmp, open(tmp, "wb") as stream:
        np.savez_compressed(stream, **arrays)
    return path
