"""NMAE scoring and electra-score: values, grid checks, file pairing, the command line."""

from __future__ import annotations

import dataclasses
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from click.testing import CliRunner

from ase_electra import Density, FileFormatError, Grid, InvalidInputError
from ase_electra.cli.score import main
from ase_electra.io import write_chgcar, write_cube
from ase_electra.scoring import (
    ScoreRow,
    distance_bands,
    nmae,
    nmae_beyond,
    nmae_by_distance,
    pair_files,
    score_paths,
)

from .conftest import shared_records


@pytest.fixture
def grid() -> Grid:
    return Grid(np.diag([3.0, 3.5, 4.0]), (6, 7, 8))


@pytest.fixture
def ref(grid) -> Density:
    values = np.random.default_rng(4).random(grid.shape) + 0.1
    return Density(Atoms("H2", positions=[[1, 1, 1], [1.7, 1, 1]]), grid, values)


def like(density: Density, values: np.ndarray, grid: Grid | None = None) -> Density:
    return Density(density.atoms, grid or density.grid, values)


# ------------------------------------------------------------------------- nmae
def test_nmae_simple_cases(ref):
    assert nmae(ref, ref) == 0.0
    assert nmae(like(ref, np.zeros(ref.grid.shape)), ref) == pytest.approx(1.0)
    assert nmae(like(ref, 2 * ref.values), ref) == pytest.approx(1.0)
    assert nmae(like(ref, 1.01 * ref.values), ref) == pytest.approx(0.01)
    shifted = ref.values.copy()
    shifted[0, 0, 0] += 1.0
    assert nmae(like(ref, shifted), ref) == pytest.approx(1.0 / ref.values.sum())


def test_nmae_by_distance_puts_each_error_in_its_band():
    # 1 A voxels; nuclei at (0.1, 0, 0) and (5, 5, 5): the point (0, 0, 0) is 0.1 A from the first,
    # (1, 0, 0) 0.9 A, (5, 5, 3) 2.0 A from the second, (9, 9, 9) far from both
    grid = Grid(10.0 * np.eye(3), (10, 10, 10))
    ref = np.full(grid.shape, 0.01)
    pred = ref.copy()
    pred[0, 0, 0] += 1.0
    pred[1, 0, 0] -= 0.5
    pred[5, 5, 3] += 0.25
    pred[9, 9, 9] += 2.0
    shares = nmae_by_distance(pred, ref, grid, np.array([[0.1, 0.0, 0.0], [5.0, 5.0, 5.0]]), edges=(0.5, 0.95, 3.0))
    total = np.abs(ref).sum()
    np.testing.assert_allclose(shares, np.array([1.0, 0.5, 0.25, 2.0]) / total, rtol=1e-12)
    assert shares.sum() == pytest.approx(nmae(Density(Atoms(), grid, pred), Density(Atoms(), grid, ref)))
    assert distance_bands((0.5, 0.95, 3.0)) == ["< 0.5", "0.5-0.95", "0.95-3.0", "> 3.0"]


def test_nmae_by_distance_uses_periodic_images():
    # nucleus at (0.1, 0, 0) of a 10 A cell periodic along x only: the point (9, 0, 0) is 1.1 A
    # from its image at (10.1, 0, 0), and (0, 9, 0) is 9.0 A away (y is not periodic)
    grid = Grid(10.0 * np.eye(3), (10, 10, 10), pbc=(True, False, False))
    ref = np.full(grid.shape, 0.01)
    pred = ref.copy()
    pred[9, 0, 0] += 1.0
    pred[0, 9, 0] += 2.0
    shares = nmae_by_distance(pred, ref, grid, np.array([[0.1, 0.0, 0.0]]), edges=(1.0, 1.2))
    np.testing.assert_allclose(shares, np.array([0.0, 1.0, 2.0]) / np.abs(ref).sum(), rtol=1e-12)


def test_nmae_beyond_scores_only_points_away_from_nuclei():
    # 1 A voxels, nucleus on (0.2, 0.2, 0.2) of a periodic 4 A cell: (0, 0, 0) is 0.35 A away, and so is
    # no other point; its error (a cusp) must not count, the error at (2, 2, 2) must count fully
    grid = Grid(4.0 * np.eye(3), (4, 4, 4), pbc=(True, True, True))
    ref = np.ones(grid.shape)
    pred = ref.copy()
    pred[0, 0, 0] += 10.0
    pred[2, 2, 2] += 0.63
    nucleus = np.array([[0.2, 0.2, 0.2]])
    assert nmae_beyond(pred, ref, grid, nucleus) == pytest.approx(0.63 / 63, rel=1e-12)
    # a nucleus at (3.9, 3.9, 3.9): only its periodic image at (-0.1, -0.1, -0.1) is near (0, 0, 0)
    pred[3, 3, 3] += 5.0
    corner = np.array([[3.9, 3.9, 3.9]])
    assert nmae_beyond(pred, ref, grid, corner) == pytest.approx(5.63 / 63, rel=1e-12)
    molecular = dataclasses.replace(grid, pbc=(False, False, False))
    assert nmae_beyond(pred, ref, molecular, corner) == pytest.approx(15.63 / 64, rel=1e-12)
    with pytest.raises(InvalidInputError, match="zero beyond 0.5 A"):
        nmae_beyond(pred, np.zeros(grid.shape), grid, nucleus)


