"""The torch and numba evaluators against a direct numpy sum, and their contract."""

import itertools

import numpy as np
import pytest
import torch

from ase_electra import GaussianMixture, Grid, GridTooLargeError, InvalidInputError
from ase_electra.evaluate import density_and_gradient, evaluate, evaluate_points
from ase_electra.evaluate import _torch

from .conftest import random_mixture

SKEWED = np.array([[4.2, 0.0, 0.0], [1.3, 3.9, 0.0], [-0.8, 0.6, 4.4]])


BACKENDS = ("torch", "numba")


def direct_sum(m: GaussianMixture, points: np.ndarray, cell: np.ndarray, pbc, n_sigma: float = 5.0) -> np.ndarray:
    """rho at points by brute force over Gaussians and periodic images (|n| <= 3), cut at n_sigma."""
    w, mu, cov = (t.detach().double().numpy() for t in (m.weights, m.centres, m.covariances))
    inv, det = np.linalg.inv(cov), np.linalg.det(cov)
    out = np.zeros(len(points))
    for n in itertools.product(*[range(-3, 4) if p else [0] for p in pbc]):
        d = points[:, None, :] - (mu + np.array(n) @ cell)[None]
        q = np.einsum("pki,kij,pkj->pk", d, inv, d)
        out += (w * np.exp(-0.5 * q) * (q <= n_sigma**2) / np.sqrt((2 * np.pi) ** 3 * det)).sum(1)
    return out


@pytest.mark.parametrize(
    "cell, pbc",
    [
        (np.diag([4.0, 4.5, 5.0]), (False, False, False)),
        (SKEWED, (False, False, False)),
        (SKEWED, (True, True, True)),
        (SKEWED, (True, False, True)),
    ],
    ids=["box", "skewed-box", "skewed-periodic", "mixed-pbc"],
)
@pytest.mark.parametrize("backend", BACKENDS)
def test_grid_matches_direct_sum(cell, pbc, backend):
    m = random_mixture(15, box=4.0, width=(0.1, 0.9))
    g = Grid(cell, (12, 11, 13), origin=np.array([0.2, -0.1, 0.3]), pbc=pbc)
    values = evaluate(m, g, backend=backend, tolerance=0.0).numpy()
    expected = direct_sum(m, g.points(), cell, pbc).reshape(g.shape)
    np.testing.assert_allclose(values, expected, rtol=0, atol=1e-12 * expected.max())
    points = evaluate_points(m, torch.tensor(g.points()), cell=cell, pbc=pbc, backend=backend, tolerance=0.0).numpy()
    np.testing.assert_allclose(points, expected.ravel(), rtol=0, atol=1e-12 * expected.max())


