"""ElectraCalculator: ASE conventions, caching, units, grids, dipoles, models and errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule
from ase.calculators.calculator import Calculator, InputError

from ase_electra import ElectraCalculator, Grid, InvalidInputError, UnknownElementError
from ase_electra.calculator import CalculatorElementError, CalculatorInputError
from ase_electra.models import load_model
from ase_electra.models.electra import ElectraDensityModel, default_config
from ase_electra.models.promolecule import atomic_gaussians

FAST = {"spacing": 0.25, "margin": 2.5}

pytestmark = pytest.mark.usefixtures("one_thread")


class CountingModel:
    """A DensityModel that counts its predict calls (wraps the promolecule)."""

    def __init__(self) -> None:
        self.inner = load_model("promolecule")
        self.name, self.elements, self.device = "counting", self.inner.elements, self.inner.device
        self.calls = 0

    def predict(self, structures):
        self.calls += 1
        return self.inner.predict(structures)


@pytest.fixture(scope="module")
def tiny():
    """An untrained, small ELECTRA model (H, C, N, O)."""
    config = default_config(elements=(1, 6, 7, 8), channels=8, layers=1, n_bessel=4, radial_hidden=8,
                            floating_heavy=4, floating_light=2)
    return ElectraDensityModel.new(config, seed=0)


@pytest.fixture
def counting():
    return CountingModel()


def water(model, **params):
    atoms = molecule("H2O")
    atoms.calc = ElectraCalculator(model=model, **{**FAST, **params})
    return atoms


# ---------------------------------------------------------------------- ASE conventions
def test_results_are_cached_until_the_atoms_change(counting):
    atoms = water(counting)
    first = atoms.calc.get_density(atoms)
    assert atoms.calc.get_density(atoms) is first
    atoms.get_dipole_moment()
    atoms.calc.get_pseudo_density()
    atoms.calc.get_density_at(atoms.positions)
    atoms.calc.get_number_of_electrons()
    assert counting.calls == 1
    assert "gaussian_mixture" in atoms.calc.results

    atoms.positions[0] += 0.1
    moved = atoms.calc.get_density(atoms)
    assert counting.calls == 2
    assert moved is not first
    centres = atoms.calc.get_gaussian_mixture(atoms).centres.numpy()
    assert np.isclose(centres, atoms.positions[0]).all(axis=1).any()


def test_charge_change_resets_results(counting):
    atoms = water(counting)
    assert atoms.calc.get_number_of_electrons(atoms) == pytest.approx(10.0)
    atoms.info["charge"] = 1
    assert atoms.calc.get_number_of_electrons(atoms) == pytest.approx(9.0)
    assert counting.calls == 2


def test_class_attributes_are_not_mutated(counting):
    atoms = water(counting, spacing=0.3)
    atoms.get_dipole_moment()
    atoms.calc.set(margin=2.0)
    assert ElectraCalculator.implemented_properties == ["dipole", "quadrupole", "charges"]
    assert Calculator.implemented_properties == []
    assert ElectraCalculator.default_parameters == {"model": "default", "device": "auto", "spacing": 0.1, "margin": 4.0,
                                                   "sampling": "point"}
    assert atoms.calc.implemented_properties is ElectraCalculator.implemented_properties


def test_spacing_change_keeps_the_mixture_and_model_change_reloads(counting, promolecule):
    atoms = water(counting)
    coarse = atoms.calc.get_density(atoms)
    atoms.calc.set(spacing=0.3)
    finer = atoms.calc.get_density(atoms)
    assert counting.calls == 1
    assert finer.grid.shape != coarse.grid.shape
    atoms.calc.set(model=promolecule)
    assert atoms.calc.model is promolecule and "gaussian_mixture" not in atoms.calc.results
    assert atoms.calc.get_number_of_electrons(atoms) == pytest.approx(10.0)
    assert counting.calls == 1


# ---------------------------------------------------------------------- densities and units
def test_pseudo_density_is_the_default_grid_density(promolecule):
    atoms = water(promolecule)
    atoms.get_dipole_moment()  # the ASE way: a property first, then the calculator's arrays
    density = atoms.calc.get_density()
    rho = atoms.calc.get_pseudo_density()
    # A second calculator recomputes it: equal up to summation order (the CUDA kernel adds with atomicAdd).
    again = ElectraCalculator(model=promolecule, **FAST).get_pseudo_density(atoms=atoms)
    np.testing.assert_allclose(again, rho, rtol=1e-12, atol=1e-12 * rho.max())
    assert rho.shape == density.grid.shape
    np.testing.assert_array_equal(rho, density.values)
    rho[0, 0, 0] = 1.0  # a copy: the cache is untouched
    assert density.values[0, 0, 0] != 1.0
    expected = Grid.for_atoms(atoms, spacing=FAST["spacing"], margin=FAST["margin"])
    assert density.grid.same_as(expected)
    with pytest.raises(InputError, match="spin"):
        atoms.calc.get_pseudo_density(spin=1)


def test_density_is_in_electrons_per_cubic_angstrom(promolecule):
    """A lone H atom: rho(r) = sum_k w_k (2 pi s_k^2)^(-3/2) exp(-r^2 / 2 s_k^2), Angstrom units.

    Each Gaussian is cut off beyond 5 standard deviations, as everywhere in the package.
    """
    from ase import Atoms

    atoms = Atoms("H", positions=[[0.3, -0.2, 0.1]])
    atoms.calc = ElectraCalculator(model=promolecule, **FAST)
    table = atomic_gaussians()[1]
    r = np.array([0.0, 0.25, 0.5, 1.0, 2.0])
    points = atoms.positions[0] + r[:, None] * np.array([[0.0, 0.6, 0.8]])
    expected = (table.weights * (2 * np.pi * table.sigmas**2) ** -1.5
                * np.exp(-(r[:, None] ** 2) / (2 * table.sigmas**2)) * (r[:, None] <= 5 * table.sigmas)).sum(1)
    np.testing.assert_allclose(atoms.calc.get_density_at(points, atoms), expected, rtol=1e-10)


def test_density_at_grid_points_equals_the_grid(promolecule):
    atoms = water(promolecule)
    density = atoms.calc.get_density(atoms)
    flat = np.random.default_rng(0).choice(density.grid.n_points, 200, replace=False)
    at_points = atoms.calc.get_density_at(density.grid.points_at(flat))
    np.testing.assert_allclose(at_points, density.values.reshape(-1)[flat], rtol=1e-10, atol=1e-12)
    assert atoms.calc.get_density_at(np.zeros((2, 4, 3))).shape == (2, 4)


def test_custom_grids(promolecule):
    atoms = water(promolecule)
    default = atoms.calc.get_density(atoms)
    coarse = atoms.calc.get_density(spacing=0.4)
    assert np.allclose(coarse.grid.spacing, 0.4) and atoms.calc.get_density() is default
    grid = Grid(np.eye(3) * 2.0, (4, 4, 4), origin=np.full(3, -1.0))
    on_grid = atoms.calc.get_density(grid=grid)
    assert on_grid.grid is grid and on_grid.values.shape == (4, 4, 4)
    with pytest.raises(InputError, match="either grid or spacing"):
        atoms.calc.get_density(grid=grid, spacing=0.2)


def test_number_of_electrons(promolecule):
    atoms = molecule("CH3CH2OH")
    atoms.calc = ElectraCalculator(model=promolecule, **FAST)
    assert atoms.calc.get_number_of_electrons(atoms) == pytest.approx(26.0, rel=1e-12)


# ---------------------------------------------------------------------- dipole
def test_dipole_of_symmetric_molecules_vanishes(tiny):
    for name in ("C6H6", "CH4"):
        atoms = molecule(name)
        atoms.calc = ElectraCalculator(model=tiny, **FAST)
        assert np.abs(atoms.get_dipole_moment()).max() < 1e-4


def test_dipole_translation(tiny, promolecule):
    """Neutral: independent of the origin. Charge Q: moves by Q d when the atoms move by d."""
    shift = np.array([1.5, -2.0, 0.7])
    atoms = water(tiny)
    before = atoms.get_dipole_moment()
    assert np.abs(before).max() > 1e-6
    assert before[:2] == pytest.approx([0.0, 0.0], abs=1e-4)  # along the C2 axis (z)
    atoms.translate(shift)
    np.testing.assert_allclose(atoms.get_dipole_moment(), before, atol=1e-4)

    ion = water(promolecule)
    ion.info["charge"] = 1
    before = ion.get_dipole_moment()
    ion.translate(shift)
    np.testing.assert_allclose(ion.get_dipole_moment() - before, 1.0 * shift, atol=1e-10)


# ---------------------------------------------------------------------- models
def test_model_by_name_path_or_instance(tmp_path, tiny):
    folder = tiny.save(tmp_path / "tiny")
    atoms = molecule("H2O")
    expected = tiny.predict([atoms])
    for spec in (folder, str(folder), folder / "model.safetensors", tiny):
        calc = ElectraCalculator(model=spec, device="cpu", **FAST)
        mixture = calc.get_gaussian_mixture(atoms)
        torch.testing.assert_close(mixture.weights, expected.weights)
        torch.testing.assert_close(mixture.centres, expected.centres)
    assert ElectraCalculator(model=folder).todict()["model"] == str(folder)
    assert ElectraCalculator(model=tiny).todict()["model"] == tiny.name
    calc = ElectraCalculator(model="promolecule")
    assert calc.model.name == "promolecule"


def test_default_model_is_the_shipped_one():
    assert ElectraCalculator().model.name == "electra:default"


# ---------------------------------------------------------------------- periodic structures
def test_periodic_structure_uses_its_cell(promolecule):
    atoms = bulk("Si", "diamond", a=5.43)
    atoms.calc = ElectraCalculator(model=promolecule, spacing=0.4)
    density = atoms.calc.get_density(atoms)
    np.testing.assert_allclose(density.grid.cell, atoms.cell.array)
    assert density.grid.pbc == (True, True, True)
    point = np.array([[0.4, 0.9, 1.3]])
    for shift in atoms.cell.array:
        np.testing.assert_allclose(atoms.calc.get_density_at(point + shift), atoms.calc.get_density_at(point))
    flat = np.arange(0, density.grid.n_points, 97)
    np.testing.assert_allclose(atoms.calc.get_density_at(density.grid.points_at(flat)),
                               density.values.reshape(-1)[flat], rtol=1e-10, atol=1e-12)


def test_atoms_with_a_cell_get_a_grid_spanning_it(promolecule):
    """As ASE's DFT calculators: the cell, origin zero, periodic along atoms.pbc only."""
    atoms = molecule("H2O")
    atoms.center(vacuum=4.0)
    atoms.calc = ElectraCalculator(model=promolecule, **FAST)
    grid = atoms.calc.get_density().grid
    np.testing.assert_allclose(grid.cell, atoms.cell.array)
    np.testing.assert_array_equal(grid.origin, 0.0)
    assert grid.pbc == (False, False, False) and np.all(grid.spacing <= FAST["spacing"])
    bare = molecule("H2O")  # no cell: the box around the atoms, margin beyond them
    bare.calc = ElectraCalculator(model=promolecule, **FAST)
    assert bare.calc.get_density().grid.same_as(Grid.for_molecule(bare.positions, **FAST))


