"""What users ask of a density: atomic charges, electrostatic potential, multipoles.

All analytic or integrated on grids adapted to Gaussians; units as ASE's (e, Angstrom,
eV): :func:`hirshfeld_charges` (e), :func:`dipole_moment` (e Angstrom),
:func:`quadrupole_moment` (traceless, e Angstrom^2), :func:`electrostatic_potential`
and :func:`potential_on_grid` (volts; on grids for crystals and slabs too),
:func:`planar_average` and :func:`vacuum_levels` (a slab's vacuum levels, eV).
:mod:`.trajectory` computes them for every frame of structure files.
"""

from .electrostatics import (
    COULOMB,
    HARTREE_PER_VOLT,
    VacuumLevel,
    electrostatic_potential,
    gaussian_potential,
    planar_average,
    potential_on_grid,
    vacuum_levels,
    write_potential_cube,
)
from .hirshfeld import hirshfeld_charges, hirshfeld_charges_of, hirshfeld_weights
from .multipoles import DEBYE, dipole_moment, quadrupole_moment

__all__ = [
    "COULOMB",
    "DEBYE",
    "HARTREE_PER_VOLT",
    "VacuumLevel",
    "dipole_moment",
    "electrostatic_potential",
    "gaussian_potential",
    "hirshfeld_charges",
    "hirshfeld_charges_of",
    "hirshfeld_weights",
    "planar_average",
    "potential_on_grid",
    "quadrupole_moment",
    "vacuum_levels",
    "write_potential_cube",
]
