"""Reciprocal-space evaluation on periodic grids (``evaluate/reciprocal.py``): the exact periodic
sum, the same values as the real-space path, gradients, voxel sampling, and the choice of path."""

from __future__ import annotations

import itertools

import numba
import numpy as np
import pytest
import torch
from ase.build import bulk

from ase_electra import GaussianMixture, Grid, GridTooLargeError, InvalidInputError
from ase_electra.evaluate import evaluate
from ase_electra.evaluate.reciprocal import (
    RADIUS,
    coefficient_radius,
    evaluate_reciprocal,
    fits_grid,
    plane_wave_coefficients,
    reciprocal_share,
)
from ase_electra.models import load_model

from .conftest import random_mixture
from .test_evaluate import SKEWED

PERIODIC = (True, True, True)


def skewed_grid(shape=(24, 22, 25)) -> Grid:
    return Grid(SKEWED, shape, origin=np.array([0.2, -0.1, 0.3]), pbc=PERIODIC)


def cores_and_valence() -> GaussianMixture:
    """Four core-like Gaussians (0.03-0.08 A) and eight wide anisotropic ones (0.4-0.9 A)."""
    g = torch.Generator().manual_seed(5)
    narrow = random_mixture(4, box=4.0, width=(0.03, 0.08), generator=g)
    wide = random_mixture(8, box=4.0, width=(0.4, 0.9), generator=g)
    return GaussianMixture(*(torch.cat([a, b]) for a, b in zip(
        (narrow.weights, narrow.centres, narrow.scale_tril), (wide.weights, wide.centres, wide.scale_tril))))


@pytest.fixture(scope="module")
def wide_and_exact() -> tuple[GaussianMixture, Grid, np.ndarray]:
    """Ten wide anisotropic Gaussians, a skewed periodic grid, and their exact sum over the
    images within two cells (9 Angstrom or more: 10 of the widest standard deviations)."""
    m = random_mixture(10, box=4.0, width=(0.45, 0.9))
    g = skewed_grid((20, 19, 21))
    w, mu, cov = (t.numpy() for t in (m.weights, m.centres, m.covariances))
    inv, norm = np.linalg.inv(cov), w / np.sqrt((2 * np.pi) ** 3 * np.linalg.det(cov))
    points = g.points()
    exact = np.zeros(len(points))
    for n in itertools.product(range(-2, 3), repeat=3):
        d = points[:, None, :] - (mu + np.array(n) @ SKEWED)[None]
        exact += np.exp(-0.5 * np.einsum("pki,kij,pkj->pk", d, inv, d)) @ norm
    return m, g, exact.reshape(g.shape)


@pytest.mark.parametrize("compiled", [True, False], ids=["numba", "torch"])
def test_reciprocal_values_are_the_exact_periodic_sum(compiled, wide_and_exact):
    m, g, exact = wide_and_exact
    assert fits_grid(m, g).all()
    values = evaluate_reciprocal(m, g, compiled=compiled).numpy()
    assert np.abs(values - exact).max() < 1e-8 * exact.max()


def test_numba_and_torch_coefficients_agree_and_integrate(wide_and_exact):
    m, g, _ = wide_and_exact
    compiled = plane_wave_coefficients(m, g, compiled=True)
    reference = plane_wave_coefficients(m, g, compiled=False)
    assert compiled.shape == (20, 19, 11)
    assert torch.allclose(compiled, reference, rtol=0, atol=1e-14 * reference.abs().max())
    volume = abs(np.linalg.det(SKEWED))
    assert compiled[0, 0, 0].real.item() == pytest.approx(m.weights.sum().item() / volume, rel=1e-14)
    grid_sum = evaluate_reciprocal(m, g).sum().item() * g.voxel_volume
    assert grid_sum == pytest.approx(m.weights.sum().item(), rel=1e-12)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="numba was started with one thread")