def test_nmae_ignores_periodicity_flags(ref):
    periodic = dataclasses.replace(ref.grid, pbc=(True, True, True))
    assert nmae(like(ref, ref.values, periodic), ref) == 0.0


@pytest.mark.parametrize(
    "other, problem",
    [
        (Grid(np.diag([3.0, 3.5, 4.0]), (6, 7, 9)), "shape"),
        (Grid(np.diag([3.0, 3.5, 4.1]), (6, 7, 8)), "cell"),
        (Grid(np.diag([3.0, 3.5, 4.0]), (6, 7, 8), origin=[0.0, 0.0, 0.5]), "origin by up to 0.5"),
    ],
)
def test_nmae_refuses_other_grids(ref, other, problem):
    pred = Density(ref.atoms, other, np.ones(other.shape))
    with pytest.raises(InvalidInputError, match=problem) as info:
        nmae(pred, ref)
    message = str(info.value)
    assert other.describe() in message and ref.grid.describe() in message
    assert len(message.splitlines()) == 1


def test_nmae_refuses_zero_reference(ref):
    with pytest.raises(InvalidInputError, match="zero everywhere"):
        nmae(ref, like(ref, np.zeros(ref.grid.shape)))


# ------------------------------------------------------------------------- paths and folders
def write_pair(folder: Path, name: str, density: Density, fmt: str = "cube") -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.{fmt}"
    (write_cube if fmt == "cube" else write_chgcar)(path, density)
    return path


def test_score_files_across_formats(tmp_path, ref):
    """A cube prediction against a CHGCAR reference: the cube header rounding is tolerated."""
    pred = write_pair(tmp_path, "p", like(ref, 1.02 * ref.values))
    reference = write_pair(tmp_path, "r", ref, "chgcar")
    (row,) = score_paths(pred, reference)
    assert row.name == "p" and row.matched
    assert row.nmae == pytest.approx(0.02, rel=1e-4)
    assert row.nmae_far == pytest.approx(0.02, rel=1e-4)
    assert row.electrons_pred == pytest.approx(1.02 * ref.n_electrons, rel=1e-5)
    assert row.electrons_ref == pytest.approx(ref.n_electrons, rel=1e-9)


def test_folders_matched_by_stem(tmp_path, ref):
    for name, scale in [("a", 1.0), ("b", 1.1)]:
        write_pair(tmp_path / "pred", name, like(ref, scale * ref.values))
        write_pair(tmp_path / "ref", name, ref, "chgcar")
    write_pair(tmp_path / "pred", "only_pred", ref)
    write_pair(tmp_path / "ref", "only_ref", ref)
    (tmp_path / "pred" / "notes.txt").write_text("ignored")
    rows = score_paths(tmp_path / "pred", tmp_path / "ref")
    assert [r.name for r in rows] == ["a", "b", "only_pred", "only_ref"]
    assert [r.matched for r in rows] == [True, True, False, False]
    assert rows[0].nmae == pytest.approx(0.0, abs=1e-5) and rows[1].nmae == pytest.approx(0.1, rel=1e-4)
    assert rows[2] == ScoreRow("only_pred", pred=tmp_path / "pred" / "only_pred.cube")
    assert rows[3].pred is None and rows[3].nmae is None


def test_pairing_errors(tmp_path, ref):
    pred = write_pair(tmp_path / "pred", "a", ref)
    write_pair(tmp_path / "pred", "a", ref, "chgcar")
    write_pair(tmp_path / "ref", "b", ref)
    with pytest.raises(InvalidInputError, match="a.chgcar, a.cube"):
        pair_files(tmp_path / "pred", tmp_path / "ref")
    with pytest.raises(InvalidInputError, match="two files or two folders"):
        pair_files(pred, tmp_path / "ref")
    with pytest.raises(FileFormatError, match="nothing: no such file or folder"):
        pair_files(tmp_path / "nothing", tmp_path / "ref")
    (tmp_path / "pred" / "a.chgcar").unlink()
    with pytest.raises(InvalidInputError, match="no density file has a namesake"):
        pair_files(tmp_path / "pred", tmp_path / "ref")