def test_pseudo_density_written_by_ase_is_registered(promolecule, tmp_path):
    """ase.io.write(cube, atoms, data=get_pseudo_density()) and ASE's reader agree with the
    calculator point for point: values, and where ASE puts each value."""
    from ase.io import write
    from ase.io.cube import read_cube

    atoms = molecule("CH3OH")
    atoms.center(vacuum=3.0)
    atoms.calc = ElectraCalculator(model=promolecule, **FAST)
    write(tmp_path / "x.cube", atoms, data=atoms.calc.get_pseudo_density())
    with open(tmp_path / "x.cube") as handle:
        cube = read_cube(handle)
    density = atoms.calc.get_density()
    np.testing.assert_allclose(cube["data"], density.values, rtol=1e-6, atol=1e-12)  # the file's %e digits
    flat = np.random.default_rng(1).choice(density.grid.n_points, 300, replace=False)
    ijk = np.stack(np.unravel_index(flat, density.grid.shape), axis=1)
    where = cube["origin"] + ijk @ cube["spacing"]  # ASE's position of each value, Angstrom
    np.testing.assert_allclose(where, density.grid.points_at(flat), atol=1e-5)  # %12.6f bohr
    np.testing.assert_allclose(atoms.calc.get_density_at(where), cube["data"].reshape(-1)[flat],
                               rtol=1e-4, atol=1e-9)


