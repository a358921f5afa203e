"""PySCF from the predicted density: the guess density matrix, its SCF, errors and the CLI."""

import json

import numpy as np
import pytest
import torch
from ase.build import molecule
from ase.io import write
from click.testing import CliRunner

pytest.importorskip("pyscf")

from pyscf import dft, gto  # noqa: E402

from ase_electra import GaussianMixture, InvalidInputError, UnknownElementError  # noqa: E402
from ase_electra import scf  # noqa: E402
from ase_electra.cli.scf import _METHODS, main  # noqa: E402
from ase_electra.evaluate import evaluate_points  # noqa: E402
from ase_electra.models import load_model  # noqa: E402

from .conftest import random_mixture  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return load_model("promolecule")


def water(basis="sto-3g", **settings):
    return scf.mean_field(molecule("H2O"), basis=basis, conv_tol=1e-10, **settings)


def test_density_on_grid_matches_evaluator_and_autograd():
    mixture = random_mixture(10)
    coords = np.random.default_rng(0).uniform(0.0, 4.0, (500, 3)) / scf.BOHR  # bohr
    rho = scf.density_on_grid(mixture, coords)
    points = torch.tensor(coords * scf.BOHR, requires_grad=True)
    expected = evaluate_points(mixture, points)  # e/A^3
    (grad,) = torch.autograd.grad(expected.sum(), points)  # e/A^4
    np.testing.assert_allclose(rho[0], expected.detach().numpy() * scf.BOHR**3, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(rho[1:], grad.numpy().T * scf.BOHR**4, rtol=1e-10, atol=1e-14)


def test_coulomb_matrix_of_an_orbital_density_equals_pyscf_j():
    """rho = 2 phi^2 for a normalised s orbital phi ~ exp(-a r^2) is one isotropic Gaussian."""
    a = 0.8  # 1/bohr^2
    mol = gto.M(atom="He 0 0 0", basis={"He": [[0, [a, 1.0]]]}, verbose=0)
    mf = dft.RKS(mol, xc="pbe").density_fit()
    sigma = np.sqrt(1 / (4 * a)) * scf.BOHR  # phi^2 ~ exp(-2 a r^2) = N(0, sigma^2 I)
    mixture = GaussianMixture(torch.tensor([2.0], dtype=torch.float64), torch.zeros(1, 3, dtype=torch.float64),
                              sigma * torch.eye(3, dtype=torch.float64)[None])
    j = scf.coulomb_matrix(mf, mixture)
    np.testing.assert_allclose(j, mf.get_j(mol, np.full((1, 1), 2.0)), rtol=1e-8)


@pytest.mark.parametrize("decomposition", ["cholesky", "eigen"])
def test_coulomb_matrix_from_the_mean_fields_df_tensor_equals_three_centre_integrals(monkeypatch, decomposition):
    """J from a built mf.with_df tensor (either metric decomposition PySCF may pick) equals the direct path."""
    import scipy.linalg

    if decomposition == "eigen":  # PySCF and scf.py both fall back to the eigen-decomposition
        def refuse(*args, **kwargs):
            raise scipy.linalg.LinAlgError("not positive definite")

        monkeypatch.setattr(scipy.linalg, "cholesky", refuse)
    mixture = load_model("promolecule").predict([molecule("H2O")]).structure(0)
    fitted = water(basis="def2-svp")
    direct = water(basis="def2-svp", density_fit=False)
    assert scf._incore_df(fitted) is None  # the guess does not build the tensor PySCF would not store
    fitted.with_df.build()
    j = scf.coulomb_matrix(fitted, mixture)
    np.testing.assert_allclose(j, scf.coulomb_matrix(direct, mixture), atol=1e-9)


def test_anisotropic_gaussians_split_into_isotropic_parts_keep_charge_and_moments():
    mixture = random_mixture(6)
    centres, exponents, weights = scf._isotropic_parts(mixture)
    np.testing.assert_allclose(weights.sum(), mixture.weights.sum().item(), rtol=1e-12)
    # The parts reproduce each mixture's first and second moments (Gauss-Hermite is exact there).
    mean = (weights[:, None] * centres).sum(0) / weights.sum()
    expected = (mixture.weights[:, None] * mixture.centres).sum(0).numpy() / mixture.weights.sum().item()
    np.testing.assert_allclose(mean * scf.BOHR, expected, rtol=1e-10)
    second = ((weights[:, None] * centres).T @ centres + np.eye(3) * (weights * 0.5 / exponents).sum()) * scf.BOHR**2
    w, mu, cov = mixture.weights.numpy(), mixture.centres.numpy(), mixture.covariances.numpy()
    np.testing.assert_allclose(second, np.einsum("k,ka,kb->ab", w, mu, mu) + np.einsum("k,kab->ab", w, cov),
                               rtol=1e-10)


def test_guess_is_a_symmetric_idempotent_density_matrix_with_all_electrons(model):
    mf = water("def2-svp")
    dm0 = scf.predicted_guess(mf, model)
    s = mf.get_ovlp()
    assert dm0.shape == (mf.mol.nao, mf.mol.nao)
    np.testing.assert_allclose(dm0, dm0.T, atol=1e-12)
    np.testing.assert_allclose(np.trace(dm0 @ s), 10.0, rtol=1e-10)
    np.testing.assert_allclose(dm0 @ s @ dm0, 2 * dm0, atol=1e-8)


@pytest.mark.parametrize("method", scf.GUESS_METHODS)
def test_scf_from_each_method_reaches_the_minao_energy(model, method):
    reference = water()
    reference.kernel()
    mf = water()
    dm0 = scf.predicted_guess(mf, model, method=method)
    np.testing.assert_allclose(np.trace(dm0 @ mf.get_ovlp()), 10.0, rtol=1e-10)
    mf.kernel(dm0=dm0)
    assert mf.converged
    assert abs(mf.e_tot - reference.e_tot) < 1e-6


def test_converge_from_prediction_returns_the_converged_mean_field(model):
    mf = scf.converge_from_prediction(scf.mean_field(molecule("NH3"), basis="sto-3g"), model)
    assert mf.converged and mf.cycles > 0


def test_run_history_gives_the_cycles_at_any_looser_threshold(model):
    atoms = molecule("H2O")
    tight = scf.run_scf(atoms, "predicted", model=model, basis="sto-3g", conv_tol=1e-10)
    loose = scf.run_scf(atoms, "predicted", model=model, basis="sto-3g", conv_tol=1e-5)
    assert len(tight.history) == tight.cycles and tight.cycles_to(1e-10) == tight.cycles
    assert tight.cycles_to(1e-5) == loose.cycles < tight.cycles  # PySCF's own count at 1e-5
    assert tight.cycles_to(1e-30) is None
    assert scf.GuessRun(**json.loads(json.dumps(tight.as_dict()))).cycles_to(1e-5) == loose.cycles


def test_open_shell_guess_has_one_density_matrix_per_spin(model):
    # NH2: a radical whose singly occupied orbital is not degenerate (OH's pi pair is, and UKS
    # then lands on either of two symmetry-broken solutions whatever the guess).
    mf = scf.mean_field(molecule("NH2"), basis="sto-3g", spin=1, conv_tol=1e-10)
    dm0 = scf.predicted_guess(mf, model)
    s = mf.get_ovlp()
    assert dm0.shape == (2, mf.mol.nao, mf.mol.nao)
    np.testing.assert_allclose([np.trace(d @ s) for d in dm0], [5.0, 4.0], rtol=1e-10)
    mf.kernel(dm0=dm0)
    reference = scf.mean_field(molecule("NH2"), basis="sto-3g", spin=1, conv_tol=1e-10)
    reference.kernel()
    assert abs(mf.e_tot - reference.e_tot) < 1e-6


def test_odd_electron_count_needs_a_spin():
    with pytest.raises(InvalidInputError, match="9 electrons cannot have spin 0"):
        scf.mean_field(molecule("OH"))


def test_unknown_element_is_named_before_any_work(model):
    atoms = molecule("H2O")
    atoms[0].symbol = "Rb"  # past the promolecule table (H to Kr)
    mf = scf.mean_field(atoms, basis="sto-3g", spin=1)
    with pytest.raises(UnknownElementError, match="Rb not supported by model 'promolecule'"):
        scf.predicted_guess(mf, model)
    assert mf.grids.coords is None  # failed before building the grid


def test_hybrid_functional_gets_a_pbe_guess(model):
    mf = water(xc="b3lyp")
    dm0 = scf.predicted_guess(mf, model)
    np.testing.assert_allclose(np.trace(dm0 @ mf.get_ovlp()), 10.0, rtol=1e-10)


def test_ecp_basis_is_refused():
    mol = gto.M(atom="I 0 0 0; H 0 0 1.6", basis="def2-svp", ecp="def2-svp", verbose=0)
    with pytest.raises(InvalidInputError, match="ECP"):
        scf.atoms_from_mole(mol)


def test_bad_method_is_named(model):
    with pytest.raises(InvalidInputError, match="method: expected one of"):
        scf.predicted_guess(water(), model, method="magic")


# ------------------------------------------------------------------ command line
def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_methods_match_the_library():
    assert _METHODS == scf.GUESS_METHODS


def test_cli_json_reports_every_guess(tmp_path):
    path = tmp_path / "water.xyz"
    write(path, molecule("H2O"))
    result = run(path, "--basis", "sto-3g", "--compare", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    runs = report["runs"]
    assert [r["guess"] for r in runs] == ["electra:default", "minao", "atom", "huckel"]  # shipped model
    assert all(r["converged"] and r["structure"] == "water" for r in runs)
    assert max(r["energy"] for r in runs) - min(r["energy"] for r in runs) < 1e-6
    assert 0 < runs[0]["model_nmae"] < 1 and runs[1]["model_nmae"] is None
    assert report["settings"]["basis"] == "sto-3g"


def test_cli_table(tmp_path):
    path = tmp_path / "water.xyz"
    write(path, molecule("H2O"))
    result = run(path, "--basis", "sto-3g")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "water (H2O)"
    assert result.output.splitlines()[2].split()[0] == "electra:default"


def with_potassium():
    atoms = molecule("H2O")
    atoms[0].symbol = "K"
    return atoms


@pytest.mark.parametrize(
    ("name", "atoms", "args", "message"),
    [
        ("oh", molecule("OH"), [], "Error: oh: 9 electrons cannot have spin 0"),
        ("bad", with_potassium(), ["--spin", "1"], "Error: bad: element(s) K not supported by model 'electra:default (molecules)'"),
        ("water", molecule("H2O"), ["--model", "nowhere"], "Error: model: 'nowhere' is neither"),
        ("water", molecule("H2O"), ["--xc", "nonsense"], "Error: xc: unknown functional 'nonsense'"),
        ("water", molecule("H2O"), ["--basis", "nonsense"], "Error: water: PySCF cannot build basis 'nonsense'"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, name, atoms, args, message):
    path = tmp_path / f"{name}.xyz"
    write(path, atoms)
    result = run(path, "--basis", "sto-3g", *args)
    assert result.exit_code == 1
    assert result.output.startswith(message)
    assert len(result.output.strip().splitlines()) == 1


def test_cli_missing_file(tmp_path):
    result = run(tmp_path / "absent.xyz")
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: {tmp_path / 'absent.xyz'}: no such file"


@pytest.mark.parametrize("xc", ["lda,vwn", "pbe"])
def test_xc_matrix_of_a_density_matrix_equals_pyscf(xc):
    mf = water(xc=xc)
    mf.grids.level = 1
    grids = scf._grid(mf)
    dm = mf.get_init_guess()
    ao = mf._numint.eval_ao(mf.mol, grids.coords, deriv=1)
    rho = mf._numint.eval_rho(mf.mol, ao, dm, xctype="GGA")
    expected = mf._numint.nr_rks(mf.mol, grids, xc, dm)[2]
    np.testing.assert_allclose(scf.xc_matrix(mf, rho, grids), expected, atol=1e-10)
