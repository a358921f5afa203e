"""Reference densities: PySCF Kohn-Sham records and their exact electron density.

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
=============  ============================================================

The density is exact at any point::

    rho(r) = 2 sum_k (sum_mu C[mu, k] phi_mu(r))^2        (electrons / bohr^3)

with ``phi`` PySCF's spherical AOs (``mol.eval_gto('GTOval_sph', r_bohr)``). Units change
only here: points come in Angstrom and go to PySCF in bohr; densities come back in
e/Angstrom^3 (1 bohr = 0.529177210903 Angstrom).

Two evaluation paths give the same numbers (they agree to ~1e-14 of the peak):

* :meth:`ReferenceRecord.density_at`, and grids with skewed cells, call PySCF's
  ``eval_gto`` with its AO screening mask, in chunks of bounded memory, and multiply only
  by the coefficients of AOs that are non-zero somewhere in the chunk.
* :meth:`ReferenceRecord.density_on` for a grid whose cell is diagonal (every box grid
  from :meth:`Grid.for_molecule`) uses that a Cartesian Gaussian factorises along x, y
  and z: on a block of 32^3 points each Cartesian AO is one small matrix product of 1-D
  factors. Shells whose bound ``sum_p |c_p| r^l exp(-a_p r^2)`` is below 1e-15 over the
  whole block are skipped; the MOs use Cartesian coefficients ``T C`` (``T`` is PySCF's
  Cartesian-to-spherical map). About twice as fast as the ``eval_gto`` path.

Legend: N atoms, P points, n spherical AOs, m Cartesian AOs, K occupied orbitals,
p primitives of a shell.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

from .errors import FileFormatError, InvalidInputError
from .grid import Grid
from .io._atomic import atomic_path
from .io._files import require_file

__all__ = [
    "BOHR",
    "SPLITS",
    "ReferenceRecord",
    "load_record",
    "save_record",
    "list_records",
    "qm9_index",
    "split_of",
]

#: Angstrom per bohr (CODATA 2018, as ASE and PySCF use).
BOHR = 0.529177210903

#: QM9 splits by the last digit of the index: 0-7 train, 8 validation, 9 test.
SPLITS = ("train", "validation", "test")

#: Memory bound of one evaluation chunk (AO values and MO values), bytes.
CHUNK_BYTES = 200 * 1024**2

_REQUIRED = ("numbers", "positions", "basis", "xc", "mo_coeff_occ", "energy", "source", "name")
_OPTIONAL = ("scf_seconds", "scf_cycles", "grid_level", "conv_tol")
_AO_CUTOFF = 1e-15  # AO values below this (bohr^-3/2) count as zero; PySCF's default
_BLOCK = 32  # edge of the blocks of the factorised grid path, points
_LIBCINT_SP = {0: 0.282094791773878143, 1: 0.488602511902919921}  # libcint's s and p factors
_QM9_NAME = re.compile(r"(?:qm9|gdb)_(\d+)")


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
        size = _chunk_points(chunk_bytes, 2 * mol.nao + self.mo_coeff_occ.shape[1])
        chunks = ((slice(s, s + size), points[s:s + size]) for s in range(0, len(points), size))
        return _density_chunks(mol, self.mo_coeff_occ.astype(np.float64), chunks, len(points), size)

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
            return _density_factorised(mol, coeff, grid, chunk_bytes)
        size = _chunk_points(chunk_bytes, 2 * mol.nao + coeff.shape[1])
        return _density_chunks(mol, coeff, grid.chunks(size), grid.n_points, size).reshape(grid.shape)


def _chunk_points(chunk_bytes: int, floats_per_point: int) -> int:
    """Points per chunk so that ``floats_per_point`` float64 each fit in ``chunk_bytes``."""
    return max(1, int(chunk_bytes) // (8 * (floats_per_point + 2)))


def _density_chunks(mol, coeff: np.ndarray, chunks, n_points: int, size: int) -> np.ndarray:
    """Density (P,) e/Angstrom^3 from ``(flat slice, points (<= size, 3) Angstrom)`` chunks."""
    buffer = np.empty(mol.nao * min(size, n_points))  # AO values of one chunk, reused
    rho = np.empty(n_points)
    for flat, points in chunks:
        rho[flat] = _rho_eval_gto(mol, coeff, points / BOHR, buffer)
    return rho / BOHR**3


def _rho_eval_gto(mol, coeff: np.ndarray, coords: np.ndarray, buffer: np.ndarray) -> np.ndarray:
    """rho (P,) e/bohr^3 at ``coords`` (P, 3) bohr through PySCF's screened ``eval_gto``."""
    from pyscf.dft.gen_grid import make_mask

    mask = make_mask(mol, coords, cutoff=_AO_CUTOFF)  # (P / 56 blocks, shells), 0: shell negligible
    ao = mol.eval_gto("GTOval_sph", coords, non0tab=mask, out=buffer)  # (P, n), zero where masked
    shells = np.flatnonzero(mask.any(axis=0))
    if len(shells) < mol.nbas:
        ao_loc = mol.ao_loc_nr()
        cols = np.concatenate([np.arange(ao_loc[s], ao_loc[s + 1]) for s in shells]) if len(shells) else []
        mo = ao[:, cols] @ coeff[cols]  # (P, K)
    else:
        mo = ao @ coeff
    return 2.0 * np.einsum("pk,pk->p", mo, mo)


