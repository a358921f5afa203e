"""The promolecule table (fit_promolecule.py, promolecule.json) and PromoleculeModel."""

from __future__ import annotations

import json
import math
from importlib import resources

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.io import write
from click.testing import CliRunner

from ase_electra import InvalidInputError, UnknownElementError
from ase_electra.cli.density import main as density_main
from ase_electra.evaluate import evaluate_points
from ase_electra.io import read_density
from ase_electra.models import DensityModel, load_model
from ase_electra.predict import predict_densities
from ase_electra.models.fit_promolecule import (
    REPORT_GRID,
    atomic_density,
    configurations,
    fit_radial_density,
    l1_error,
    main as fit_main,
    merge_tables,
    radial_grid,
)
from ase_electra.models.promolecule import (
    AtomicGaussians,
    PromoleculeModel,
    atomic_gaussians,
    table_metadata,
)


def shipped_entries() -> dict:
    """The element entries of the package's promolecule.json, as stored."""
    return json.loads(resources.files("ase_electra.models").joinpath("promolecule.json").read_text())["elements"]


@pytest.fixture(scope="module")
def table() -> dict[int, AtomicGaussians]:
    return atomic_gaussians()


@pytest.fixture(scope="module")
def model() -> PromoleculeModel:
    return PromoleculeModel()


# ---------------------------------------------------------------------- the table
def test_table_holds_h_to_kr_with_weights_summing_to_z(table):
    assert sorted(table) == list(range(1, 37))
    for z, atom in table.items():
        assert 4 <= len(atom.weights) <= 8, z
        assert (atom.weights > 0).all() and (atom.sigmas > 0).all(), z
        assert atom.weights.sum() == pytest.approx(z, abs=1e-9), z
        assert (np.diff(atom.sigmas) > 0).all(), z
        assert 0 <= atom.l1_error < 0.025, z


def test_every_element_integrates_to_z(model, table):
    atoms = Atoms(numbers=sorted(table), positions=[[4.0 * z, 0.0, 0.0] for z in sorted(table)])
    mixture = model.predict([atoms])
    assert mixture.integral().item() == pytest.approx(sum(table), abs=1e-9)
    per_atom = torch.split(mixture.weights, [len(table[z].weights) for z in sorted(table)])
    np.testing.assert_allclose([float(w.sum()) for w in per_atom], sorted(table), rtol=0, atol=1e-9)


def test_k_to_kr_kept_h_to_ar_and_record_their_configuration():
    entries = shipped_entries()
    assert all("configuration" not in entries[str(z)] for z in range(1, 19))  # the shipped H-Ar entries
    assert entries["26"]["configuration"] == [8, 12, 6, 0] and entries["24"]["configuration"] == [7, 12, 5, 0]
    assert entries["35"]["configuration"] == [8, 17, 10, 0]


def test_table_metadata_names_level_of_theory_and_command():
    meta = table_metadata()
    assert meta["xc"] == "pbe" and meta["basis"].startswith("def2-svp")
    assert "fit_promolecule" in meta["command"] and meta["date"]


def test_table_values_are_immutable(table):
    with pytest.raises(ValueError):
        table[6].weights[0] = 1.0
    atomic_gaussians().clear()
    assert len(atomic_gaussians()) == 36


def test_atomic_gaussians_rejects_bad_values():
    with pytest.raises(InvalidInputError, match="expected > 0"):
        AtomicGaussians(np.array([1.0, -0.1]), np.array([0.1, 0.5]))
    with pytest.raises(InvalidInputError, match="narrow to wide"):
        AtomicGaussians(np.array([0.5, 0.5]), np.array([0.5, 0.1]))
    with pytest.raises(InvalidInputError, match="equal shapes"):
        AtomicGaussians(np.array([1.0]), np.array([0.1, 0.5]))


@pytest.mark.parametrize("z", [1, 6, 35])
def test_fit_matches_a_fresh_pyscf_atom(table, z):
    pytest.importorskip("pyscf")
    r, dr = radial_grid(*REPORT_GRID)
    rho, _, _ = atomic_density(z, r)
    assert (4 * math.pi * r**2 * dr * rho).sum() == pytest.approx(z, rel=1e-6)
    atom = table[z]
    error = l1_error(atom.weights, atom.sigmas, r, dr, rho)
    assert error == pytest.approx(atom.l1_error, rel=0.02, abs=1e-5)


