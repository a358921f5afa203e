"""Labelling: reference densities for structures, from PySCF restricted Kohn-Sham.

:func:`label_structure` runs an all-electron, closed-shell Kohn-Sham calculation on one
molecule and returns a :class:`~ase_electra.reference.ReferenceRecord`, the format of the
shared ``qm9-pbe-def2svp`` data. The defaults are that data set's settings: PBE,
def2-SVP (spherical), density fitting (auxiliary basis chosen by PySCF), ``conv_tol``
1e-9 Hartree. The record keeps the doubly occupied orbitals only, so structures with an
odd number of electrons are refused, and so are periodic structures (the calculation is
molecular) and basis sets that put an effective core potential on an element.

:func:`label_files` is the library behind ``electra-label``: every selected frame of
ASE-readable files becomes one record file, ``<stem>.npz`` for a file holding a single
frame and ``<stem>_<frame>.npz`` otherwise (frame counted in the file from 0, whatever
``index`` selects, so runs over different selections never clash). All frames are read
and checked before the first calculation; each record is written atomically when ready,
and outputs that exist are skipped unless ``overwrite``.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from ase import Atoms

from .errors import ElectraError, InvalidInputError
from .reference import ReferenceRecord, save_record
from .structures import FrameJob, plan_frames

__all__ = ["SCFNotConvergedError", "check_structure", "label_structure", "plan_labels", "label_files"]

#: The settings of the shared ``qm9-pbe-def2svp`` data set (records added since 2026-12-01: grid
#: level 1 and conv_tol 1e-8, half the cost for about 0.001 % NMAE).
DEFAULT_XC, DEFAULT_BASIS, DEFAULT_CONV_TOL, DEFAULT_GRID_LEVEL = "pbe", "def2-svp", 1e-9, 3


class SCFNotConvergedError(ElectraError, RuntimeError):
    """The Kohn-Sham iterations did not reach ``conv_tol`` within ``max_cycle``."""


def check_structure(atoms: Atoms, charge: int = 0) -> int:
    """Number of electrons of ``atoms`` with total ``charge``; InvalidInputError if unlabellable.

    Refuses empty, periodic or non-finite structures and odd or non-positive electron counts.
    """
    if len(atoms) == 0:
        raise InvalidInputError("empty structure")
    if atoms.pbc.any():
        raise InvalidInputError(
            f"periodic structure (pbc={atoms.pbc.tolist()}); labelling is molecular: set pbc to False"
        )
    if not np.isfinite(atoms.positions).all():
        raise InvalidInputError("non-finite atomic positions")
    electrons = int(atoms.numbers.sum()) - int(charge)
    if electrons <= 0 or electrons % 2:
        raise InvalidInputError(
            f"{electrons} electrons (charge {charge}); records hold doubly occupied orbitals only, "
            "so the electron count must be even and positive"
        )
    return electrons


def _check_method(xc: str, basis: str, symbols: Iterable[str]) -> None:
    """InvalidInputError for an unknown functional or basis, or a basis with an ECP."""
    from pyscf import dft, gto
    from pyscf.lib.exceptions import BasisNotFoundError

    try:
        dft.libxc.parse_xc(xc)
    except KeyError as err:
        raise InvalidInputError(f"xc: unknown functional {xc!r}") from err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # PySCF suggests installing basis-set-exchange
        for symbol in sorted(set(symbols)):
            try:
                gto.basis.load(basis, symbol)
            except BasisNotFoundError as err:
                raise InvalidInputError(f"basis: {basis!r} unknown or without {symbol}") from err
            if gto.basis.load_ecp(basis, symbol):
                raise InvalidInputError(
                    f"basis: {basis!r} uses an effective core potential for {symbol}; records are all-electron"
                )


def label_structure(
    atoms: Atoms,
    xc: str = DEFAULT_XC,
    basis: str = DEFAULT_BASIS,
    conv_tol: float = DEFAULT_CONV_TOL,
    density_fit: bool = True,
    charge: int = 0,
    *,
    grid_level: int = DEFAULT_GRID_LEVEL,
    max_cycle: int = 100,
    name: str | None = None,
    source: str = "ase-electra",
    verbose: int = 0,
) -> ReferenceRecord:
    """Restricted Kohn-Sham reference of one molecule, as a record.

    Parameters
    ----------
    atoms : ase.Atoms
        The molecule, positions in Angstrom, not periodic.
    xc, basis : str
        PySCF (libxc) functional and all-electron basis set; stored lower-case.
    conv_tol : float, Hartree
        SCF energy convergence threshold.
    density_fit : bool
        Density fitting for the Coulomb (and exact-exchange) integrals.
    charge : int
        Total charge, elementary charges.
    grid_level : int
        PySCF DFT integration grid level (0-9; the shared records since 2026-12-01 use 1).
    max_cycle : int
        Most SCF iterations before :class:`SCFNotConvergedError`.
    name, source : str
        Stored in the record; ``name`` defaults to ``atoms.info['name']`` or the formula.
    verbose : int
        PySCF's verbosity (0: silent).

    Returns
    -------
    ReferenceRecord
        Occupied orbitals (stored as float32), total energy (Hartree), wall-clock SCF
        seconds (PySCF uses all its OpenMP threads) and SCF cycles.
    """
    from pyscf import dft, gto

    check_structure(atoms, charge)
    xc, basis = xc.lower(), basis.lower()
    _check_method(xc, basis, atoms.get_chemical_symbols())
    atom = [(int(z), p.tolist()) for z, p in zip(atoms.numbers, atoms.positions)]
    mol = gto.M(atom=atom, basis=basis, unit="Angstrom", charge=int(charge), spin=0, cart=False, verbose=verbose)
    mf = dft.RKS(mol, xc=xc)
    if density_fit:
        mf = mf.density_fit()
    mf.conv_tol, mf.max_cycle, mf.verbose = conv_tol, max_cycle, verbose
    mf.grids.level = grid_level
    start = time.perf_counter()
    mf.kernel()
    seconds = time.perf_counter() - start
    if not mf.converged:
        raise SCFNotConvergedError(
            f"SCF not converged to {conv_tol:g} Hartree in {max_cycle} cycles (last energy {mf.e_tot:.8f})"
        )
    occupied = mf.mo_occ > 0
    assert np.allclose(mf.mo_occ[occupied], 2.0), "restricted closed shell holds two electrons per orbital"
    if name is None:
        name = str(atoms.info.get("name", atoms.get_chemical_formula()))
    return ReferenceRecord(
        numbers=atoms.numbers, positions=atoms.positions, basis=basis, xc=xc,
        mo_coeff_occ=mf.mo_coeff[:, occupied], energy=float(mf.e_tot), source=source, name=name,
        scf_seconds=seconds, scf_cycles=int(mf.cycles), grid_level=grid_level, conv_tol=conv_tol,
    )


def plan_labels(paths: Iterable[str | os.PathLike], out_dir: str | os.PathLike, *, index: str = ":",
                charge: int = 0) -> list[FrameJob]:
    """Read and check every selected frame of ``paths`` and name its output in ``out_dir``.

    Raises FileFormatError or InvalidInputError (naming the file and frame) for unreadable
    files, unlabellable frames and two frames that would write the same output.
    """
    jobs = plan_frames(map(Path, paths), Path(out_dir), ".npz", index)
    for job in jobs:
        try:
            check_structure(job.atoms, charge)
        except InvalidInputError as err:
            raise InvalidInputError(f"{job.where}: {err}") from err
    return jobs


def label_files(
    paths: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    index: str = ":",
    overwrite: bool = False,
    xc: str = DEFAULT_XC,
    basis: str = DEFAULT_BASIS,
    conv_tol: float = DEFAULT_CONV_TOL,
    density_fit: bool = True,
    charge: int = 0,
    grid_level: int = DEFAULT_GRID_LEVEL,
    progress: Callable[[list[FrameJob]], Iterable[FrameJob]] | None = None,
) -> tuple[int, int]:
    """Label every selected frame of ``paths`` into ``out_dir``; returns (written, skipped).

    Frames, functional and basis are all checked before the first calculation; the
    method settings are those of :func:`label_structure`. Records are named by their
    output stem, with the input file's name as ``source``. ``progress`` wraps the list of
    frames to compute (e.g. ``tqdm``). Stops at the first failure; records written before
    it stay, complete.
    """
    jobs = plan_labels(paths, out_dir, index=index, charge=charge)
    _check_method(xc.lower(), basis.lower(), {s for job in jobs for s in job.atoms.get_chemical_symbols()})
    todo = [job for job in jobs if overwrite or not job.output.exists()]
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for job in progress(todo) if progress else todo:
        try:
            record = label_structure(job.atoms, xc, basis, conv_tol, density_fit, charge, grid_level=grid_level,
                                     name=job.output.stem, source=job.source.name)
        except ElectraError as err:
            raise type(err)(f"{job.where}: {err}") from err
        save_record(job.output, record)
    return len(todo), len(jobs) - len(todo)