def test_atoms_outside_their_cell_are_refused_for_grids_only(promolecule):
    atoms = molecule("H2O", cell=[8.0, 8.0, 8.0])  # not centred: atoms at negative z
    atoms.calc = ElectraCalculator(model=promolecule, **FAST)
    assert atoms.get_dipole_moment().shape == (3,)
    with pytest.raises(CalculatorInputError, match="outside the cell along non-periodic axis") as info:
        atoms.calc.get_pseudo_density()
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------- errors
def test_unknown_element_is_an_input_error_before_any_prediction(counting):
    atoms = molecule("CH4")
    atoms[0].symbol = "Au"
    atoms.calc = ElectraCalculator(model=counting, **FAST)
    with pytest.raises(CalculatorElementError, match="Au") as info:
        atoms.calc.get_density(atoms)
    assert isinstance(info.value, InputError) and isinstance(info.value, UnknownElementError)
    assert "\n" not in str(info.value)
    assert counting.calls == 0


@pytest.mark.parametrize(
    "params, match",
    [
        ({"spacing": -0.1}, "spacing"),
        ({"spacing": float("nan")}, "spacing"),
        ({"margin": -1.0}, "margin"),
        ({"device": "tpu"}, "device"),
        ({"model": 3}, "model"),
        ({"model": "no/such/model"}, "no/such/model"),
        ({"spacng": 0.2}, "unknown parameter"),
    ],
)
def test_bad_parameters_raise_one_line_input_errors(params, match):
    with pytest.raises(CalculatorInputError, match=match) as info:
        ElectraCalculator(**{"model": "promolecule", **params})
    assert isinstance(info.value, InputError) and isinstance(info.value, InvalidInputError)
    assert "\n" not in str(info.value)


