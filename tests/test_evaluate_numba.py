"""The compiled CPU evaluator (``_numba.py``): the torch path and a brute-force sum agree
with it, its gradients are right, its threads do not race, and it is optional."""

from __future__ import annotations

import importlib.util

import numba
import numpy as np
import pytest
import torch

from ase_electra import GaussianMixture, Grid
from ase_electra.evaluate import evaluate, evaluate_points, select_backend

from .conftest import random_mixture
from .test_evaluate import SKEWED, direct_sum


def _mixture(weights, centres, scales) -> GaussianMixture:
    return GaussianMixture(*(torch.as_tensor(np.asarray(a, dtype=np.float64)) for a in (weights, centres, scales)))


def _hard_mixture() -> GaussianMixture:
    """Tiny and huge widths, zero weights, and Gaussians straddling the cell's faces."""
    m = random_mixture(12, box=4.0, width=(0.1, 0.9))
    w = m.weights.clone()
    w[[2, 7]] = 0.0
    extra = _mixture(
        [0.8, 1.5, 0.3, 2.0],
        [[0.05, 2.0, 2.0], [4.1, 3.9, 0.02], [2.0, 2.0, 2.0], [0.0, 0.0, 0.0]],
        [np.eye(3) * 0.02, np.eye(3) * 0.3, np.diag([1.6, 1.4, 1.2]), np.eye(3) * 0.06],
    )
    return GaussianMixture(
        torch.cat([w, extra.weights]), torch.cat([m.centres, extra.centres]), torch.cat([m.scale_tril, extra.scale_tril])
    )


CASES = {
    "molecule": (np.diag([4.4, 4.5, 4.6]), (False, False, False)),
    "skewed-periodic": (SKEWED, (True, True, True)),
    "mixed-pbc": (SKEWED, (True, False, True)),
}


@pytest.mark.parametrize("case", CASES)
def test_compiled_matches_torch_and_a_brute_force_sum(case):
    cell, pbc = CASES[case]
    m = _hard_mixture()
    g = Grid(cell, (23, 21, 25), origin=np.array([-0.1, 0.05, -0.2]), pbc=pbc)
    expected = direct_sum(m, g.points(), cell, pbc).reshape(g.shape)
    compiled = evaluate(m, g, backend="numba", tolerance=0.0).numpy()
    reference = evaluate(m, g, backend="torch", tolerance=0.0).numpy()
    np.testing.assert_allclose(compiled, expected, rtol=0, atol=1e-12 * expected.max())
    np.testing.assert_allclose(compiled, reference, rtol=0, atol=1e-12 * expected.max())
    # float32 parameters: the compiled path computes in float64 and rounds once at the end;
    # the torch path works in float32 and is off by up to 1.3e-6 at the 0.02 A Gaussian.
    m32 = m.to(dtype=torch.float32)
    compiled32 = evaluate(m32, g, backend="numba", tolerance=0.0)
    torch32 = evaluate(m32, g, backend="torch", tolerance=0.0)
    exact32 = evaluate(m32.to(dtype=torch.float64), g, backend="torch", tolerance=0.0).numpy()
    assert compiled32.dtype == torch.float32
    np.testing.assert_allclose(compiled32.numpy(), exact32, rtol=0, atol=1e-7 * expected.max())
    np.testing.assert_allclose(compiled32.numpy(), torch32.numpy(), rtol=0, atol=3e-6 * expected.max())
    points = torch.tensor(g.points()[::7])
    at = evaluate_points(m, points, cell=cell, pbc=pbc, backend="numba", tolerance=0.0).numpy()
    np.testing.assert_allclose(at, expected.ravel()[::7], rtol=0, atol=1e-12 * expected.max())


def test_default_value_cutoff_matches_torch():
    m = _hard_mixture()
    g = Grid(SKEWED, (20, 22, 24), pbc=(True, True, True))
    compiled, reference = evaluate(m, g, backend="numba"), evaluate(m, g, backend="torch")
    torch.testing.assert_close(compiled, reference, rtol=0, atol=1e-13 * reference.max().item())


def test_a_line_of_400_points_follows_direct_exp():
    """The recurrence along z over 400 points of a long Gaussian stays at float64 precision."""
    m = _mixture([3.0], [[0.0, 0.0, 2.0]], [np.diag([0.3, 0.3, 0.45])])  # 5 sigma = 2.25 A along z
    g = Grid(np.diag([0.1, 0.1, 4.5]), (1, 1, 400), origin=np.array([0.0, 0.0, -0.25]))
    z = g.points()[:, 2]
    q = ((z - 2.0) / 0.45) ** 2
    exact = 3.0 * np.exp(-0.5 * q) / ((2 * np.pi) ** 1.5 * 0.3 * 0.3 * 0.45) * (q <= 25.0)
    values = evaluate(m, g, backend="numba", tolerance=0.0).numpy().ravel()
    assert (exact > 0).sum() == 400
    np.testing.assert_allclose(values, exact, rtol=1e-13, atol=0)


