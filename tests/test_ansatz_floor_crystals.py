"""benchmarks/ansatz_floor.py on periodic records: cell grid, stored samples, periodic images in the fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ase_electra.errors import InvalidInputError
from ase_electra.evaluate import evaluate
from ase_electra.grid import Grid
from ase_electra.reference import PeriodicRecord, save_record

from .conftest import load_benchmark

CELL = 2.4 * np.eye(3)  # Angstrom: small enough that every Gaussian reaches its periodic images
NUMBERS = np.array([3])
POSITIONS = np.array([[0.1, 0.1, 0.1]])  # near a corner: its images matter on the whole cell


@pytest.fixture(scope="module")
def floor():
    return load_benchmark("ansatz_floor")


def _target_values(floor, grid: Grid) -> np.ndarray:
    """A deformed free mixture of the cell's atom on ``grid`` (images summed), e/Angstrom^3."""
    target = floor.FreeMixture(NUMBERS, POSITIONS, floor.CANDIDATES["head"], 0.07, seed=2)
    with torch.no_grad():
        target.flt_centres.add_(0.15)
        target.flt_off.add_(0.1)
        return evaluate(target.mixture(), grid).numpy()


def _record(floor, spacing: float = 0.2) -> PeriodicRecord:
    grid = Grid.for_cell(CELL, spacing)
    return PeriodicRecord(
        numbers=NUMBERS, positions=POSITIONS, cell=CELL, density=_target_values(floor, grid),
        missing_charge=np.zeros(1), spacing=spacing, xc="PBE", code="test", ecut=500.0, kpts=np.array([2, 2, 2]),
        smearing=0.1, spin_polarized=False, charge=0, energy=0.0, source="", name="Li_test_v100",
    )


def test_load_target_keeps_cell_grid(floor, tmp_path):
    rec = _record(floor)
    path = save_record(tmp_path / "Li_test_v100.npz", rec)
    target = floor.load_target(path, spacing=0.1, margin=4.0, objective="grid", pool=10, seed=0)
    assert target.grid.same_as(rec.grid) and target.grid.pbc == (True, True, True)
    assert target.shifted is None and target.ref_shifted is None
    np.testing.assert_array_equal(target.ref, rec.density.astype(np.float64))
    with pytest.raises(InvalidInputError, match="continuous"):
        floor.load_target(path, spacing=0.1, margin=4.0, objective="continuous", pool=10, seed=0)
    assert floor.select_records(tmp_path, "any", "*_v100", 5) == [path]
    assert floor.select_records(tmp_path, "validation", "*", 5) == []


def test_periodic_fit_lowers_both_scores(floor, tmp_path):
    """The fit sums periodic images as the scoring grid does: full-grid and far-field NMAE both drop."""
    target = floor.load_target(save_record(tmp_path / "Li_test_v100.npz", _record(floor)), 0.1, 4.0, "grid", 10, 0)
    model = floor.FreeMixture(NUMBERS, POSITIONS, floor.CANDIDATES["head"], 0.07, seed=0)
    before = floor.score(model.mixture().detach(), target)
    floor.fit(model, target.grid, target.ref, steps=50, probes=512, lr=0.04, seed=0, sampler=target.sampler)
    after = floor.score(model.mixture().detach(), target)
    assert after[0] == pytest.approx(floor.grid_nmae(model.mixture().detach(), target.grid, target.ref, target.total))
    assert after[0] < 0.5 * before[0] and after[1] < 0.5 * before[1]
    assert sum(after[2]) == pytest.approx(after[0])
