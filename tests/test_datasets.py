"""Sample discovery, splits, the reference-grid cache and probe sampling."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from ase_electra import Density, FileFormatError, Grid, InvalidInputError
from ase_electra.datasets import GridCache, find_samples, sample_probes, split_samples
from ase_electra.io import write_density
from ase_electra.reference import ReferenceRecord, load_record

from .conftest import copy_records

#: Two small training records and one validation record (QM9 index ending in 8).
RECORDS = ("qm9_000506.npz", "qm9_004683.npz", "qm9_017018.npz")
COARSE = {"spacing": 0.3, "margin": 2.5}


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> Path:
    return copy_records(tmp_path_factory, RECORDS)


def _gaussian_density(atoms: Atoms, grid: Grid) -> Density:
    """One unit-width Gaussian of Z electrons per atom (no periodic images): any smooth density."""
    d = grid.points()[:, None, :] - atoms.positions[None]  # (P, N, 3)
    rho = (atoms.numbers * np.exp(-0.5 * (d**2).sum(-1))).sum(1) / (2 * np.pi) ** 1.5
    return Density(atoms, grid, rho.reshape(grid.shape))


def test_find_samples_takes_records_cubes_and_chgcars(records, tmp_path):
    folder = tmp_path / "mixed"
    shutil.copytree(records, folder)
    water = Atoms("OH2", positions=[[0, 0, 0], [0.76, 0.59, 0], [-0.76, 0.59, 0]])
    box = Grid.for_molecule(water.positions, 0.4, 2.0)
    write_density(folder / "water.cube", _gaussian_density(water, box))
    silicon = bulk("Si")
    write_density(folder / "CHGCAR_si", _gaussian_density(silicon, Grid.for_cell(silicon.cell.array, 0.5)))
    (folder / "notes.txt").write_text("not a sample")

    samples = {s.name: s for s in find_samples(folder, **COARSE)}

    assert sorted(samples) == ["CHGCAR_si", "qm9_000506", "qm9_004683", "qm9_017018", "water"]
    record = load_record(folder / "qm9_000506.npz")
    assert samples["qm9_000506"].grid.same_as(Grid.for_molecule(record.positions, **COARSE))
    assert samples["water"].grid.same_as(box, atol=1e-5)
    assert samples["CHGCAR_si"].grid.pbc == (True, True, True)
    assert [samples[n].split for n in ("qm9_000506", "qm9_017018", "water")] == ["train", "validation", None]
    assert samples["water"].reference_values() == pytest.approx(_gaussian_density(water, box).values, rel=1e-4)


def test_find_samples_errors_name_the_folder_or_file(records, tmp_path):
    with pytest.raises(FileFormatError, match="missing: not a folder"):
        find_samples(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(FileFormatError, match="no reference records"):
        find_samples(tmp_path)
    (tmp_path / "qm9_000001.npz").write_bytes(b"not a zip file")
    with pytest.raises(FileFormatError, match="qm9_000001.npz"):
        find_samples(tmp_path)


def test_split_by_qm9_rule_or_seeded_fraction(records):
    samples = find_samples(records, **COARSE)
    train, val = split_samples(samples)
    assert [s.name for s in val] == ["qm9_017018"] and len(train) == 2
    first = split_samples(samples, 0.34, seed=3)
    again = split_samples(samples, 0.34, seed=3)
    assert [[s.name for s in part] for part in first] == [[s.name for s in part] for part in again]
    assert len(first[1]) == 1 and len(first[0]) == 2


def test_test_split_records_are_refused(records, tmp_path):
    shutil.copytree(records, tmp_path / "data")
    shutil.copy(records / RECORDS[0], tmp_path / "data" / "qm9_000019.npz")  # index ending in 9: test split
    samples = find_samples(tmp_path / "data", **COARSE)
    for fraction in (None, 0.5):
        with pytest.raises(InvalidInputError, match="qm9_000019.npz: QM9 test-split record"):
            split_samples(samples, fraction)


def test_cache_is_written_once_then_memory_mapped(records, tmp_path, monkeypatch):
    sample = find_samples(records, **COARSE)[0]
    values = GridCache(tmp_path).values(sample)

    assert isinstance(values, np.memmap) and values.dtype == np.float32 and values.shape == sample.grid.shape
    assert values == pytest.approx(load_record(sample.source).density_on(sample.grid), rel=1e-6, abs=1e-9)
    assert [p.name for p in tmp_path.iterdir()] == [GridCache(tmp_path).path(sample).name]  # no temporary left

    def no_pyscf(*args, **kwargs):
        raise AssertionError("the cached reference was recomputed")

    monkeypatch.setattr(ReferenceRecord, "density_on", no_pyscf)
    assert np.array_equal(GridCache(tmp_path).values(sample), values)
    finer = find_samples(records, spacing=0.25, margin=2.5)[0]
    assert GridCache(tmp_path).path(finer) != GridCache(tmp_path).path(sample)


def test_probe_estimate_of_a_grid_sum_is_unbiased(records, tmp_path):
    sample = find_samples(records, spacing=0.2, margin=2.5)[0]
    values = GridCache(tmp_path).values(sample)
    # A prediction error shaped like a real one: largest near the nuclei, signed, everywhere.
    error = np.abs(values - 0.9 * np.roll(values, 1, axis=0)).astype(np.float64).reshape(-1)  # (G,)
    rng = np.random.default_rng(0)

    estimates = []
    for _ in range(300):
        probes = sample_probes(values, sample.grid, 4096, rng)
        estimates.append((probes.weights * error[probes.indices]).sum())

    assert np.mean(estimates) == pytest.approx(error.sum(), rel=0.02)
    i = int(probes.indices[0])
    assert probes.points[0] == pytest.approx(sample.grid.points(i, i + 1)[0])
    assert probes.reference == pytest.approx(values.reshape(-1)[probes.indices])
    assert probes.total == pytest.approx(float(np.abs(values).sum(dtype=np.float64)))
