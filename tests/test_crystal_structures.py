"""benchmarks/crystal_structures.py: every structure is labellable, off the sample grid, and its
validation compounds' elements also train."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from ase_electra.grid import Grid
from ase_electra.reference.gpaw import DEFAULT_SPACING, check_crystal

from .conftest import load_benchmark


@pytest.fixture(scope="module")
def structures():
    return list(load_benchmark("crystal_structures").crystal_structures(seed=0))


def test_every_structure_is_labellable_and_named_once(structures):
    names = Counter(s.name for s in structures)
    assert len(structures) > 300 and max(names.values()) == 1
    for s in structures:
        check_crystal(s.atoms)  # raises for anything GPAW labelling refuses (slabs: vacuum, axes)
    slabs = [s for s in structures if not s.atoms.pbc.all()]
    assert slabs and all(tuple(s.atoms.pbc) == (True, True, False) for s in slabs)


def test_no_nucleus_sits_on_a_sample_point(structures):
    for s in structures:
        grid = Grid.for_cell(s.atoms.cell.array, DEFAULT_SPACING, tuple(s.atoms.pbc))
        index = s.atoms.cell.scaled_positions(s.atoms.positions) * np.array(grid.shape)  # in grid steps
        to_point = (index - np.round(index)) / np.array(grid.shape) @ s.atoms.cell.array  # Angstrom
        assert np.linalg.norm(to_point, axis=1).min() > 1e-3, s.name


def test_validation_elements_also_train(structures):
    train = {z for s in structures if s.split == "train" for z in s.atoms.numbers}
    val = {z for s in structures if s.split == "val" for z in s.atoms.numbers}
    assert val and val <= train
    assert {s.name.rsplit("_", 1)[0] for s in structures if s.split == "val"} >= {"Al_fcc111", "Al_element"}