@dataclass(frozen=True)
class _Shell:
    """One contraction of a PySCF shell in Cartesian form (coefficients include libcint's factors)."""

    centre: np.ndarray  # (3,) bohr
    powers: list[tuple[int, int, int]]  # Cartesian exponents in PySCF order, length m_l
    exponents: np.ndarray  # (p,) bohr^-2
    coefficients: np.ndarray  # (p,)
    first: int  # index of its first Cartesian AO
    reach: float  # bohr; beyond it every Cartesian component is below _AO_CUTOFF


def _cartesian_shells(mol) -> list[_Shell]:
    from pyscf import gto

    shells, first = [], 0
    radii = np.linspace(0.0, 60.0, 3001)  # bohr
    for s in range(mol.nbas):
        l, alpha = mol.bas_angular(s), mol.bas_exp(s)
        coefficients = mol.bas_ctr_coeff(s) * gto.gto_norm(l, alpha)[:, None] * _LIBCINT_SP.get(l, 1.0)  # (p, c)
        powers = [(a, b, l - a - b) for a in range(l, -1, -1) for b in range(l - a, -1, -1)]
        for c in coefficients.T:
            bound = np.abs(c) @ np.exp(-np.outer(alpha, radii**2)) * radii**l  # >= |AO| at distance r
            above = np.flatnonzero(bound >= _AO_CUTOFF)
            last = above[-1] if len(above) else -1
            reach = math.inf if last == len(radii) - 1 else float(radii[last + 1])
            shells.append(_Shell(mol.bas_coord(s), powers, alpha, c, first, reach))
            first += len(powers)
    return shells


def _density_factorised(mol, coeff: np.ndarray, grid: Grid, chunk_bytes: int) -> np.ndarray:
    """Density (grid.shape) e/Angstrom^3 on a grid with a diagonal cell, block by block."""
    shells = _cartesian_shells(mol)
    coeff_cart = mol.cart2sph_coeff() @ coeff  # (m, K): MOs in Cartesian AOs
    m, n_occ = coeff_cart.shape
    edge = max(1, min(_BLOCK, int(_chunk_points(chunk_bytes, m + n_occ) ** (1 / 3) + 1e-9)))  # points per axis
    axes = [(grid.origin[a] + np.arange(n) / n * grid.cell[a, a]) / BOHR for a, n in enumerate(grid.shape)]
    ao_buffer, mo_buffer = np.empty(m * edge**3), np.empty(n_occ * edge**3)  # reused by every block
    centres = np.array([s.centre for s in shells])  # (shells, 3) bohr
    reach = np.array([s.reach for s in shells])
    rho = np.empty(grid.shape)
    for i in range(0, grid.shape[0], edge):
        for j in range(0, grid.shape[1], edge):
            for k in range(0, grid.shape[2], edge):
                x, y, z = axes[0][i:i + edge], axes[1][j:j + edge], axes[2][k:k + edge]
                n = len(x) * len(y) * len(z)
                corners = np.array([[x[0], y[0], z[0]], [x[-1], y[-1], z[-1]]])
                nearest = np.clip(centres, corners.min(0), corners.max(0))  # (shells, 3)
                near = np.linalg.norm(nearest - centres, axis=1) < reach
                ao = ao_buffer[: m * n].reshape(m, n)
                rows = _cartesian_block(x, y, z, [s for s, keep in zip(shells, near) if keep], ao)
                psi = np.matmul(coeff_cart[rows].T, ao[: len(rows)], out=mo_buffer[: n_occ * n].reshape(n_occ, n))
                block = 2.0 * np.einsum("kp,kp->p", psi, psi)  # (P,)
                rho[i:i + edge, j:j + edge, k:k + edge] = block.reshape(len(x), len(y), len(z))
    return rho / BOHR**3


