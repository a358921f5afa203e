"""Molecules labelled with PySCF restricted Kohn-Sham.

:func:`label_structure` runs an all-electron, closed-shell Kohn-Sham calculation on one
molecule and returns a :class:`~ase_electra.reference.ReferenceRecord`, the format of the
shared ``qm9-pbe-def2svp`` data. The defaults are that data set's settings: PBE,
def2-SVP (spherical), density fitting (auxiliary basis chosen by PySCF), ``conv_tol``
1e-9 Hartree. The record keeps the doubly occupied orbitals only, so structures with an
odd number of electrons are refused, and so are periodic structures (the calculation is
molecular; :mod:`ase_electra.reference.gpaw` labels those) and basis sets that put an
effective core potential on an element.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable

import numpy as np
from ase import Atoms

from ..errors import InvalidInputError, SCFNotConvergedError
from .records import ReferenceRecord

__all__ = ["check_method", "check_molecule", "label_structure"]

#: The settings of the shared ``qm9-pbe-def2svp`` data set (records added since 2026-12-01: grid
#: level 1 and conv_tol 1e-8, half the cost for about 0.001 % NMAE).
DEFAULT_XC, DEFAULT_BASIS, DEFAULT_CONV_TOL, DEFAULT_GRID_LEVEL = "pbe", "def2-svp", 1e-9, 3


def check_molecule(atoms: Atoms, charge: int = 0) -> int:
    """Number of electrons of the molecule ``atoms`` with total ``charge``; InvalidInputError if unlabellable.

    Refuses empty, periodic or non-finite structures and odd or non-positive electron counts.
    """
    if len(atoms) == 0:
        raise InvalidInputError("empty structure")
    if atoms.pbc.any():
        raise InvalidInputError(
            f"periodic structure (pbc={atoms.pbc.tolist()}); PySCF labelling is molecular: set pbc to False"
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


def check_method(xc: str, basis: str, symbols: Iterable[str]) -> None:
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

    check_molecule(atoms, charge)
    xc, basis = xc.lower(), basis.lower()
    check_method(xc, basis, atoms.get_chemical_symbols())
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