@pytest.mark.filterwarnings("ignore:remove_linear_dep_ is deprecated")
def test_transition_metals_take_the_lowest_of_pyscfs_configurations():
    pytest.importorskip("pyscf")
    from ase_electra.models.fit_promolecule import _atomic_scf

    assert configurations(16) == [(6, 10, 0, 0)]  # H-Ar and Ga-Kr: the tables agree
    energies = {c: _atomic_scf(26, c, (100, 434))[2] for c in configurations(26)}
    assert len(energies) == 3
    iron = shipped_entries()["26"]
    assert tuple(iron["configuration"]) == min(energies, key=energies.get) == (8, 12, 6, 0)
    assert iron["energy_hartree"] == pytest.approx(min(energies.values()), abs=1e-8)
    assert energies[(6, 12, 8, 0)] - min(energies.values()) > 0.1  # PySCF's default empties 4s: 0.15 Ha above


def test_merge_keeps_existing_entries_and_orders_by_z():
    fitted = {"metadata": {"date": "new"}, "elements": {"2": {"w": 2}, "10": {"w": 10}, "1": {"w": 0}}}
    merged = merge_tables({"elements": {"1": {"w": 1}}}, fitted)
    assert merged == {"metadata": {"date": "new"}, "elements": {"1": {"w": 1}, "2": {"w": 2}, "10": {"w": 10}}}


def test_fit_cli_fits_only_missing_elements(tmp_path, table):
    pytest.importorskip("pyscf")
    path = tmp_path / "table.json"
    hydrogen = shipped_entries()["1"]
    path.write_text(json.dumps({"metadata": {}, "elements": {"1": hydrogen}}))
    args = ["-o", str(path), "--max-z", "2", "--min-gaussians", "1", "--max-gaussians", "2"]
    result = CliRunner().invoke(fit_main, args)
    assert result.exit_code == 0, result.output
    written = json.loads(path.read_text())["elements"]
    assert written["1"] == hydrogen  # kept as it was, not refitted with 1-2 Gaussians
    assert len(written["2"]["weights"]) <= 2 and sum(written["2"]["weights"]) == pytest.approx(2.0)
    assert "keeping 1 elements" in result.output


def test_fitter_recovers_an_exact_two_gaussian_density():
    r, dr = radial_grid(1e-4, 10.0, 300)
    w, s = np.array([1.5, 2.5]), np.array([0.05, 0.6])
    rho = ((2 * math.pi * s**2) ** -1.5 * np.exp(-0.5 * (r[:, None] / s) ** 2)) @ w
    fit, errors = fit_radial_density(4, r, dr, rho, min_gaussians=1, max_gaussians=2)
    assert len(errors) == 2 and fit.l1_error < 1e-5
    np.testing.assert_allclose(fit.sigmas, s, rtol=1e-3)
    np.testing.assert_allclose(fit.weights, w, rtol=1e-3)
    assert fit.weights.sum() == pytest.approx(4.0, abs=1e-12)


# ---------------------------------------------------------------------- the model
def test_model_is_a_density_model_from_load_model():
    m = load_model("promolecule")
    assert isinstance(m, DensityModel) and isinstance(m, PromoleculeModel)
    assert m.name == "promolecule" and m.elements == frozenset(range(1, 37))
    assert m.device == torch.device("cpu")


def test_integral_equals_electron_count(model):
    mixture = model.predict([molecule("CH3CH2OH")])
    assert mixture.n_structures == 1 and mixture.dtype == torch.float64
    assert mixture.integral().item() == pytest.approx(26.0, abs=1e-9)


def test_batch_sizes_centres_and_integrals(model, table):
    structures = [molecule("H2O"), molecule("CH4"), bulk("NaCl", "rocksalt", a=5.64), molecule("SiH4")]
    mixture = model.predict(structures)
    assert mixture.n_structures == len(structures)
    expected = tuple(sum(len(table[z].weights) for z in a.numbers) for a in structures)
    assert mixture.sizes == expected
    np.testing.assert_allclose(mixture.integral().numpy(), [10, 10, 28, 18], atol=1e-9)
    water = mixture.structure(0)
    counts = [len(table[z].weights) for z in structures[0].numbers]
    np.testing.assert_array_equal(water.centres.numpy(), np.repeat(structures[0].positions, counts, axis=0))
    np.testing.assert_array_equal(water.weights.numpy(), np.concatenate([table[z].weights for z in (8, 1, 1)]))
    sigma = water.scale_tril.diagonal(dim1=-2, dim2=-1)
    assert torch.equal(water.scale_tril, torch.diag_embed(sigma))
    np.testing.assert_array_equal(sigma[:, 0].numpy(), np.concatenate([table[z].sigmas for z in (8, 1, 1)]))