@pytest.mark.parametrize("angle", [35.0, -60.0])
def test_line_cursor_walks_both_ways_at_float64_precision(angle):
    """A long Gaussian tilted in the y-z plane: each z-line starts several points from the
    previous one (up for one tilt, down for the other; beyond ``_MAX_WALK`` near the tips),
    and every value matches direct exp to 1e-12 relative."""
    t = np.radians(angle)
    rotation = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(t), -np.sin(t)], [0.0, np.sin(t), np.cos(t)]])
    covariance = rotation @ np.diag([0.25, 1.1, 0.2]) ** 2 @ rotation.T
    centre = np.array([0.3, 3.0, 3.0])
    m = _mixture([2.0], [centre], [np.linalg.cholesky(covariance)])
    g = Grid(np.diag([0.6, 6.0, 6.0]), (12, 120, 120))
    d = g.points() - centre
    q = np.einsum("pi,ij,pj->p", d, np.linalg.inv(covariance), d)
    exact = 2.0 * np.exp(-0.5 * q) / ((2 * np.pi) ** 1.5 * np.sqrt(np.linalg.det(covariance))) * (q <= 25.0)
    values = evaluate(m, g, backend="numba", tolerance=0.0).numpy().ravel()
    assert (exact > 0).sum() > 50_000
    np.testing.assert_allclose(values, exact, rtol=1e-12, atol=0)
    weights = torch.tensor(np.random.default_rng(0).normal(size=g.shape))
    grads = []
    for backend in ("numba", "torch"):
        leaf = [t.clone().requires_grad_() for t in (m.weights, m.centres, m.scale_tril)]
        (evaluate(GaussianMixture(*leaf), g, backend=backend, tolerance=0.0) * weights).sum().backward()
        grads.append([t.grad for t in leaf])
    for compiled, reference in zip(*grads):
        torch.testing.assert_close(compiled, reference, rtol=1e-10, atol=0)


@pytest.mark.parametrize("periodic", [False, True])
def test_gradients_pass_gradcheck(periodic):
    base = random_mixture(4, box=2.5, width=(0.3, 0.6))
    cell = SKEWED * 0.7
    pbc = (True, False, True) if periodic else (False, False, False)
    g = Grid(cell, (6, 5, 7), origin=np.zeros(3) if periodic else np.full(3, -0.3), pbc=pbc)
    points = torch.rand(40, 3, dtype=torch.float64) * 3.0 - 0.3

    def on_grid(w, mu, L):
        return evaluate(GaussianMixture(w, mu, torch.tril(L)), g, backend="numba")

    def at_points(w, mu, L, r):
        m = GaussianMixture(w, mu, torch.tril(L))
        return evaluate_points(m, r, cell=cell if periodic else None, pbc=pbc, backend="numba")

    args = tuple(t.clone().requires_grad_(True) for t in (base.weights, base.centres, base.scale_tril))
    assert torch.autograd.gradcheck(on_grid, args, eps=1e-6, atol=1e-7)
    assert torch.autograd.gradcheck(at_points, (*args, points.requires_grad_(True)), eps=1e-6, atol=1e-7)


def test_gradients_match_the_torch_path():
    m = random_mixture(30, box=4.0, width=(0.1, 0.8))
    g = Grid(SKEWED, (18, 17, 19), pbc=(True, True, True))
    target = torch.rand(g.shape, dtype=torch.float64)
    points = torch.rand(500, 3, dtype=torch.float64) * 4.0

    def gradients(backend):
        args = tuple(t.clone().requires_grad_(True) for t in (m.weights, m.centres, m.scale_tril))
        mixture = GaussianMixture(*args)
        grid_loss = ((evaluate(mixture, g, backend=backend) - target).abs()).sum()
        point_loss = (evaluate_points(mixture, points, backend=backend) ** 2).sum()
        return torch.autograd.grad(grid_loss + point_loss, args)

    for compiled, reference in zip(gradients("numba"), gradients("torch")):
        torch.testing.assert_close(compiled, reference, rtol=1e-10, atol=1e-12)


def test_one_and_two_threads_give_the_same_values():
    m = random_mixture(60, box=5.0, width=(0.05, 1.0))
    g = Grid(SKEWED * 1.2, (30, 31, 32), pbc=(True, True, True))
    points = torch.rand(3000, 3, dtype=torch.float64) * 5.0
    threads = numba.get_num_threads()
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba was started with one thread")
    results = []
    try:
        for n in (1, 2):
            numba.set_num_threads(n)
            w = m.weights.clone().requires_grad_(True)
            mixture = GaussianMixture(w, m.centres, m.scale_tril)
            grid_values = evaluate(mixture, g, backend="numba")
            point_values = evaluate_points(mixture, points, backend="numba")
            (grad,) = torch.autograd.grad(grid_values.sum() + point_values.sum(), w)
            results.append((grid_values.detach(), point_values.detach(), grad))
    finally:
        numba.set_num_threads(threads)
    for one, two in zip(*results):
        torch.testing.assert_close(one, two, rtol=1e-12, atol=0)


def test_points_far_apart_and_gaussians_far_from_every_point():
    """The cell list copes with points spread over 100 A and Gaussians that reach none of them."""
    m = _mixture([1.0, 2.0], [[0.0, 0.0, 0.0], [500.0, 0.0, 0.0]], [np.eye(3) * 0.5] * 2)
    points = torch.tensor([[0.1, 0.0, 0.0], [100.0, 0.0, 0.0], [0.0, 0.2, -0.1]], dtype=torch.float64)
    torch.testing.assert_close(
        evaluate_points(m, points, backend="numba"), evaluate_points(m, points, backend="torch"), rtol=1e-13, atol=0
    )
    assert evaluate_points(m, torch.zeros(0, 3, dtype=torch.float64), backend="numba").shape == (0,)


def test_torch_is_the_fallback_without_numba(monkeypatch):
    m = random_mixture(5)
    g = Grid(np.eye(3) * 4.0, (8, 8, 8))
    assert select_backend(m) == "numba"
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "numba" else real(name, *a))
    assert select_backend(m) == "torch"
    torch.testing.assert_close(evaluate(m, g), evaluate(m, g, backend="torch"))
    with pytest.raises(ImportError, match="pip install numba"):
        evaluate(m, g, backend="numba")
