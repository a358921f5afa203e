"""Crystals and slabs labelled with GPAW: PBE, plane waves, all-electron densities sampled on the cell grid.

:func:`label_crystal` runs one GPAW plane-wave calculation on a crystal (periodic along a,
b and c) or a slab (periodic along a and b, vacuum along c) and returns a
:class:`~ase_electra.reference.PeriodicRecord`: the all-electron density
``n = n~ + sum_a (n_a - n~_a)`` (PAW) sampled at the points of
``Grid.for_cell(cell, spacing, pbc)``, and each atom's ``missing_charge`` (what its cusp
holds beyond the samples; the record format says more). Wires (one periodic axis) are
not labelled. Defaults, from convergence of the density against 1,000-1,500 eV and
0.05 A grids (``docs/method.md``, "Crystals"):

* PBE with GPAW's PBE PAW datasets (``gpaw-data``), non-spin-polarised unless the atoms
  carry initial magnetic moments;
* 800 eV plane waves (density within 0.01-0.02 % NMAE for Si, NaCl, MgO, SrTiO3, Cu);
  1,200 eV with fluorine (LiF: 0.31 % at 800 eV, 0.05 % at 1,200);
* Gamma-centred k-points, ``n_i = ceil(2 pi |b_i| * 4)`` with ``b_i`` the reciprocal
  vectors without the 2 pi: 4 per 1/Angstrom, within 0.02 % for Al and Cu;
* Fermi-Dirac smearing 0.1 eV; GPAW's default SCF convergence.

Slabs (:func:`check_crystal`): c is orthogonal to a and b and the atoms have at least
``SLAB_VACUUM`` = 4 A of vacuum on each side along c inside the cell (8 A in all), so that
the density vanishes at the cell's faces along c and the record can treat c as
non-periodic. GPAW runs the slab with its own pbc (True, True, False): in GPAW 26.7 the
plane waves stay periodic along c (the vacuum separates the images) while the Poisson
solver adds the dipole-layer correction along c (``poissonsolver={'dipolelayer': 'xy'}``,
``DipoleLayerPWPoissonSolver``, which needs exactly this pbc and c along z: GPAW gets the
slab rotated so, which leaves the fractional sample points unchanged); one k-point along c.

GPAW reduces the k-points by the point-group symmetries about the cell's origin, which a
structure translated off its high-symmetry origin loses (diamond Si at 9x9x9 k-points: 35
irreducible points with an atom at the origin, 85 after moving both atoms by 0.037 A along
x, y and z). GPAW therefore runs on the structure translated so that GPAW finds the most
symmetries (as given, or the first atom of one element at the origin, moved along the
periodic axes only so that a slab stays where it is along c; :func:`_symmetric_shift`), and
the samples are taken at the points of the structure as given.

How the samples are made: the smooth pseudo-density ``n~`` lives on GPAW's plane-wave
grid as a trigonometric polynomial, evaluated exactly at the (shifted) sample points
whatever their number (:func:`_trigonometric_samples`); GPAW's own ``gpaw.densities.add``
then adds each atom's PAW correction at the points within its augmentation sphere and
returns the charge it added, from which ``missing_charge`` follows (GPAW's
``all_electron_densities`` does the same on its own grid and adds the missing charge to
the nearest grid point).

GPAW (GPL) is optional: ``make gpaw`` installs it (README, "Labelling crystals").
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable

import numpy as np
from ase import Atoms
from ase.units import Bohr, Hartree

from ..errors import InvalidInputError, MissingDependencyError, SCFNotConvergedError
from ..grid import Grid
from .records import PeriodicRecord

__all__ = [
    "DEFAULT_ECUT",
    "DEFAULT_KPT_DENSITY",
    "DEFAULT_SMEARING",
    "DEFAULT_SPACING",
    "FLUORINE_ECUT",
    "SLAB_VACUUM",
    "check_crystal",
    "check_gpaw",
    "default_ecut",
    "kpoint_grid",
    "label_crystal",
]

#: Plane-wave cutoff, eV, and the one for structures holding fluorine.
DEFAULT_ECUT, FLUORINE_ECUT = 800.0, 1200.0
#: k-points per 1/Angstrom of reciprocal lattice vector (2 pi included).
DEFAULT_KPT_DENSITY = 4.0
#: Fermi-Dirac width, eV.
DEFAULT_SMEARING = 0.1
#: Largest spacing of the sample grid, Angstrom.
DEFAULT_SPACING = 0.1
#: Vacuum a slab needs on each side along c inside its cell, Angstrom.
SLAB_VACUUM = 4.0

_INSTALL = "periodic structures are labelled with GPAW, which is not installed: run `make gpaw` (README)"


def default_ecut(numbers: Iterable[int]) -> float:
    """Plane-wave cutoff for these atomic numbers, eV: 1,200 with fluorine (Z = 9), else 800.

    >>> default_ecut([3, 9]), default_ecut([14, 14])
    (1200.0, 800.0)
    """
    return FLUORINE_ECUT if 9 in {int(z) for z in numbers} else DEFAULT_ECUT


def kpoint_grid(cell: np.ndarray, density: float = DEFAULT_KPT_DENSITY) -> tuple[int, int, int]:
    """Gamma-centred k-point grid ``n_i = ceil(2 pi |b_i| density)`` for a cell (rows, Angstrom).

    ``b_i`` are the reciprocal vectors without the 2 pi (1/Angstrom); ``density`` is in
    k-points per 1/Angstrom.

    >>> from ase.build import bulk
    >>> kpoint_grid(bulk("Si", "diamond", 5.43).cell)
    (9, 9, 9)
    """
    if not (density > 0 and math.isfinite(density)):
        raise InvalidInputError(f"k-point density: expected a finite value > 0 per 1/Angstrom, got {density}")
    reciprocal = np.linalg.inv(np.asarray(cell, dtype=np.float64)).T  # (3, 3), rows b_i, 1/Angstrom
    return tuple(max(1, math.ceil(2 * math.pi * float(np.linalg.norm(b)) * density - 1e-9)) for b in reciprocal)


def check_crystal(atoms: Atoms, charge: int = 0) -> int:
    """Number of electrons of the crystal or slab ``atoms`` with total ``charge``; InvalidInputError if unlabellable.

    Refuses empty or non-finite structures, singular cells, non-positive electron counts,
    and structures that are neither crystals (pbc True throughout) nor slabs (pbc True,
    True, False; :func:`_check_slab`): wires, molecules, slabs with their vacuum along a or
    b. Odd counts are fine: the occupations are smeared.
    """
    if len(atoms) == 0:
        raise InvalidInputError("empty structure")
    if not np.isfinite(atoms.positions).all() or not np.isfinite(atoms.cell.array).all():
        raise InvalidInputError("non-finite atomic positions or cell")
    if abs(atoms.cell.volume) < 1e-9:
        raise InvalidInputError(f"cell {np.round(atoms.cell.array, 4).tolist()} is singular")
    pbc = atoms.pbc.tolist()
    if atoms.pbc.sum() < 2:
        kind = "a wire (periodic along one axis)" if any(pbc) else "not periodic (molecules go to PySCF)"
        raise InvalidInputError(f"pbc={pbc}: {kind}; GPAW labels crystals (pbc True throughout) and slabs "
                                "(pbc True, True, False) only")
    if pbc[2] and not all(pbc):
        axis = "ab"[pbc.index(False)]
        raise InvalidInputError(f"pbc={pbc}: a slab with its vacuum along {axis}; put the vacuum along c, the "
                                "non-periodic axis (pbc True, True, False)")
    if not pbc[2]:
        _check_slab(atoms)
    electrons = int(atoms.numbers.sum()) - int(charge)
    if electrons <= 0:
        raise InvalidInputError(f"{electrons} electrons (charge {charge}): expected a positive count")
    return electrons


def _check_slab(atoms: Atoms) -> None:
    """InvalidInputError unless c is orthogonal to a and b (1e-6) and the atoms have ``SLAB_VACUUM`` each side along c.

    The vacuum is measured inside the cell: from the cell's face at c = 0 to the lowest
    atom, and from the highest atom to the face at c = 1 (Angstrom along c).
    """
    a, b, c = atoms.cell.array
    cosines = [abs(v @ c) / (np.linalg.norm(v) * np.linalg.norm(c)) for v in (a, b)]
    if max(cosines) > 1e-6:
        raise InvalidInputError(f"slab: c is not orthogonal to a and b (cosines {max(cosines):.3g}); GPAW's "
                                "dipole correction needs c normal to the surface")
    length = float(np.linalg.norm(c))
    heights = atoms.cell.scaled_positions(atoms.positions)[:, 2] * length  # (N,) Angstrom along c
    below, above = float(heights.min()), length - float(heights.max())
    if min(below, above) < SLAB_VACUUM - 1e-6:
        raise InvalidInputError(
            f"slab: {below:.2f} A of vacuum below the atoms along c and {above:.2f} A above ({below + above:.2f} A "
            f"in all); {SLAB_VACUUM:g} A are needed on each side ({2 * SLAB_VACUUM:g} A in all): lengthen c and "
            "centre the slab (atoms.center(vacuum=..., axis=2))"
        )


def check_gpaw(symbols: Iterable[str]) -> None:
    """MissingDependencyError without GPAW; InvalidInputError for an element without a PBE PAW dataset."""
    try:
        from gpaw.setup_data import search_for_file
    except ImportError as err:
        raise MissingDependencyError(f"{_INSTALL} ({err})") from err
    for symbol in sorted(set(symbols)):
        try:
            search_for_file(f"{symbol}.PBE")
        except FileNotFoundError as err:
            raise InvalidInputError(f"{symbol}: GPAW has no PBE PAW dataset for this element") from err


def label_crystal(
    atoms: Atoms,
    *,
    ecut: float | None = None,
    kpt_density: float = DEFAULT_KPT_DENSITY,
    smearing: float = DEFAULT_SMEARING,
    spacing: float = DEFAULT_SPACING,
    charge: int = 0,
    name: str | None = None,
    source: str = "ase-electra",
) -> PeriodicRecord:
    """GPAW PBE plane-wave reference of one crystal or slab, as a record of density samples.

    Parameters
    ----------
    atoms : ase.Atoms
        A crystal (pbc True throughout) or a slab (pbc True, True, False, with vacuum
        along c: :func:`check_crystal`); positions and cell in Angstrom. Initial magnetic
        moments, if any, make the calculation spin-polarised. A slab gets one k-point
        along c and GPAW's dipole-layer correction along c (module docstring).
    ecut : float, eV, optional
        Plane-wave cutoff; default :func:`default_ecut` (800, 1,200 with fluorine).
    kpt_density : float
        k-points per 1/Angstrom (:func:`kpoint_grid`; 1 along a slab's c), Gamma-centred.
    smearing : float, eV
        Fermi-Dirac width.
    spacing : float, Angstrom
        Largest spacing of the sample grid ``Grid.for_cell(atoms.cell, spacing, atoms.pbc)``.
    charge : int
        Total charge, elementary charges (GPAW adds a uniform compensating background).
    name, source : str
        Stored in the record; ``name`` defaults to ``atoms.info['name']`` or the formula.

    Returns
    -------
    PeriodicRecord
        The samples (stored as float32), each atom's missing charge, GPAW's energy
        (Hartree), wall-clock SCF seconds and SCF iterations, and the structure's pbc.
    """
    check_crystal(atoms, charge)
    check_gpaw(atoms.get_chemical_symbols())
    from gpaw import GPAW, PW, FermiDirac, KohnShamConvergenceError, __version__

    ecut = default_ecut(atoms.numbers) if ecut is None else float(ecut)
    if not (ecut > 0 and math.isfinite(ecut)):
        raise InvalidInputError(f"ecut: expected a finite cutoff > 0 eV, got {ecut}")
    if not (smearing >= 0 and math.isfinite(smearing)):
        raise InvalidInputError(f"smearing: expected a finite width >= 0 eV, got {smearing}")
    pbc = tuple(bool(p) for p in atoms.pbc)
    grid = Grid.for_cell(atoms.cell.array, spacing, pbc)
    kpts = tuple(n if p else 1 for n, p in zip(kpoint_grid(atoms.cell.array, kpt_density), pbc))
    dipole = {} if all(pbc) else {"poissonsolver": {"dipolelayer": "xy"}}  # a slab: dipole layer along c
    work = _gpaw_frame(atoms)
    shift = _symmetric_shift(work)  # Angstrom; GPAW's frame is r + shift
    work.positions += shift
    work.calc = GPAW(mode=PW(ecut), xc="PBE", kpts={"size": kpts, "gamma": True}, charge=charge,
                     occupations=FermiDirac(smearing), txt=None, **dipole)
    start = time.perf_counter()
    try:
        energy = work.get_potential_energy()
    except KohnShamConvergenceError as err:
        raise SCFNotConvergedError(f"GPAW SCF not converged ({err})") from err
    seconds = time.perf_counter() - start
    samples, missing = _all_electron_samples(work.calc, grid.shape, work.cell.scaled_positions(shift[None])[0])
    if name is None:
        name = str(atoms.info.get("name", atoms.get_chemical_formula()))
    return PeriodicRecord(
        numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell.array, density=samples,
        missing_charge=missing, spacing=spacing, xc="pbe", code=f"gpaw {__version__}", ecut=ecut,
        kpts=np.array(kpts), smearing=smearing, spin_polarized=work.calc.get_number_of_spins() == 2,
        charge=int(charge), energy=energy / Hartree, source=source, name=name, scf_seconds=seconds,
        scf_cycles=int(work.calc.get_number_of_iterations()), pbc=pbc,
    )


def _gpaw_frame(atoms: Atoms) -> Atoms:
    """A bare copy of ``atoms`` (numbers, magnetic moments, pbc) for GPAW; a slab rotated so that c lies along +z.

    GPAW's dipole layer takes the dipole's z component and ``cell[2, 2]`` as the slab's
    normal. A rotation leaves fractional coordinates, hence the sample points, unchanged.
    """
    cell, rotation = atoms.cell.array, np.eye(3)
    if not atoms.pbc.all():
        ez = cell[2] / np.linalg.norm(cell[2])
        ex = cell[0] / np.linalg.norm(cell[0])  # orthogonal to c (check_crystal)
        rotation = np.array([ex, np.cross(ez, ex), ez]).T  # vectors (rows) @ rotation: the frame (ex, ez x ex, ez)
    return Atoms(numbers=atoms.numbers, positions=atoms.positions @ rotation, cell=cell @ rotation, pbc=atoms.pbc,
                 magmoms=atoms.get_initial_magnetic_moments())


def _symmetric_shift(atoms: Atoms) -> np.ndarray:
    """Translation (3,) Angstrom under which GPAW finds the most symmetries of ``atoms``.

    Candidates: none, and the first atom of each element moved to the origin along the
    periodic axes (a slab keeps its place along c, inside its cell); ties keep the earlier
    candidate (none first).
    """
    from gpaw.new.symmetry import create_symmetries_object

    magmoms = atoms.get_initial_magnetic_moments()
    firsts = sorted({int(z): i for i, z in reversed(list(enumerate(atoms.numbers)))}.values())
    along = atoms.cell.scaled_positions(atoms.positions) * atoms.pbc  # (N, 3) fractional, periodic axes only
    best, most = np.zeros(3), 0
    for shift in [np.zeros(3)] + [-along[i] @ atoms.cell.array for i in firsts]:
        moved = atoms.copy()
        moved.positions += shift
        count = len(create_symmetries_object(moved, magmoms=magmoms if magmoms.any() else None,
                                             guarantee_group=False))
        if count > most:
            best, most = shift, count
    return best


def _all_electron_samples(calc, shape: tuple[int, int, int], offset: Iterable[float] = (0.0, 0.0, 0.0)
                          ) -> tuple[np.ndarray, np.ndarray]:
    """All-electron density at the points of a ``shape`` grid on the cell, and each atom's missing charge.

    Parameters
    ----------
    calc : GPAW calculator, converged
    shape : tuple of 3 int
        Sample grid: point (i, j, k) at fractions (i / S1, j / S2, k / S3) of the cell.
    offset : array, shape (3,)
        Fractional coordinates of the sample grid's origin in the calculation's frame (the
        structure was moved by ``offset`` before GPAW ran): GPAW's density is sampled at
        ``(i / S1, j / S2, k / S3) + offset``, so the samples are those of the unmoved structure.

    Returns
    -------
    samples : ndarray, shape ``shape``, e/Angstrom^3
        Summed over spins.
    missing : ndarray, shape (N,), electrons
        Per atom, the charge of its PAW correction and core that the samples do not hold:
        ``samples.sum() * voxel_volume + missing.sum()`` is the electron count.
    """
    from gpaw.densities import add

    offset = np.asarray(offset, dtype=np.float64)
    densities = calc.dft.densities()  # GPAW's all-electron view of the converged density
    pseudo = densities.nt_sR.to_pbc_grid()  # (spins, N1, N2, N3), e/bohr^3 on GPAW's grid
    spins = pseudo.dims[0]
    out = pseudo.desc.new(size=shape).zeros(spins)  # (spins, *shape) on the sample grid
    for s in range(spins):
        out.data[s] = _trigonometric_samples(pseudo.data[s], shape, offset)
    matrices = densities.D_asii.gather(broadcast=True)  # atomic density matrices
    unmoved = (densities.relpos_ac - offset) % 1.0  # (N, 3) fractional, the structure as given
    missing = np.zeros(len(unmoved))
    for a, matrix in matrices.items():
        matrix = matrix.real  # (spins, i, i)
        setup = densities.setups[a]
        rcut = max(setup.rcut_j)  # bohr
        phi, phit = setup.get_partial_waves()[:2]
        core = setup.data.rgd.spline((setup.data.nc_g - setup.data.nct_g) / spins, 2 * rcut, points=1000)
        expected = setup.Nc - setup.Nct + math.sqrt(4 * math.pi) * np.einsum(
            "sij,ij->", matrix, setup.Delta_iiL[:, :, 0])
        added = add(unmoved[a] @ out.desc.cell_cv, out, phi, phit, [core] * spins, rcut, matrix)
        missing[a] = expected - added.sum()
    return out.data.sum(axis=0) / Bohr**3, missing


def _trigonometric_samples(values: np.ndarray, shape: tuple[int, int, int], offset: np.ndarray) -> np.ndarray:
    """The trigonometric interpolant of periodic grid ``values`` (N1, N2, N3) at the points of a ``shape`` grid.

    Point (i, j, k) sits at fractions ``(i / S1, j / S2, k / S3) + offset`` (offset: (3,)) of the cell.
    Exact samples of a band-limited function on the same cell, whatever ``shape`` (finer or
    coarser): one small matrix product per axis with ``exp(2 pi i g x)``. Taking the real
    part treats a Nyquist frequency as a cosine, as a real function needs.
    """
    coefficients = np.fft.fftn(values) / values.size  # (N1, N2, N3)
    for axis, (n, s) in enumerate(zip(values.shape, shape)):
        g = np.fft.fftfreq(n, 1.0 / n)  # integer frequencies, (n,)
        phases = np.exp(2j * np.pi * np.outer(np.arange(s) / s + offset[axis], g))  # (s, n)
        coefficients = np.moveaxis(np.tensordot(phases, coefficients, axes=(1, axis)), 0, axis)
    return coefficients.real