# ------------------------------------------------------------------------- command line
def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_table_and_json(tmp_path, ref):
    write_pair(tmp_path / "pred", "a", like(ref, 1.05 * ref.values))
    write_pair(tmp_path / "pred", "extra", ref)
    write_pair(tmp_path / "ref", "a", ref)
    table = run(tmp_path / "pred", tmp_path / "ref")
    assert table.exit_code == 0, table.output
    header = table.stdout.splitlines()[0].split()
    assert header == ["name", "NMAE", "%", ">", "0.5", "A", "%", "electrons", "pred", "electrons", "ref"]
    assert "5.0000" in table.stdout and "only in PRED" in table.stdout and "mean of 1" in table.stdout
    assert "without a namesake" in table.stderr

    result = run(tmp_path / "pred", tmp_path / "ref", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [f["name"] for f in report["files"]] == ["a"]
    assert report["mean_nmae"] == pytest.approx(0.05, rel=1e-4)
    assert report["files"][0]["nmae_percent"] == pytest.approx(5.0, rel=1e-4)
    assert report["mean_nmae_far"] == pytest.approx(0.05, rel=1e-4)
    assert report["files"][0]["nmae_far_percent"] == pytest.approx(5.0, rel=1e-4)
    assert report["only_in_pred"] == [str(tmp_path / "pred" / "extra.cube")] and report["only_in_ref"] == []


@pytest.mark.parametrize("problem", ["missing", "corrupt", "grid"])
def test_cli_one_line_errors(tmp_path, ref, problem):
    pred = write_pair(tmp_path, "p", ref)
    reference = write_pair(tmp_path, "r", ref)
    if problem == "missing":
        reference = tmp_path / "gone.cube"
    elif problem == "corrupt":
        reference.write_text("not a cube file\n")
    else:
        small = Grid(ref.grid.cell, (3, 3, 3))
        write_cube(reference, Density(ref.atoms, small, np.ones(small.shape)))
    result = run(pred, reference)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {pred if problem == 'grid' else reference}")


def test_cli_traceback_shows_the_exception(tmp_path, ref):
    pred = write_pair(tmp_path, "p", ref)
    (tmp_path / "r.cube").write_text("garbage")
    result = run(pred, tmp_path / "r.cube", "--traceback")
    assert result.exit_code == 1 and isinstance(result.exception, FileFormatError)


# ------------------------------------------------------------------------- reference records
def test_npz_reference_uses_load_record(tmp_path, ref, monkeypatch):
    """The hook: REF.npz -> ase_electra.reference.load_record(REF).density_on(pred.grid)."""
    calls = []

    class Record:
        atoms = ref.atoms

        def density_on(self, grid):
            calls.append(grid)
            return ref.values

    fake = types.ModuleType("ase_electra.reference")
    fake.load_record = lambda path: calls.append(Path(path)) or Record()
    monkeypatch.setitem(sys.modules, "ase_electra.reference", fake)
    write_pair(tmp_path / "pred", "m", like(ref, 1.1 * ref.values))
    (tmp_path / "ref").mkdir()
    (tmp_path / "ref" / "m.npz").write_bytes(b"")
    result = run(tmp_path / "pred", tmp_path / "ref", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["files"][0]["nmae"] == pytest.approx(0.1, rel=1e-4)
    assert calls[0] == tmp_path / "ref" / "m.npz" and calls[1].shape == ref.grid.shape


def test_npz_reference_without_module(tmp_path, ref, monkeypatch):
    monkeypatch.setitem(sys.modules, "ase_electra.reference", None)  # import fails
    pred = write_pair(tmp_path, "m", ref)
    (tmp_path / "m.npz").write_bytes(b"")
    result = run(pred, tmp_path / "m.npz")
    assert result.exit_code == 1 and "ase-electra[reference]" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_npz_reference_real_record(tmp_path):
    """With the real ase_electra.reference: a prediction equal to the record scores 0."""
    reference = pytest.importorskip("ase_electra.reference")
    records = shared_records()
    record = reference.load_record(records[0])
    grid = Grid.for_molecule(record.positions, spacing=0.4, margin=2.0)
    pred = Density(record.atoms, grid, record.density_on(grid))
    write_cube(tmp_path / f"{records[0].stem}.cube", pred)
    result = run(tmp_path / f"{records[0].stem}.cube", records[0], "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["files"][0]["nmae"] < 1e-4  # cube rounding only


def test_score_refuses_another_structure(tmp_path, ref):
    pred = write_pair(tmp_path / "pred", "a", ref)
    other = Atoms("HF", positions=ref.atoms.positions)
    write_pair(tmp_path / "ref", "a", Density(other, ref.grid, ref.values))
    with pytest.raises(InvalidInputError, match="a.cube: another structure: H2 against HF"):
        score_paths(pred, tmp_path / "ref" / "a.cube")
    moved = ref.atoms.copy()
    moved.positions[1, 0] += 0.01
    write_pair(tmp_path / "ref", "a", Density(moved, ref.grid, ref.values))
    with pytest.raises(InvalidInputError, match="nuclei differ by up to 0.01 A"):
        score_paths(pred, tmp_path / "ref" / "a.cube")


def test_score_allows_atoms_wrapped_by_a_lattice_vector(tmp_path, ref):
    periodic = dataclasses.replace(ref.grid, pbc=(True, True, True))
    pred = write_pair(tmp_path, "p", Density(ref.atoms, periodic, ref.values), "chgcar")
    wrapped = ref.atoms.copy()
    wrapped.positions[0] += periodic.cell[2]
    reference = write_pair(tmp_path, "r", Density(wrapped, periodic, ref.values), "chgcar")
    (row,) = score_paths(pred, reference)
    assert row.nmae == pytest.approx(0.0, abs=1e-9)