def test_bad_charge_and_missing_atoms(promolecule):
    calc = ElectraCalculator(model=promolecule)
    with pytest.raises(InputError, match="no atoms"):
        calc.get_pseudo_density()
    ion = molecule("H2")
    ion.info["charge"] = 2
    with pytest.raises(InputError, match="leaves no electrons"):
        calc.get_density(ion)


def test_package_exports_the_calculator_lazily():
    code = "import sys, ase_electra; assert 'torch' not in sys.modules; print(ase_electra.ElectraCalculator.__name__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "ElectraCalculator"


def test_attached_atoms_need_no_argument(promolecule):
    """The usage the README shows: atoms.calc = calc, then ask the calculator directly."""
    atoms = molecule("H2O")
    atoms.calc = ElectraCalculator(model=promolecule, spacing=0.3, margin=2.0)
    first = atoms.calc.get_density()
    assert first.n_electrons == pytest.approx(10.0, rel=0.1)
    assert atoms.calc.get_number_of_electrons() == pytest.approx(10.0)
    atoms.positions[0] += 0.5  # moving the attached atoms is seen
    np.testing.assert_allclose(atoms.calc.get_gaussian_mixture().centres[0].numpy(), atoms.positions[0])


def test_voxel_sampling_integrates_a_crystal_with_nuclei_on_grid_points():
    salt = bulk("NaCl", "rocksalt", a=5.64, cubic=True)  # every nucleus on a point of the 0.1 A grid
    salt.calc = ElectraCalculator(model="promolecule")
    dv = salt.get_volume() / salt.calc.get_pseudo_density().size
    point = salt.calc.get_pseudo_density().sum() * dv  # each core's peak counted as a whole voxel's
    salt.calc.set(sampling="voxel")
    voxel = salt.calc.get_pseudo_density().sum() * dv
    assert abs(voxel - 112) < 0.01 and abs(point - 112) > 10
    with pytest.raises(CalculatorInputError, match="sampling: expected one of point, voxel"):
        salt.calc.set(sampling="cell")