def _cartesian_block(x: np.ndarray, y: np.ndarray, z: np.ndarray, shells: list[_Shell], out: np.ndarray) -> np.ndarray:
    """Cartesian AOs of ``shells`` on the product grid x * y * z (bohr) into ``out`` rows.

    AO (a, b, c) = sum_p c_p [dx^a e^(-a_p dx^2)] [dy^b e^(-a_p dy^2)] [dz^c e^(-a_p dz^2)]:
    one (X*Y, p) @ (p, Z) product per AO. Returns the AO index of each row written.
    """
    n_xy, n_z = len(x) * len(y), len(z)
    rows, row = [], 0
    for shell in shells:
        dx, dy, dz = x - shell.centre[0], y - shell.centre[1], z - shell.centre[2]
        ex = shell.coefficients[:, None] * np.exp(-np.outer(shell.exponents, dx * dx))  # (p, X)
        ey = np.exp(-np.outer(shell.exponents, dy * dy))  # (p, Y)
        ez = np.exp(-np.outer(shell.exponents, dz * dz))  # (p, Z)
        for a, b, c in shell.powers:
            exy = (ex * dx**a)[:, :, None] * (ey * dy**b)[:, None, :]  # (p, X, Y)
            np.matmul(exy.reshape(len(ex), n_xy).T, ez * dz**c, out=out[row].reshape(n_xy, n_z))
            row += 1
        rows.extend(range(shell.first, shell.first + len(shell.powers)))
    return np.array(rows, dtype=np.intp)


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


# ---------------------------------------------------------------------------- QM9 names
def qm9_index(name_or_path: str | os.PathLike) -> int:
    """The QM9 index in a record name or path: ``qm9_005128`` or ``.../qm9_005128.npz`` -> 5128.

    ``gdb_5128`` (QM9's own naming) is accepted too. Raises InvalidInputError otherwise.

    >>> qm9_index("qm9_005128.npz")
    5128
    """
    stem = Path(name_or_path).name.removesuffix(".npz")
    match = _QM9_NAME.fullmatch(stem)
    if match is None:
        raise InvalidInputError(f"{name_or_path}: not a QM9 record name (expected qm9_<index>, e.g. qm9_005128)")
    return int(match.group(1))


def split_of(index: int) -> str:
    """``'train'`` (last digit 0-7), ``'validation'`` (8) or ``'test'`` (9) for a QM9 index.

    >>> split_of(5128), split_of(18), split_of(129)
    ('validation', 'validation', 'test')
    """
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
        raise InvalidInputError(f"QM9 index: expected an integer >= 0, got {index!r}")
    digit = int(index) % 10
    return "test" if digit == 9 else "validation" if digit == 8 else "train"


def list_records(folder: str | os.PathLike, split: str | None = None) -> list[Path]:
    """Record files (``*.npz``) in ``folder``, sorted by name; whatever files are present.

    With ``split``, only QM9-named records (:func:`qm9_index`) of that split.
    """
    folder = Path(folder)
    if split is not None and split not in SPLITS:
        raise InvalidInputError(f"split: expected one of {SPLITS}, got {split!r}")
    if not folder.is_dir():
        raise FileFormatError(f"{folder}: no such folder")
    paths = sorted(p for p in folder.glob("*.npz") if p.is_file() and not p.name.startswith("."))
    if split is None:
        return paths
    return [p for p in paths if _QM9_NAME.fullmatch(p.stem) and split_of(qm9_index(p)) == split]
