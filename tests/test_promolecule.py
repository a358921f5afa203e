"""The promolecule table (fit_promolecule.py, promolecule.json) and PromoleculeModel."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule

from ase_electra import InvalidInputError, UnknownElementError
from ase_electra.evaluate import evaluate_points
from ase_electra.models import DensityModel, load_model
from ase_electra.models.fit_promolecule import (
    REPORT_GRID,
    atomic_density,
    fit_radial_density,
    l1_error,
    radial_grid,
)
from ase_electra.models.promolecule import (
    AtomicGaussians,
    PromoleculeModel,
    atomic_gaussians,
    table_metadata,
)


@pytest.fixture(scope="module")
def table() -> dict[int, AtomicGaussians]:
    return atomic_gaussians()


@pytest.fixture(scope="module")
def model() -> PromoleculeModel:
    return PromoleculeModel()


# ---------------------------------------------------------------------- the table
def test_table_holds_h_to_ar_with_weights_summing_to_z(table):
    assert sorted(table) == list(range(1, 19))
    for z, atom in table.items():
        assert 4 <= len(atom.weights) <= 8, z
        assert (atom.weights > 0).all() and (atom.sigmas > 0).all(), z
        assert atom.weights.sum() == pytest.approx(z, abs=1e-9), z
        assert (np.diff(atom.sigmas) > 0).all(), z
        assert 0 <= atom.l1_error < 0.025, z


def test_table_metadata_names_level_of_theory_and_command():
    meta = table_metadata()
    assert meta["xc"] == "pbe" and meta["basis"].startswith("def2-svp")
    assert "fit_promolecule" in meta["command"] and meta["date"]


def test_table_values_are_immutable(table):
    with pytest.raises(ValueError):
        table[6].weights[0] = 1.0
    atomic_gaussians().clear()
    assert len(atomic_gaussians()) == 18


def test_atomic_gaussians_rejects_bad_values():
    with pytest.raises(InvalidInputError, match="expected > 0"):
        AtomicGaussians(np.array([1.0, -0.1]), np.array([0.1, 0.5]))
    with pytest.raises(InvalidInputError, match="narrow to wide"):
        AtomicGaussians(np.array([0.5, 0.5]), np.array([0.5, 0.1]))
    with pytest.raises(InvalidInputError, match="equal shapes"):
        AtomicGaussians(np.array([1.0]), np.array([0.1, 0.5]))


@pytest.mark.parametrize("z", [1, 6])
def test_fit_matches_a_fresh_pyscf_atom(table, z):
    pytest.importorskip("pyscf")
    r, dr = radial_grid(*REPORT_GRID)
    rho, _ = atomic_density(z, r)
    assert (4 * math.pi * r**2 * dr * rho).sum() == pytest.approx(z, rel=1e-6)
    atom = table[z]
    error = l1_error(atom.weights, atom.sigmas, r, dr, rho)
    assert error == pytest.approx(atom.l1_error, rel=0.02, abs=1e-5)


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
    assert m.name == "promolecule" and m.elements == frozenset(range(1, 19))
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
    with pytest.raises(UnknownElementError, match="Fe"):
        model.predict([molecule("H2O"), Atoms("FeO", positions=[[0, 0, 0], [1.6, 0, 0]])])


def test_bad_input_raises(model):
    water = molecule("H2O")
    water.positions[1, 0] = np.nan
    with pytest.raises(InvalidInputError, match="non-finite"):
        model.predict([water])
    with pytest.raises(InvalidInputError, match="at least one"):
        model.predict([])
    with pytest.raises(InvalidInputError, match="no atoms"):
        model.predict([Atoms()])