def test_single_atom_density_is_the_radial_fit(model, table):
    atom = table[6]
    mixture = model.predict([Atoms("C", positions=[[0.3, -0.2, 0.1]])])
    r = np.array([0.0, 0.02, 0.1, 0.5, 1.5])
    points = np.array([0.3, -0.2, 0.1]) + r[:, None] * np.array([0.6, 0.0, 0.8])
    expected = ((2 * math.pi * atom.sigmas**2) ** -1.5 * np.exp(-0.5 * (r[:, None] / atom.sigmas) ** 2)) @ atom.weights
    np.testing.assert_allclose(evaluate_points(mixture, points, n_sigma=50.0).numpy(), expected, rtol=1e-10)


def test_charged_structures_are_scaled_to_their_electron_count(model):
    cation = molecule("H2O")
    cation.info["charge"] = 1
    anion = molecule("CH4")
    anion.info["charge"] = -2
    mixture = model.predict([cation, anion])
    np.testing.assert_allclose(mixture.integral().numpy(), [9.0, 12.0], atol=1e-9)
    bare = molecule("H2")
    bare.info["charge"] = 2
    with pytest.raises(InvalidInputError, match="no electrons"):
        model.predict([bare])


def test_float32_on_request():
    mixture = PromoleculeModel(dtype=torch.float32).predict([molecule("NH3")])
    assert mixture.dtype == torch.float32
    assert mixture.integral().item() == pytest.approx(10.0, rel=1e-6)


def test_unknown_element_is_named(model):
    with pytest.raises(UnknownElementError, match="Rb"):
        model.predict([molecule("H2O"), Atoms("RbCl", positions=[[0, 0, 0], [2.8, 0, 0]])])


def test_bad_input_raises(model):
    water = molecule("H2O")
    water.positions[1, 0] = np.nan
    with pytest.raises(InvalidInputError, match="non-finite"):
        model.predict([water])
    with pytest.raises(InvalidInputError, match="at least one"):
        model.predict([])
    with pytest.raises(InvalidInputError, match="no atoms"):
        model.predict([Atoms()])


# ---------------------------------------------------------------------- elements past Ar
def bromobenzene() -> Atoms:
    atoms = molecule("C6H6")
    carbon, hydrogen = 0, int(np.argmin(np.linalg.norm(atoms.positions - atoms.positions[0], axis=1)[6:])) + 6
    bond = atoms.positions[hydrogen] - atoms.positions[carbon]
    atoms.numbers[hydrogen] = 35
    atoms.positions[hydrogen] = atoms.positions[carbon] + 1.90 * bond / np.linalg.norm(bond)  # C-Br, Angstrom
    return atoms


def bromogermyl_selenol() -> Atoms:
    """BrGeH2-SeH: Ge-Br 2.30, Ge-Se 2.36, Ge-H 1.53, Se-H 1.47 Angstrom."""
    return Atoms(
        "GeBrSeHHH",
        positions=[[0, 0, 0], [2.30, 0, 0], [-0.79, 2.22, 0], [-0.51, -0.72, 1.25], [-0.51, -0.72, -1.25],
                   [-2.26, 2.10, 0.0]],
    )


@pytest.mark.parametrize("name, atoms", [("bromobenzene", bromobenzene()), ("brgese", bromogermyl_selenol())])
def test_heavy_molecules_convert_with_the_promolecule(tmp_path, name, atoms):
    write(tmp_path / f"{name}.xyz", atoms)
    args = [tmp_path / f"{name}.xyz", "-o", tmp_path / "out", "--spacing", "0.2", "--margin", "3.0",
            "--model", "promolecule"]
    result = CliRunner().invoke(density_main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    density = read_density(tmp_path / "out" / f"{name}.cube")
    np.testing.assert_array_equal(density.atoms.numbers, atoms.numbers)
    (expected,) = predict_densities(load_model("promolecule"), [atoms], [density.grid])
    # rtol 1e-3: a voxel on the Br nucleus (4.6e4 e/A^3) moves by 7e-4 with the file's rounded geometry
    np.testing.assert_allclose(density.values, expected.values, rtol=1e-3, atol=1e-6 * expected.values.max())
    assert expected.values.max() > 100.0  # e/A^3: the Br core is on the grid, not cut off