def test_threads_give_the_same_coefficients(wide_and_exact):
    m, g, _ = wide_and_exact
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = plane_wave_coefficients(m, g, compiled=True)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = plane_wave_coefficients(m, g, compiled=True)
    finally:
        numba.set_num_threads(before)
    assert torch.equal(one, many)


def test_width_criterion():
    """Isotropic Gaussians on a 40-point cubic grid (largest mode 19): they fit from
    R / pi = 2.02 voxels on; narrower ones are refused in one line."""
    g = Grid(np.eye(3) * 4.0, (40, 40, 40), pbc=PERIODIC)
    sigmas = torch.tensor([1.9, 2.02, 2.03, 3.0]) * 0.1
    m = GaussianMixture(torch.ones(4, dtype=torch.float64), torch.full((4, 3), 1.0, dtype=torch.float64),
                        sigmas.double()[:, None, None] * torch.eye(3, dtype=torch.float64))  # fmt: skip
    assert fits_grid(m, g).tolist() == [False, False, True, True]
    with pytest.raises(InvalidInputError, match="Gaussian 0 is too narrow"):
        plane_wave_coefficients(m, g)
    with pytest.raises(InvalidInputError, match="periodic along all three axes"):
        plane_wave_coefficients(m, Grid(np.eye(3) * 4.0, (40, 40, 40), pbc=(True, True, False)))
    assert coefficient_radius(5.0) == RADIUS
    assert coefficient_radius(7.0) == pytest.approx(7.249, abs=1e-3)
    assert fits_grid(m, g, coefficient_radius(7.0)).tolist() == [False, False, False, True]


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_reciprocal_path_equals_the_real_path(backend):
    """Cores stay in real space, the wide Gaussians go to reciprocal space. With the cut-off
    pushed out (n_sigma = 8) both paths give the exact sum; at the defaults they differ by the
    real path's cut-off, exp(-12.5) = 3.7e-6 of the wide Gaussians' peaks at most."""
    m = cores_and_valence()
    g = skewed_grid((42, 40, 44))
    share = reciprocal_share(m, g, backend, "reciprocal", 5.0, 1e-9, 1 << 30)
    assert share.tolist() == [False] * 4 + [True] * 8
    far = {"n_sigma": 8.0, "tolerance": 0.0}
    mixed = evaluate(m, g, backend=backend, space="reciprocal", **far)
    converged = evaluate(m, g, backend=backend, space="real", **far)
    assert torch.allclose(mixed, converged, rtol=0, atol=1e-12 * converged.max().item())
    difference = (evaluate(m, g, backend=backend, space="reciprocal") - evaluate(m, g, backend=backend, space="real"))
    wide_peaks = m.peak_values()[share].sum().item()
    assert 1e-3 * wide_peaks * 3.7e-6 < difference.abs().max().item() < 3.7e-6 * wide_peaks
    assert difference.abs().max().item() < 1e-6 * converged.max().item()


def test_float32_and_signed_weights():
    m = cores_and_valence()
    g = skewed_grid((42, 40, 44))
    far = {"n_sigma": 8.0, "tolerance": 0.0}
    m32 = m.to(dtype=torch.float32)
    values32 = evaluate(m32, g, space="reciprocal", **far)
    assert values32.dtype == torch.float32
    reference = evaluate(m32, g, space="real", **far)
    assert torch.allclose(values32, reference, rtol=0, atol=1e-6 * reference.max().item())
    # A negative wide Gaussian: the sum of both paths is clamped at zero, as on the real path.
    weights = m.weights.clone()
    weights[-1] = -3.0
    signed = GaussianMixture(weights, m.centres, m.scale_tril)
    values = evaluate(signed, g, space="reciprocal", **far)
    converged = evaluate(signed, g, space="real", **far)
    assert (values >= 0).all() and (values == 0).any()
    assert torch.allclose(values, converged, rtol=0, atol=1e-12 * converged.max().item())


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_gradients_match_the_real_path(backend):
    m = cores_and_valence()
    g = skewed_grid()
    probe = torch.linspace(-1.0, 1.0, g.n_points, dtype=torch.float64).reshape(g.shape)

    def gradients(space: str) -> list[torch.Tensor]:
        tensors = [t.clone().requires_grad_() for t in (m.weights, m.centres, m.scale_tril)]
        values = evaluate(GaussianMixture(*tensors), g, backend=backend, space=space, n_sigma=8.0, tolerance=0.0)
        (values * probe).sum().backward()
        return [t.grad for t in tensors]

    for mixed, real in zip(gradients("reciprocal"), gradients("real")):
        assert torch.allclose(torch.tril(mixed) if mixed.ndim == 3 else mixed,
                              torch.tril(real) if real.ndim == 3 else real,
                              rtol=0, atol=1e-7 * real.abs().max().item())  # fmt: skip


