"""Charges, potentials and multipoles (ase_electra.properties) and the calculator's use of them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.units import Bohr

from ase_electra import ElectraCalculator, GaussianMixture, Grid, UnknownElementError
from ase_electra.calculator import CalculatorElementError, CalculatorInputError
from ase_electra.properties import (
    COULOMB,
    dipole_moment,
    electrostatic_potential,
    gaussian_potential,
    hirshfeld_charges,
    hirshfeld_charges_of,
    quadrupole_moment,
)
from ase_electra.properties.quadrature import becke_grid, standard_normal_rule

pytestmark = pytest.mark.usefixtures("one_thread")


def one_gaussian(cov: np.ndarray, centre=(0.0, 0.0, 0.0), weight: float = 1.0) -> GaussianMixture:
    return GaussianMixture.from_covariances(
        torch.tensor([weight], dtype=torch.float64),
        torch.tensor([centre], dtype=torch.float64),
        torch.tensor(np.asarray(cov, dtype=np.float64)[None]),
    )


def random_rotation(seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


ANISOTROPIC = np.array([[0.09, 0.02, -0.01], [0.02, 0.05, 0.015], [-0.01, 0.015, 0.03]])  # A^2, eigenvalue ratio 5.7


def s_integral(cov: np.ndarray, d: np.ndarray, n: int = 200_000) -> float:
    """phi = (2/sqrt(pi)) int_0^inf det(I + 2 s^2 S)^-1/2 exp(-s^2 d^T (I + 2 s^2 S)^-1 d) ds, by the midpoint
    rule in s = tan(a) (a in [0, pi/2)): independent of the t-substitution the package uses."""
    a = (np.arange(n) + 0.5) * (0.5 * np.pi / n)
    s, ds = np.tan(a), 0.5 * np.pi / n / np.cos(a) ** 2
    lam, u = np.linalg.eigh(cov)
    e2 = (u.T @ d) ** 2
    denom = 1.0 + 2.0 * s[:, None] ** 2 * lam[None]  # (n, 3)
    f = np.exp(-(s**2) * (e2[None] / denom).sum(1)) / np.sqrt(denom.prod(1))
    return float(2.0 / np.sqrt(np.pi) * (f * ds).sum())


# ---------------------------------------------------------------------- quadrature and moments
def test_standard_normal_rule_moments():
    z, w = standard_normal_rule(8, 6)
    np.testing.assert_allclose(w.sum(), 1.0, atol=1e-14)
    np.testing.assert_allclose(np.einsum("j,ja,jb->ab", w, z, z), np.eye(3), atol=1e-12)
    np.testing.assert_allclose(w @ z[:, 0] ** 4, 3.0, rtol=1e-12)  # E[x^4] of a standard normal
    np.testing.assert_allclose(w @ (z**2).sum(1) ** 3, 105.0, rtol=1e-12)  # E[r^6] = 3 * 5 * 7


def test_moments_match_grid_sums():
    mixture = one_gaussian(ANISOTROPIC, centre=(0.3, -0.2, 0.1), weight=2.0)
    grid = Grid(np.diag([6.0, 6.0, 6.0]), (120, 120, 120), origin=np.full(3, -3.0))
    pts = grid.points()
    rho = mixture.at(torch.as_tensor(pts), n_sigma=12.0).numpy() * grid.voxel_volume  # e per voxel
    charge = -rho  # electrons only (no nuclei)
    dipole = charge @ pts
    second = np.einsum("p,pa,pb->ab", charge, pts, pts)
    quad = 0.5 * (3 * second - np.trace(second) * np.eye(3))
    no_atoms = (np.zeros(0, dtype=int), np.zeros((0, 3)))
    np.testing.assert_allclose(dipole_moment(mixture, *no_atoms), dipole, atol=1e-6)
    np.testing.assert_allclose(quadrupole_moment(mixture, *no_atoms), quad, atol=1e-6)
    assert np.abs(quad).max() > 0.01  # the test is not trivially zero


def test_quadrupole_is_traceless_and_origin_free_for_neutral_nonpolar(promolecule):
    atoms = molecule("CO2")
    mixture = GaussianMixture(
        torch.tensor([6.0, 8.0, 8.0], dtype=torch.float64),  # electrons pulled in: no dipole, a quadrupole
        torch.as_tensor(atoms.positions * [[1, 1, 0.9]]),
        0.3 * torch.eye(3, dtype=torch.float64).expand(3, 3, 3).clone(),
    )
    q = quadrupole_moment(mixture, atoms.numbers, atoms.positions)
    assert abs(np.trace(q)) < 1e-12 and abs(q[2, 2]) > 0.1
    moved = quadrupole_moment(mixture, atoms.numbers, atoms.positions, origin=np.array([1.0, -2.0, 0.5]))
    np.testing.assert_allclose(moved, q, atol=1e-12)  # neutral and no dipole: any origin
    np.testing.assert_allclose(q[0, 0], -0.5 * q[2, 2], atol=1e-12)  # linear molecule


# ---------------------------------------------------------------------- potential
@pytest.mark.parametrize("distance", [0.0, 0.1, 0.4, 1.5, 6.0])
def test_isotropic_potential_is_erf_over_r(distance):
    sigma = 0.3
    mixture = one_gaussian(sigma**2 * np.eye(3), centre=(0.5, 0.0, 0.0))
    point = np.array([[0.5, distance, 0.0]])
    x = distance / (math.sqrt(2) * sigma)
    expected = math.sqrt(2 / math.pi) / sigma if distance == 0 else math.erf(x) / distance
    np.testing.assert_allclose(gaussian_potential(mixture, point), [expected], rtol=1e-12)
    np.testing.assert_allclose(s_integral(sigma**2 * np.eye(3), point[0] - [0.5, 0, 0]), expected, rtol=1e-6)


@pytest.mark.parametrize("distance", [0.0, 0.05, 0.3, 1.0, 4.0])
def test_anisotropic_potential_against_direct_quadrature(distance):
    direction = np.array([0.48, -0.6, 0.64])
    d = distance * direction
    mixture = one_gaussian(ANISOTROPIC)
    np.testing.assert_allclose(gaussian_potential(mixture, d[None]), [s_integral(ANISOTROPIC, d)], rtol=1e-6)


def test_anisotropic_potential_against_grid_coulomb_sum():
    """Outside the Gaussian 1/|r - r'| is smooth, so a fine-grid sum of rho / |r - r'| converges."""
    mixture = one_gaussian(ANISOTROPIC)
    grid = Grid(np.diag([3.2, 3.2, 3.2]), (128, 128, 128), origin=np.full(3, -1.6))
    pts = grid.points()
    rho = mixture.at(torch.as_tensor(pts), n_sigma=12.0).numpy() * grid.voxel_volume
    for point in ([2.2, 0.4, -0.3], [0.0, 0.0, 2.0]):
        direct = rho @ (1.0 / np.linalg.norm(pts - point, axis=1))
        np.testing.assert_allclose(gaussian_potential(mixture, np.array([point])), [direct], rtol=1e-5)
    point = np.array([[0.0, 0.0, 2.0]])
    assert abs(gaussian_potential(mixture, point)[0] - 0.5) > 1e-3  # differs from a point charge


def test_potential_far_from_a_neutral_molecule_is_its_dipole_and_quadrupole(default_model):
    atoms = molecule("CH3OH")
    mixture = default_model.predict([atoms])
    p = dipole_moment(mixture, atoms.numbers, atoms.positions)
    theta = quadrupole_moment(mixture, atoms.numbers, atoms.positions)
    residual = {}
    for r in (10.0, 20.0):
        x = r * np.array([0.36, 0.48, 0.8])
        v = electrostatic_potential(mixture, atoms.numbers, atoms.positions, x[None])[0]
        dipole_term = COULOMB * (p @ x) / r**3
        quad_term = COULOMB * (x @ theta @ x) / r**5
        assert abs(v - dipole_term) < 0.2 * abs(dipole_term)
        residual[r] = abs(v - dipole_term - quad_term)
    assert residual[20.0] < 0.1 * abs(quad_term)
    assert 8 < residual[10.0] / residual[20.0] < 32  # what is left falls off as r^-4: the octupole


def test_potential_stays_finite_on_a_nucleus(promolecule):
    atoms = molecule("H2O")
    v = electrostatic_potential(promolecule.predict([atoms]), atoms.numbers, atoms.positions, atoms.positions)
    assert np.isfinite(v).all() and (v > 1e4).all()


# ---------------------------------------------------------------------- Hirshfeld
def test_isolated_atom_has_zero_charge(default_model, promolecule):
    for model in (default_model, promolecule):
        atom = Atoms("C", positions=[[0.3, -0.1, 0.2]])
        q = hirshfeld_charges(model.predict([atom]), atom.numbers, atom.positions)
        assert abs(q[0]) < 1e-5


def test_h2_charges_are_zero_by_symmetry(default_model):
    h2 = molecule("H2")
    q = hirshfeld_charges(default_model.predict([h2]), h2.numbers, h2.positions)
    np.testing.assert_allclose(q, 0.0, atol=1e-5)


def test_promolecule_charges_vanish_and_charges_sum_to_total(default_model, promolecule):
    atoms = molecule("CH3CH2OH")
    q0 = hirshfeld_charges(promolecule.predict([atoms]), atoms.numbers, atoms.positions)
    assert np.abs(q0).max() < 1e-3  # rho = sum of the reference atoms: every share is the atom's own
    q = hirshfeld_charges(default_model.predict([atoms]), atoms.numbers, atoms.positions)
    assert abs(q.sum()) < 1e-3
    assert q[atoms.numbers == 8][0] < -0.1  # the oxygen takes electrons
    cation = atoms.copy()
    cation.info["charge"] = 1
    qc = hirshfeld_charges(promolecule.predict([cation]), cation.numbers, cation.positions)
    assert abs(qc.sum() - 1.0) < 1e-3


def test_hirshfeld_agrees_with_a_fine_becke_grid(default_model):
    atoms = molecule("H2O")
    mixture = default_model.predict([atoms]).to(dtype=torch.float64)
    points, weights = becke_grid(atoms.numbers, atoms.positions, 60, 24)
    density = lambda pts: mixture.at(torch.as_tensor(pts), n_sigma=12.0).numpy()  # noqa: E731
    fine = hirshfeld_charges_of(density, atoms.numbers, atoms.positions, points, weights)
    assert abs(weights @ density(points) - 10.0) < 1e-4
    np.testing.assert_allclose(hirshfeld_charges(mixture, atoms.numbers, atoms.positions), fine, atol=1e-3)


def test_hirshfeld_negative_weights_are_integrated_as_signed():
    atoms = molecule("H2")
    mixture = GaussianMixture(
        torch.tensor([1.2, 1.0, -0.2], dtype=torch.float64),
        torch.as_tensor(np.vstack([atoms.positions, 1.3 * atoms.positions[1:]])),
        torch.tensor([0.15, 0.15, 0.1], dtype=torch.float64)[:, None, None] * torch.eye(3, dtype=torch.float64),
    ) if _signed_weights_allowed() else pytest.skip("GaussianMixture refuses negative weights in this checkout")
    q = hirshfeld_charges(mixture, atoms.numbers, atoms.positions)
    np.testing.assert_allclose(q.sum(), 0.0, atol=1e-12)
    assert q[0] < -0.15 and q[1] > 0.15  # the first atom's extra 0.2 e, the hole near the second


def _signed_weights_allowed() -> bool:
    try:
        GaussianMixture(torch.tensor([-1.0]), torch.zeros(1, 3), torch.eye(3)[None])
    except ValueError:
        return False
    return True


def test_element_without_reference_atom_is_refused():
    with pytest.raises(UnknownElementError, match="no free-atom reference density for Rb"):
        hirshfeld_charges(one_gaussian(np.eye(3), weight=37.0), np.array([37]), np.zeros((1, 3)))


# ---------------------------------------------------------------------- equivariance and the calculator
def test_charges_invariant_and_moments_rotate(default_model):
    atoms = molecule("CH3CH2OH")
    rot = random_rotation(3)
    turned = atoms.copy()
    turned.positions = atoms.positions @ rot.T
    m1, m2 = default_model.predict([atoms]), default_model.predict([turned])
    q1 = hirshfeld_charges(m1, atoms.numbers, atoms.positions)
    q2 = hirshfeld_charges(m2, turned.numbers, turned.positions)
    np.testing.assert_allclose(q2, q1, atol=2e-3)
    np.testing.assert_allclose(dipole_moment(m2, turned.numbers, turned.positions),
                               rot @ dipole_moment(m1, atoms.numbers, atoms.positions), atol=1e-4)
    np.testing.assert_allclose(quadrupole_moment(m2, turned.numbers, turned.positions),
                               rot @ quadrupole_moment(m1, atoms.numbers, atoms.positions) @ rot.T, atol=1e-4)


class UnknownToTableModel:
    """Claims rubidium, which the Hirshfeld reference table (H to Kr) lacks."""

    name, elements, device = "rubidium", frozenset({1, 37}), torch.device("cpu")

    def predict(self, structures):
        mixtures = [GaussianMixture(torch.as_tensor(a.numbers, dtype=torch.float64), torch.as_tensor(a.positions),
                                    0.4 * torch.eye(3, dtype=torch.float64).expand(len(a), 3, 3).clone())
                    for a in structures]
        return GaussianMixture.concat(mixtures)


def test_calculator_charges_quadrupole_and_potential(default_model):
    atoms = molecule("H2O")
    atoms.calc = ElectraCalculator(model=default_model, spacing=0.4, margin=2.0)
    q = atoms.get_charges()
    assert q.shape == (3,) and abs(q.sum()) < 1e-3 and q[0] < 0
    theta = atoms.calc.get_quadrupole_moment()
    np.testing.assert_allclose(np.trace(theta), 0.0, atol=1e-9)
    v = atoms.calc.get_electrostatic_potential()
    grid = atoms.calc.get_density().grid
    assert v.shape == grid.shape
    mixture = atoms.calc.get_gaussian_mixture()
    pts = grid.points_at(np.array([0, grid.n_points // 2, grid.n_points - 1]))
    exact = electrostatic_potential(mixture, atoms.numbers, atoms.positions, pts)
    np.testing.assert_allclose(v.reshape(-1)[[0, grid.n_points // 2, grid.n_points - 1]], exact, rtol=1e-7, atol=2e-6)
    np.testing.assert_allclose(atoms.calc.get_electrostatic_potential_at(pts), exact, rtol=1e-12)
    atoms.positions[0, 2] += 0.05  # a change recomputes
    assert not np.allclose(atoms.get_charges(), q)


def test_calculator_refuses_periodic_and_unknown_reference(promolecule):
    crystal = bulk("Si", "diamond", a=5.43)
    crystal.calc = ElectraCalculator(model=promolecule, spacing=0.4)
    with pytest.raises(CalculatorInputError, match="periodic structures are not supported") as err:
        crystal.get_charges()
    assert "\n" not in str(err.value)
    with pytest.raises(CalculatorInputError, match="periodic structures are not supported"):
        crystal.calc.get_electrostatic_potential_at([[0.0, 0.0, 1.0]])  # on grids it is (test_electrostatics.py)
    kh = Atoms("RbH", positions=[[0, 0, 0], [0, 0, 2.4]])
    kh.calc = ElectraCalculator(model=UnknownToTableModel(), spacing=0.4)
    with pytest.raises(CalculatorElementError, match="no free-atom reference density for Rb"):
        kh.get_charges()
    np.testing.assert_allclose(kh.get_dipole_moment(), 0.0, atol=1e-12)  # moments need no reference
    with pytest.raises(CalculatorInputError, match="points"):
        kh.calc.get_electrostatic_potential_at([[0.0, 1.0]])


def test_potential_cube_holds_hartree(tmp_path, promolecule):
    from ase_electra.io import read_cube
    from ase_electra.properties import HARTREE_PER_VOLT, potential_on_grid, write_potential_cube

    atoms = molecule("H2O")
    grid = Grid.for_molecule(atoms.positions, spacing=0.4, margin=2.0)
    volts = potential_on_grid(promolecule.predict([atoms]), atoms.numbers, atoms.positions, grid)
    write_potential_cube(tmp_path / "esp.cube", atoms, grid, volts)
    back = read_cube(tmp_path / "esp.cube")
    hartree = back.values * Bohr**3  # read_cube turns the file's numbers into "per Angstrom^3"
    np.testing.assert_allclose(hartree, volts * HARTREE_PER_VOLT, rtol=1e-5, atol=1e-10)
    assert [p.name for p in tmp_path.iterdir()] == ["esp.cube"]