@pytest.mark.parametrize("backend", BACKENDS)
def test_periodic_gaussians_wider_than_the_cell_sum_images(backend):
    m = random_mixture(4, box=2.0, width=(0.8, 1.5))
    cell = np.diag([2.0, 2.2, 2.4])
    g = Grid(cell, (10, 11, 12), pbc=(True, True, True))
    values = evaluate(m, g, backend=backend, tolerance=0.0).numpy()
    np.testing.assert_allclose(values.ravel(), direct_sum(m, g.points(), cell, g.pbc), rtol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_grid_sum_integrates_to_the_weights(backend):
    m = random_mixture(10, box=6.0, width=(0.2, 0.6))
    g = Grid.for_molecule(m.centres.numpy(), spacing=0.08, margin=3.5)
    total = evaluate(m, g, backend=backend).sum().item() * g.voxel_volume
    assert total == pytest.approx(m.weights.sum().item(), rel=1e-4)


def test_chunking_does_not_change_the_result():
    m = random_mixture(30, box=4.0)
    g = Grid(SKEWED, (20, 20, 20), pbc=(True, True, True))
    full = _torch.evaluate_grid(m, g, 5.0, 1e-9, work_points=1 << 22)
    tiny = _torch.evaluate_grid(m, g, 5.0, 1e-9, work_points=300)
    torch.testing.assert_close(full, tiny, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
def test_cutoff_is_n_sigma(backend):
    one = GaussianMixture(torch.ones(1, dtype=torch.float64), torch.zeros(1, 3, dtype=torch.float64),
                          torch.eye(3, dtype=torch.float64)[None])
    r = torch.tensor([[0.0, 0.0, 2.99], [0.0, 0.0, 3.01]], dtype=torch.float64)
    inside, outside = evaluate_points(one, r, n_sigma=3.0, backend=backend).tolist()
    assert inside > 0 and outside == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_cutoff_by_value_ends_each_gaussian_where_it_falls_below_the_tolerance(backend):
    """A weight-1 unit Gaussian (peak 0.0635 e/A^3) at tolerance 1e-3 ends at m^2 = 2 ln(63.5)."""
    one = GaussianMixture(torch.ones(1, dtype=torch.float64), torch.zeros(1, 3, dtype=torch.float64),
                          torch.eye(3, dtype=torch.float64)[None])
    radius = np.sqrt(2 * np.log((2 * np.pi) ** -1.5 / 1e-3))  # 2.88 sigma
    r = torch.tensor([[0.0, 0.0, radius - 0.01], [0.0, 0.0, radius + 0.01]], dtype=torch.float64)
    inside, outside = evaluate_points(one, r, tolerance=1e-3, backend=backend).tolist()
    assert inside > 1e-3 and outside == 0
    g = Grid(np.eye(3) * 8.0, (40, 40, 40), origin=np.full(3, -4.0))
    values = evaluate(one, g, tolerance=1e-3, backend=backend).numpy()
    assert values[values > 0].min() >= 1e-3 * (1 - 1e-12)
    assert evaluate(one, g, tolerance=1.0, backend=backend).abs().max() == 0  # peak below the tolerance
    with pytest.raises(InvalidInputError, match="tolerance"):
        evaluate(one, g, tolerance=-1.0, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradients_match_finite_differences(backend):
    base = random_mixture(3, box=2.0, width=(0.3, 0.5))
    g = Grid(np.eye(3) * 2.5, (7, 8, 9), origin=np.full(3, -0.2))
    target = torch.rand(g.shape, dtype=torch.float64)

    def loss(w, mu, L):
        rho = evaluate(GaussianMixture(w, mu, torch.tril(L)), g, backend=backend, n_sigma=8.0)
        return ((rho - target) ** 2).sum()

    args = tuple(t.clone().requires_grad_(True) for t in (base.weights, base.centres, base.scale_tril))
    assert torch.autograd.gradcheck(loss, args, eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("offset", [0.0, 200.0])
@pytest.mark.parametrize("backend", BACKENDS)
def test_density_and_gradient_match_the_evaluator_and_autograd_anywhere(offset, backend):
    """The quadratic-form expansion stays exact far from the coordinate origin."""
    m = random_mixture(12, box=3.0)
    m = GaussianMixture(m.weights, m.centres + offset, m.scale_tril)
    points = (torch.rand(700, 3, dtype=torch.float64) * 5.0 - 1.0 + offset).requires_grad_(True)
    rho = evaluate_points(m, points, backend=backend)
    (grad,) = torch.autograd.grad(rho.sum(), points)
    out = density_and_gradient(m, points.detach())
    assert out.dtype == torch.float64 and out.shape == (4, 700)
    torch.testing.assert_close(out[0], rho.detach(), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(out[1:], grad.T, rtol=1e-9, atol=1e-10)
    with pytest.raises(InvalidInputError, match="non-finite"):
        density_and_gradient(m, torch.full((2, 3), float("nan")))


def test_memory_bound_refuses_huge_grids(mixture):
    g = Grid(np.eye(3) * 10, (200, 200, 200))
    with pytest.raises(GridTooLargeError, match="memory bound.*a smaller margin\\)$"):
        evaluate(mixture, g, max_bytes=10_000_000)
    periodic = Grid(np.eye(3) * 10, (200, 200, 200), pbc=(True, True, False))  # a slab: the cell fixes the box
    with pytest.raises(GridTooLargeError, match="memory bound of 0.0 GB; use a coarser spacing$"):
        evaluate(mixture, periodic, max_bytes=10_000_000)


def test_batches_are_refused():
    m = GaussianMixture.concat([random_mixture(2), random_mixture(2)])
    with pytest.raises(InvalidInputError, match="2 structures"):
        evaluate(m, Grid(np.eye(3), (2, 2, 2)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_agrees_with_float64(backend):
    m = random_mixture(20)
    g = Grid.for_molecule(m.centres.numpy(), spacing=0.15, margin=2.0)
    v64 = evaluate(m, g, backend=backend)
    v32 = evaluate(m.to(dtype=torch.float32), g, backend=backend)
    torch.testing.assert_close(v32.double(), v64, rtol=0, atol=1e-5 * v64.max().item())


@pytest.mark.parametrize("backend", BACKENDS)
def test_signed_mixtures_are_clamped_at_zero(backend):
    """A positive Gaussian with a narrower negative one inside: the sum dips below zero at the centre."""
    m = GaussianMixture(torch.tensor([1.0, -0.5], dtype=torch.float64), torch.zeros(2, 3, dtype=torch.float64),
                        torch.stack([torch.eye(3), 0.3 * torch.eye(3)]).double())
    g = Grid(np.eye(3) * 6.0, (24, 24, 24), origin=np.full(3, -3.0))
    raw = direct_sum(m, g.points(), g.cell, g.pbc)
    assert raw.min() < 0
    values = evaluate(m, g, backend=backend, tolerance=0.0).numpy().ravel()
    np.testing.assert_allclose(values, np.maximum(raw, 0.0), rtol=0, atol=1e-12)
    at = evaluate_points(m, torch.tensor(g.points()), backend=backend, tolerance=0.0).numpy()
    np.testing.assert_allclose(at, np.maximum(raw, 0.0), rtol=0, atol=1e-12)
    rho_grad = density_and_gradient(m, torch.tensor(g.points()), tolerance=0.0)
    assert (rho_grad[:, raw < 0] == 0).all() and rho_grad[0].min() >= 0
