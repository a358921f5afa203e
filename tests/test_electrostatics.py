"""The Ewald-split potential on grids (ase_electra.properties.ewald) against direct sums.

Molecules: the analytic per-Gaussian potential (electrostatics.electrostatic_potential).
Crystals: a brute-force Ewald sum written here (images in real space, plane waves in
reciprocal space, its own splitting width). Slabs: the planar average against the 1-D
potential of the charges' z-marginals, whose far values give the vacuum levels.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, fcc111, molecule
from ase.data import vdw_radii
from ase.units import kcal, mol
from scipy.special import erf

from ase_electra import ElectraCalculator
from ase_electra.calculator import CalculatorInputError
from ase_electra.errors import InvalidInputError
from ase_electra.gaussians import GaussianMixture
from ase_electra.grid import Grid
from ase_electra.properties.electrostatics import (
    COULOMB,
    NUCLEAR_SIGMA,
    electrostatic_potential,
    planar_average,
    potential_on_grid,
    vacuum_levels,
)
from ase_electra.properties.ewald import charge_distribution, split_gaussian_potential

from .conftest import random_mixture

pytestmark = pytest.mark.usefixtures("one_thread")


def _mixture(model, atoms) -> GaussianMixture:
    with torch.no_grad():
        return model.predict([atoms]).detach().to(dtype=torch.float64)


def _sample(grid: Grid, n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).choice(grid.n_points, n, replace=False)


@pytest.mark.parametrize("spacing", [0.2, 0.3])
def test_molecule_grid_matches_analytic_potential_on_vdw_shells(default_model, spacing):
    atoms = molecule("CH3CH2OH")
    mixture = _mixture(default_model, atoms)
    grid = Grid.for_molecule(atoms.positions, spacing, 3.0)
    values = potential_on_grid(mixture, atoms.numbers, atoms.positions, grid).reshape(-1)
    pts = grid.points()
    ratio = (np.linalg.norm(pts[:, None] - atoms.positions, axis=-1) / vdw_radii[atoms.numbers]).min(1)
    shells = np.random.default_rng(0).choice(np.nonzero((ratio >= 1.4) & (ratio <= 2.0))[0], 300, replace=False)
    inside = np.random.default_rng(1).choice(np.nonzero(ratio < 1.4)[0], 200, replace=False)
    exact = electrostatic_potential(mixture, atoms.numbers, atoms.positions, pts[shells])
    assert np.sqrt(np.mean((values[shells] - exact) ** 2)) * mol / kcal < 1e-4  # kcal/mol per e: the target
    np.testing.assert_allclose(values[shells], exact, atol=2e-6)  # volts
    near = electrostatic_potential(mixture, atoms.numbers, atoms.positions, pts[inside])
    np.testing.assert_allclose(values[inside], near, rtol=1e-7, atol=2e-6)


def test_ion_is_zero_at_infinity_and_screening_does_not_matter(promolecule):
    atoms = molecule("H2O")
    mixture = _mixture(promolecule, atoms)
    ion = GaussianMixture(mixture.weights * 0.9, mixture.centres, mixture.scale_tril)  # charge +1
    grid = Grid.for_molecule(atoms.positions, 0.3, 3.0)
    values = potential_on_grid(ion, atoms.numbers, atoms.positions, grid).reshape(-1)
    pick = _sample(grid, 300)
    exact = electrostatic_potential(ion, atoms.numbers, atoms.positions, grid.points_at(pick))
    np.testing.assert_allclose(values[pick], exact, rtol=1e-7, atol=2e-6)
    charges = charge_distribution(ion, atoms.numbers, atoms.positions, NUCLEAR_SIGMA)
    narrow = split_gaussian_potential(charges, grid, 0.3)
    wide = split_gaussian_potential(charges, grid, 0.7)
    np.testing.assert_allclose(COULOMB * narrow, COULOMB * wide, rtol=1e-7, atol=2e-6)


def _ewald_reference(weights, centres, sigmas, cell, points, eta=0.6):
    """Potential (e/Angstrom) of isotropic Gaussian charges in a periodic cell, mean zero, by Ewald summation."""
    volume = abs(np.linalg.det(cell))
    out = np.zeros(len(points))
    wide = np.sqrt(sigmas**2 + eta**2)
    n = 5
    shifts = np.array([[i, j, k] for i in range(-n, n + 1) for j in range(-n, n + 1) for k in range(-n, n + 1)]) @ cell
    for q, mu, s, w in zip(weights, centres, sigmas, wide):
        d = np.linalg.norm(points[:, None, :] - mu - shifts[None], axis=-1)  # (P, images)
        out += q * ((erf(d / (math.sqrt(2) * s)) - erf(d / (math.sqrt(2) * w))) / d).sum(1)
    recip = 2 * np.pi * np.linalg.inv(cell).T
    m = 12
    ms = np.array([[i, j, k] for i in range(-m, m + 1) for j in range(-m, m + 1) for k in range(-m, m + 1)
                   if (i, j, k) != (0, 0, 0)])
    g = ms @ recip  # (G, 3)
    g2 = (g * g).sum(1)
    for q, mu, w in zip(weights, centres, wide):
        out += 4 * np.pi / volume * q * (np.exp(-g2 * w * w / 2) / g2 * np.cos((points - mu) @ g.T)).sum(1)
    return out  # the Gaussians' own cell means cancel: sum_k q_k (w_k^2 - s_k^2) = eta^2 sum_k q_k = 0


@pytest.mark.parametrize("cubic", [True, False])
def test_rocksalt_crystal_matches_brute_force_ewald(promolecule, cubic):
    crystal = bulk("NaCl", "rocksalt", a=5.64, cubic=cubic)
    mixture = _mixture(promolecule, crystal)
    assert torch.allclose(mixture.covariances, mixture.covariances[:, :1, :1] * torch.eye(3, dtype=torch.float64))
    grid = Grid.for_cell(crystal.cell.array, 0.25)
    values = potential_on_grid(mixture, crystal.numbers, crystal.positions, grid).reshape(-1)
    points = grid.points_at(_sample(grid, 6, seed=1))
    charges = charge_distribution(mixture, crystal.numbers, crystal.positions, NUCLEAR_SIGMA)
    reference = COULOMB * _ewald_reference(charges.weights.numpy(), charges.centres.numpy(),
                                           charges.scale_tril[:, 0, 0].numpy(), crystal.cell.array, points)
    np.testing.assert_allclose(values[_sample(grid, 6, seed=1)], reference, rtol=1e-6)  # target: 1e-4


def test_charged_cell_has_zero_mean_and_is_periodic():
    mixture = random_mixture(6, box=4.0, width=(0.25, 0.5))  # electrons only: a neutralising background
    cell = np.array([[4.0, 0.0, 0.0], [1.0, 4.5, 0.0], [0.0, 0.5, 5.0]])
    grid = Grid.for_cell(cell, 0.1)
    charges = GaussianMixture(-mixture.weights, mixture.centres, mixture.scale_tril)
    values = split_gaussian_potential(charges, grid)
    assert abs(values.mean()) < 1e-9 * np.abs(values).max()
    shifted = Grid(grid.cell, grid.shape, grid.origin + cell[1], grid.pbc)
    np.testing.assert_allclose(split_gaussian_potential(charges, shifted), values, atol=1e-9)


def _planar_reference(charges: GaussianMixture, area: float, z: np.ndarray) -> np.ndarray:
    """Planar-averaged potential (e/Angstrom) of Gaussians in a 2-D periodic layer: -2 pi / A sum_k q_k E|z - Z_k|."""
    var = charges.covariances[:, 2, 2].numpy()
    d = z[:, None] - charges.centres[:, 2].numpy()
    s = np.sqrt(var)
    mean_abs = s * math.sqrt(2 / math.pi) * np.exp(-d * d / (2 * var)) + d * erf(d / (s * math.sqrt(2)))
    return -2 * math.pi / area * mean_abs @ charges.weights.numpy()


@pytest.mark.parametrize("case", ["neutral", "dipole", "charged"])
def test_al111_slab_planar_average_and_vacuum_levels(promolecule, case):
    slab = fcc111("Al", (2, 2, 4), vacuum=7.5)
    mixture = _mixture(promolecule, slab)
    centres, weights = mixture.centres.clone(), mixture.weights
    if case == "dipole":  # the top layer's electrons moved 0.1 A out: a dipole layer
        centres[mixture.centres[:, 2] > slab.positions[:, 2].max() - 0.1, 2] += 0.1
    if case == "charged":
        weights = weights * (1 + 1 / weights.sum())  # one extra electron
    mixture = GaussianMixture(weights, centres, mixture.scale_tril)
    grid = Grid.for_cell(slab.cell.array, 0.2, pbc=(True, True, False))
    values = potential_on_grid(mixture, slab.numbers, slab.positions, grid)
    z, average = planar_average(values, grid, 2)
    charges = charge_distribution(mixture, slab.numbers, slab.positions, NUCLEAR_SIGMA)
    area = float(np.linalg.norm(np.cross(*slab.cell.array[:2])))
    reference = COULOMB * _planar_reference(charges, area, z)
    far = np.abs(z[:, None] - slab.positions[:, 2]).min(1) > 2.5  # away from atomic planes (in-plane aliasing)
    np.testing.assert_allclose(average[far], reference[far], atol=2e-6)
    if case == "charged":
        return
    vacuum = np.abs(z[:, None] - slab.positions[:, 2]).min(1) > 5.0
    below, above = vacuum & (z < slab.positions[:, 2].min()), vacuum & (z > slab.positions[:, 2].max())
    assert np.ptp(average[below]) < 1e-3 and np.ptp(average[above]) < 1e-3  # flat to 1 meV: the target
    level = 2 * math.pi * COULOMB * float(charges.weights @ charges.centres[:, 2]) / area  # 2 pi p / A, volts
    assert (abs(level) > 0.1) == (case == "dipole")
    levels = vacuum_levels(z, average, slab.positions[:, 2])
    assert [v.side for v in levels] == ["below", "above"]
    np.testing.assert_allclose([v.energy for v in levels], [level, -level], atol=1e-4)  # electron: -e phi
    assert max(v.flatness for v in levels) < 1e-4
    assert levels[0].height < slab.positions[:, 2].min() - 6.5 and levels[1].height > slab.positions[:, 2].max() + 6.5


def test_slab_as_3d_periodic_cell_has_one_vacuum_gap(promolecule):
    slab = fcc111("Al", (1, 1, 4), vacuum=7.5, periodic=True)  # the gap straddles the cell's faces
    mixture = _mixture(promolecule, slab)
    grid = Grid.for_cell(slab.cell.array, 0.2)
    z, average = planar_average(potential_on_grid(mixture, slab.numbers, slab.positions, grid), grid, 2)
    (gap,) = vacuum_levels(z, average, slab.positions[:, 2], period=slab.cell[2, 2])
    assert gap.side == "gap" and gap.flatness < 1e-3
    offset = gap.height - slab.positions[:, 2]
    assert np.abs(offset - slab.cell[2, 2] * np.round(offset / slab.cell[2, 2])).min() > 6.5  # mid-gap
    with pytest.raises(InvalidInputError, match="no vacuum"):
        vacuum_levels(z, average, slab.positions[:, 2], period=slab.cell[2, 2], min_gap=8.0)


def test_calculator_potential_of_crystals_and_slabs(promolecule):
    crystal = bulk("NaCl", "rocksalt", a=5.64)
    crystal.calc = ElectraCalculator(model=promolecule, spacing=0.3)
    values = crystal.calc.get_electrostatic_potential()
    grid = Grid.for_cell(crystal.cell.array, 0.3)
    assert values.shape == grid.shape
    np.testing.assert_allclose(values, potential_on_grid(crystal.calc.get_gaussian_mixture(), crystal.numbers,
                                                         crystal.positions, grid), rtol=1e-12, atol=1e-9)
    with pytest.raises(CalculatorInputError, match="lattice vectors"):
        crystal.calc.get_electrostatic_potential(grid=Grid.for_molecule(crystal.positions, 0.3, 2.0))
    with pytest.raises(CalculatorInputError, match="lattice vectors"):
        crystal.calc.get_electrostatic_potential(grid=Grid.for_cell(1.01 * crystal.cell.array, 0.3))
    slab = fcc111("Al", (1, 1, 3), vacuum=6.0)
    slab.calc = ElectraCalculator(model=promolecule, spacing=0.3)
    z, average = planar_average(slab.calc.get_electrostatic_potential(), slab.calc.get_density().grid, 2)
    assert [v.side for v in vacuum_levels(z, average, slab.positions[:, 2])] == ["below", "above"]
    wire = Atoms("H2", positions=[[0, 0, 0], [0.74, 0, 0]], cell=[1.5, 6, 6], pbc=[True, False, False])
    wire.center()
    wire.calc = ElectraCalculator(model=promolecule, spacing=0.3)
    with pytest.raises(CalculatorInputError, match="wire"):
        wire.calc.get_electrostatic_potential()


def test_wires_and_bad_screening_are_refused(promolecule):
    atoms = molecule("H2O")
    mixture = _mixture(promolecule, atoms)
    wire = Grid(np.diag([3.0, 8.0, 8.0]), (10, 20, 20), pbc=(True, False, False))
    with pytest.raises(InvalidInputError, match="one periodic axis"):
        potential_on_grid(mixture, atoms.numbers, atoms.positions, wire)
    with pytest.raises(InvalidInputError, match="screening"):
        potential_on_grid(mixture, atoms.numbers, atoms.positions, Grid.for_molecule(atoms.positions, 0.5, 1.0), -1.0)


def test_planar_average_heights_and_errors():
    grid = Grid(np.array([[2.0, 0, 0], [1.0, 2.0, 0], [0, 0, 3.0]]), (2, 2, 3), origin=np.array([0, 0, 1.0]))
    values = np.arange(12.0).reshape(2, 2, 3)
    z, average = planar_average(values, grid, 2)
    np.testing.assert_allclose(z, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(average, values.mean(axis=(0, 1)))
    with pytest.raises(InvalidInputError, match="axis"):
        planar_average(values, grid, 3)
    with pytest.raises(InvalidInputError, match="shape"):
        planar_average(values[:1], grid, 0)
