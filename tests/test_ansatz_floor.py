"""benchmarks/ansatz_floor.py: the free ansatz conserves charge and its fitter lowers the NMAE."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ase_electra.evaluate import evaluate
from ase_electra.grid import Grid

from .conftest import load_benchmark


@pytest.fixture(scope="module")
def floor():
    return load_benchmark("ansatz_floor")


WATER = (np.array([8, 1, 1]), np.array([[0.0, 0.0, 0.12], [0.0, 0.76, -0.47], [0.0, -0.76, -0.47]]))


@pytest.mark.parametrize("name", ["head", "signed16"])
def test_electron_count_exact(floor, name):
    numbers, positions = WATER
    model = floor.FreeMixture(numbers, positions, floor.CANDIDATES[name], 0.02, seed=1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))  # any parameter values
    mixture = model.mixture()
    assert mixture.integral().item() == pytest.approx(10.0, abs=1e-10)
    assert (torch.diagonal(mixture.scale_tril, dim1=-2, dim2=-1)[model.core_centres.shape[0]:] >= 0.02).all()
    if name == "signed16":
        assert (mixture.weights < 0).any()


def deformed_water(floor) -> tuple[Grid, np.ndarray, float]:
    """A fitting target: the head ansatz of water with its floating Gaussians shifted and stretched;
    its grid, density on it and sum |rho|."""
    numbers, positions = WATER
    grid = Grid.for_molecule(positions, spacing=0.2, margin=2.0)
    target = floor.FreeMixture(numbers, positions, floor.CANDIDATES["head"], 0.02, seed=2)
    with torch.no_grad():
        target.flt_centres.add_(0.1)
        target.flt_off.add_(0.1)
        ref = evaluate(target.mixture(), grid).numpy()
    return grid, ref, float(np.abs(ref).sum())


def test_fit_lowers_nmae(floor):
    """Fit the promolecule-started ansatz to a deformed target."""
    grid, ref, total = deformed_water(floor)
    model = floor.FreeMixture(*WATER, floor.CANDIDATES["head"], 0.02, seed=0)
    before = floor.grid_nmae(model.mixture(), grid, ref, total)
    floor.fit(model, grid, ref, steps=150, probes=512, lr=0.02, seed=0)
    after = floor.grid_nmae(model.mixture().detach(), grid, ref, total)
    assert after < 0.5 * before


def test_spherical_candidate_stays_on_its_atoms_and_isotropic(floor):
    grid, ref, total = deformed_water(floor)
    model = floor.FreeMixture(*WATER, floor.CANDIDATES["spherical16"], 0.02, seed=0)
    before = floor.grid_nmae(model.mixture(), grid, ref, total)
    floor.fit(model, grid, ref, steps=60, probes=512, lr=0.02, seed=0)
    mixture = model.mixture().detach()
    floating = slice(model.core_centres.shape[0], None)
    owners = np.repeat(np.arange(3), [16, 6, 6])  # O: 16 floating Gaussians, each H 6
    np.testing.assert_array_equal(mixture.centres[floating].numpy(), WATER[1][owners])
    tril = mixture.scale_tril[floating]
    diagonal = torch.diagonal(tril, dim1=-2, dim2=-1)
    assert torch.equal(tril, torch.diag_embed(diagonal))
    assert torch.equal(diagonal, diagonal[:, :1].expand_as(diagonal))
    assert floor.grid_nmae(mixture, grid, ref, total) < before  # widths and weights did learn