def test_torch_coefficients_pass_gradcheck():
    m = random_mixture(3, box=3.0, width=(0.5, 0.8))
    g = Grid(np.eye(3) * 3.0 + 0.3 * np.eye(3)[[1, 2, 0]], (12, 13, 14), pbc=PERIODIC)
    probe = torch.linspace(0, 1, g.n_points, dtype=torch.float64).reshape(g.shape)
    tensors = tuple(t.clone().requires_grad_() for t in (m.weights, m.centres, m.scale_tril))

    def f(w, mu, scale):
        return (evaluate_reciprocal(GaussianMixture(w, mu, torch.tril(scale)), g) * probe).sum()

    assert torch.autograd.gradcheck(f, tensors)


def test_voxel_sampling_is_the_same_on_both_paths():
    m = cores_and_valence()
    g = skewed_grid((42, 40, 44))
    mixed = evaluate(m, g, sampling="voxel", space="reciprocal", n_sigma=8.0, tolerance=0.0)
    converged = evaluate(m, g, sampling="voxel", space="real", n_sigma=8.0, tolerance=0.0)
    assert torch.allclose(mixed, converged, rtol=0, atol=1e-12 * converged.max().item())
    assert mixed.sum().item() * g.voxel_volume == pytest.approx(m.weights.sum().item(), rel=1e-3)


def test_auto_choice():
    """A primitive Al cell's valence Gaussians (0.74 and 1.1 A) go to reciprocal space, its cores
    (up to 0.17 A) do not; GPUs, slabs and tight memory stay real; bad input is refused in one line."""
    atoms = bulk("Al", "fcc", 4.05)
    with torch.no_grad():
        m = load_model("promolecule").predict([atoms]).structure(0)
    g = Grid.for_cell(atoms.cell.array, 0.1)
    share = reciprocal_share(m, g, "numba", "auto", 5.0, 1e-9, 1 << 30)
    widths = torch.linalg.eigvalsh(m.covariances).sqrt()[:, 0]
    assert share[widths > 0.7].all() and not share[widths < 0.2].any()  # valence in, cores out
    far = {"n_sigma": 8.0, "tolerance": 0.0}
    converged = evaluate(m, g, space="real", **far)
    assert torch.allclose(evaluate(m, g, space="auto", **far), converged, rtol=0, atol=1e-12 * converged.max().item())
    assert torch.equal(evaluate(m, g), evaluate(m, g, space="real"))  # the default
    assert not reciprocal_share(m, g, "cupy", "auto", 5.0, 1e-9, 1 << 30).any()
    assert not reciprocal_share(m, g, "numba", "auto", 5.0, 1e-9, 16 * g.n_points).any()
    with pytest.raises(GridTooLargeError, match="space='real'"):
        reciprocal_share(m, g, "numba", "reciprocal", 5.0, 1e-9, 16 * g.n_points)
    slab = Grid(g.cell, g.shape, pbc=(True, True, False))
    assert not reciprocal_share(m, slab, "numba", "auto", 5.0, 1e-9, 1 << 30).any()
    with pytest.raises(InvalidInputError, match="periodic along all three axes"):
        evaluate(m, slab, space="reciprocal")
    with pytest.raises(InvalidInputError, match="space: expected"):
        evaluate(m, g, space="fourier")
