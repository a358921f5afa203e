"""Voxel sampling: grid values whose sum integrates mixtures with Gaussians narrower than the voxels."""

import numpy as np
import pytest
import torch
from ase.build import molecule

from ase_electra import GaussianMixture, Grid, InvalidInputError
from ase_electra.evaluate import evaluate
from ase_electra.models import load_model
from ase_electra.predict import grid_for, predict_densities

from .conftest import random_mixture

SKEWED = np.array([[4.2, 0.0, 0.0], [1.3, 3.9, 0.0], [-0.8, 0.6, 4.4]])
BACKENDS = ("torch", "numba")


def narrow_and_wide(box: float = 4.0) -> tuple[GaussianMixture, torch.Tensor]:
    """Six core-like Gaussians (0.02-0.06 A, anisotropic) and six valence ones (0.2-0.5 A),
    centres at random off-grid positions; also returns the narrow ones' centres."""
    g = torch.Generator().manual_seed(3)
    narrow = random_mixture(6, box=box, width=(0.02, 0.06), generator=g)
    wide = random_mixture(6, box=box, width=(0.2, 0.5), generator=g)
    both = GaussianMixture(torch.cat([narrow.weights, wide.weights]), torch.cat([narrow.centres, wide.centres]),
                           torch.cat([narrow.scale_tril, wide.scale_tril]))  # one structure of twelve
    return both, narrow.centres


GRIDS = {
    "box": lambda m: Grid.for_molecule(m.centres.numpy(), spacing=0.1, margin=3.0),
    "skewed-periodic": lambda m: Grid(SKEWED, (42, 40, 44), origin=np.array([0.01, -0.02, 0.03]), pbc=(True,) * 3),
}


@pytest.mark.parametrize("grid_kind", GRIDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_voxel_grid_sum_is_the_integral(grid_kind, backend):
    m, _ = narrow_and_wide()
    g = GRIDS[grid_kind](m)
    electrons = m.integral().item()
    point = evaluate(m, g, backend=backend).sum().item() * g.voxel_volume
    voxel = evaluate(m, g, backend=backend, sampling="voxel").sum().item() * g.voxel_volume
    assert abs(point / electrons - 1) > 10 * abs(voxel / electrons - 1)  # point values alias the narrow ones
    assert voxel == pytest.approx(electrons, rel=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_voxel_values_keep_the_first_moment(backend):
    """The grid's sum of r rho(r) dV is still sum_k w_k mu_k: cores stay where they are."""
    m, _ = narrow_and_wide()
    g = GRIDS["box"](m)
    values = evaluate(m, g, backend=backend, sampling="voxel").numpy().ravel()
    moment = values @ g.points() * g.voxel_volume
    np.testing.assert_allclose(moment, m.first_moments()[0].numpy(), rtol=0, atol=2e-3 * m.integral().item())


@pytest.mark.parametrize("grid_kind", GRIDS)
def test_voxel_values_of_torch_and_numba_agree(grid_kind):
    m, _ = narrow_and_wide()
    g = GRIDS[grid_kind](m)
    by_torch = evaluate(m, g, backend="torch", sampling="voxel")
    by_numba = evaluate(m, g, backend="numba", sampling="voxel")
    torch.testing.assert_close(by_numba, by_torch, rtol=0, atol=1e-12 * by_torch.max().item())


@pytest.mark.parametrize("backend", BACKENDS)
def test_voxel_values_equal_point_values_away_from_narrow_gaussians(backend):
    m, narrow_centres = narrow_and_wide()
    g = GRIDS["box"](m)
    point = evaluate(m, g, backend=backend).numpy().ravel()
    voxel = evaluate(m, g, backend=backend, sampling="voxel").numpy().ravel()
    distance = np.linalg.norm(g.points()[:, None] - narrow_centres.numpy()[None], axis=2).min(1)
    far = distance > 0.5  # widened: variance 0.06^2 + (0.5 - 0.2^2) 0.1^2 A^2 at most, 5 sigma = 0.46 A
    np.testing.assert_allclose(voxel[far], point[far], rtol=1e-13, atol=0)
    near = distance < 0.05
    assert np.abs(voxel[near] - point[near]).max() > 0.5 * point[near].max()


@pytest.mark.parametrize("backend", BACKENDS)
def test_point_sampling_is_the_default(backend):
    m, _ = narrow_and_wide()
    g = GRIDS["skewed-periodic"](m)
    assert torch.equal(evaluate(m, g, backend=backend, sampling="point"), evaluate(m, g, backend=backend))


def test_wide_gaussians_are_left_as_they_are():
    m = random_mixture(8, width=(0.2, 0.8))
    g = Grid.for_molecule(m.centres.numpy(), spacing=0.1, margin=2.0)
    assert torch.equal(evaluate(m, g, sampling="voxel"), evaluate(m, g))


def test_unknown_sampling_is_refused():
    m, _ = narrow_and_wide()
    with pytest.raises(InvalidInputError, match="sampling: expected 'point' or 'voxel', got 'cell'"):
        evaluate(m, Grid(np.eye(3), (4, 4, 4)), sampling="cell")


def test_convolved_adds_covariances_and_keeps_weights_and_centres():
    m = random_mixture(4)
    extra = torch.diag_embed(torch.rand(4, 3, dtype=torch.float64))
    wider = m.convolved(extra)
    torch.testing.assert_close(wider.covariances, m.covariances + extra)
    assert torch.equal(wider.weights, m.weights) and torch.equal(wider.centres, m.centres)
    with pytest.raises(InvalidInputError, match="extra_covariances"):
        m.convolved(extra[:2])


def test_predicted_voxel_densities_count_the_electrons():
    """The promolecule's cores on a 0.1 A grid: 11 % too many electrons point-sampled."""
    atoms = molecule("H2O")
    atoms.translate([0.013, 0.037, -0.022])
    grid = grid_for(atoms, spacing=0.1, margin=3.0)
    model = load_model("promolecule")
    point, voxel = (
        predict_densities(model, [atoms], [grid], sampling=sampling)[0].values.sum() * grid.voxel_volume
        for sampling in ("point", "voxel")
    )
    assert abs(point / 10 - 1) > 0.01
    assert voxel == pytest.approx(10.0, rel=1e-3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_voxel_values_are_differentiable(backend):
    g = torch.Generator().manual_seed(5)
    base = GaussianMixture.concat([random_mixture(2, box=1.2, width=(0.03, 0.06), generator=g),
                                   random_mixture(1, box=1.2, width=(0.2, 0.3), generator=g)]).structure(0)
    grid = Grid(np.eye(3) * 1.2, (12, 12, 12), origin=np.full(3, 0.01))
    target = torch.rand(grid.shape, dtype=torch.float64, generator=g)

    def loss(w, mu, L):
        rho = evaluate(GaussianMixture(w, mu, torch.tril(L)), grid, backend=backend, sampling="voxel", n_sigma=8.0)
        return ((rho - target) ** 2).sum()

    args = tuple(t.clone().requires_grad_(True) for t in (base.weights, base.centres, base.scale_tril))
    assert torch.autograd.gradcheck(loss, args, eps=1e-7, atol=1e-4, rtol=1e-4)
