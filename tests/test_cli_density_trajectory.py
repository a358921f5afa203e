"""electra-density on trajectories: one grid per file, sorted names, gzip and HDF5 output, reruns, --charge."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule
from ase.io import write
from click.testing import CliRunner

from ase_electra import Grid
from ase_electra.cli.density import main
from ase_electra.cli.score import main as score_main
from ase_electra.evaluate import evaluate_points
from ase_electra.io import read_density, read_density_frames, read_settings
from ase_electra.models import load_model
from ase_electra.predict import predict_densities

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = ["--spacing", "0.4", "--margin", "1.5", "--model", "promolecule"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def drifting(tmp_path):
    """Eleven frames of methanol drifting 0.3 A per frame along x: boxes of their own would differ."""
    frames = [molecule("CH3OH") for _ in range(11)]
    for i, atoms in enumerate(frames):
        atoms.positions += [0.3 * i, 0.02 * i, 0.0]
    path = tmp_path / "md.xyz"
    write(path, frames)
    return path, frames


def test_frames_share_one_box_and_names_sort_in_frame_order(tmp_path, drifting):
    path, frames = drifting
    out = tmp_path / "out"
    result = run(path, "-o", out, *FAST, "--index", "::2")
    assert result.exit_code == 0, result.output
    names = [p.name for p in sorted(out.iterdir())]
    assert names == ["md_00.cube", "md_02.cube", "md_04.cube", "md_06.cube", "md_08.cube", "md_10.cube"]
    expected = Grid.for_molecule(np.concatenate([a.positions for a in frames[::2]]), 0.4, 1.5)
    densities = [read_density(out / name) for name in names]
    for density, atoms in zip(densities, frames[::2]):
        assert density.grid.shape == expected.shape
        np.testing.assert_allclose(density.grid.origin, expected.origin, atol=1e-5)
        (reference,) = predict_densities(load_model("promolecule"), [atoms], [density.grid])
        np.testing.assert_allclose(density.values, reference.values, rtol=1e-4, atol=1e-6 * reference.values.max())
    change = densities[1].values - densities[0].values  # same grid: the frames can be differenced
    assert np.abs(change).sum() > 0.01 * np.abs(densities[0].values).sum()
    scored = CliRunner().invoke(score_main, [str(out / names[0]), str(out / names[1])])
    assert scored.exit_code == 1  # ...but a frame is no reference for another structure
    assert "another structure" in scored.output and "grid" not in scored.output


def test_fixed_box_refuses_frames_outside_it(tmp_path, drifting):
    path, frames = drifting
    out = tmp_path / "out"
    result = run(path, "-o", out, "--model", "promolecule", "--spacing", "0.4", "--box", "4", "7", "8")
    assert result.exit_code == 1
    everything = np.concatenate([a.positions for a in frames])
    centre = 0.5 * (everything.min(0) + everything.max(0))
    expected = Grid.for_molecule(np.stack([centre - [2, 3.5, 4], centre + [2, 3.5, 4]]), 0.4, 0.0)
    inside = [i for i, a in enumerate(frames)
              if np.all(np.abs(a.positions - expected.origin - 0.2 * (np.array(expected.shape) - 1))
                        <= 0.2 * (np.array(expected.shape) - 1) + 1e-9)]
    assert 0 < len(inside) < len(frames)
    lines = result.output.strip().splitlines()
    assert lines[:-2] == [f"{path}:{i}: atoms outside the 4 x 7 x 8 A box"
                          for i in range(len(frames)) if i not in inside]
    assert lines[-1] == f"Error: {len(frames) - len(inside)} frames refused"
    assert sorted(p.name for p in out.iterdir()) == [f"md_{i:02d}.cube" for i in inside]
    density = read_density(out / f"md_{inside[0]:02d}.cube")
    assert density.grid.shape == expected.shape
    np.testing.assert_allclose(density.grid.origin, expected.origin, atol=1e-5)


def test_periodic_frames_keep_their_cells_with_one_shape(tmp_path):
    small, large = bulk("Si", "diamond", a=5.43), bulk("Si", "diamond", a=5.60)
    path = tmp_path / "npt.extxyz"
    write(path, [small, large])
    result = run(path, "-o", tmp_path / "out", "--model", "promolecule", "--spacing", "0.5", "--format", "chgcar")
    assert result.exit_code == 0, result.output
    a, b = (read_density(tmp_path / "out" / f"npt_{i}.chgcar") for i in (0, 1))
    assert a.grid.shape == b.grid.shape == Grid.for_cell(large.cell.array, 0.5).shape
    np.testing.assert_allclose(a.grid.cell, small.cell.array, atol=1e-6)
    np.testing.assert_allclose(b.grid.cell, large.cell.array, atol=1e-6)


def test_compressed_cubes_read_back_and_score(tmp_path, drifting):
    path, _ = drifting
    plain = run(path, "-o", tmp_path / "plain", *FAST, "--index", ":2")
    packed = run(path, "-o", tmp_path / "packed", *FAST, "--index", ":2", "--compress")
    assert plain.exit_code == 0 and packed.exit_code == 0, packed.output
    assert sorted(p.name for p in (tmp_path / "packed").iterdir()) == ["md_00.cube.gz", "md_01.cube.gz"]
    gz, text = tmp_path / "packed" / "md_01.cube.gz", tmp_path / "plain" / "md_01.cube"
    assert gz.stat().st_size < text.stat().st_size / 3
    np.testing.assert_array_equal(read_density(gz).values, read_density(text).values)
    assert read_settings(gz) == read_settings(text)
    scored = CliRunner().invoke(score_main, [str(tmp_path / "packed"), str(tmp_path / "plain"), "--json"])
    assert scored.exit_code == 0, scored.output
    assert '"mean_nmae": 0.0' in scored.output and scored.output.count('"name"') == 2  # md_00, md_01 paired


@pytest.mark.parametrize("compress", [False, True])
def test_h5_holds_every_frame_grid_and_mixture(tmp_path, drifting, compress):
    path, frames = drifting
    out = tmp_path / "out"
    result = run(path, "-o", out, *FAST, "--format", "h5", "--batch-size", "4", *(["--compress"] if compress else []))
    assert result.exit_code == 0, result.output
    assert [p.name for p in out.iterdir()] == ["md.h5"]
    stored = read_density_frames(out / "md.h5")
    assert len(stored) == 11 and stored.frames.tolist() == list(range(11)) and stored.source == "md.xyz"
    assert stored.values.dtype == np.float32 and stored.values.shape == (11, *stored.grids[0].shape)
    assert all(g.same_as(stored.grids[0]) for g in stored.grids)  # one box for the whole file
    assert stored.settings.format == "h5" and stored.settings.spacing == 0.4 and stored.settings.frames == "0:11:1"
    model = load_model("promolecule")
    for i in (0, 7):
        np.testing.assert_allclose(stored.atoms[i].positions, frames[i].positions, atol=1e-12)
        (reference,) = predict_densities(model, [frames[i]], [stored.grids[i]])
        np.testing.assert_allclose(stored.density(i).values, reference.values, rtol=1e-6,
                                   atol=1e-7 * reference.values.max())
        expected = model.predict([frames[i]])
        torch.testing.assert_close(stored.mixtures[i].weights, expected.weights.double())
        points = stored.grids[i].points(0, 500)
        np.testing.assert_allclose(evaluate_points(stored.mixtures[i], points).numpy(),
                                   reference.values.reshape(-1)[:500], rtol=1e-9, atol=1e-12)


def test_mixtures_file_has_no_grid(tmp_path, drifting):
    path, frames = drifting
    result = run(path, "-o", tmp_path / "out", "--model", "promolecule", "--format", "mixtures", "--index", "-3:")
    assert result.exit_code == 0, result.output
    stored = read_density_frames(tmp_path / "out" / "md.mixtures.h5")
    assert stored.grids is None and stored.values is None and stored.frames.tolist() == [8, 9, 10]
    assert stored.settings.spacing is None and stored.settings.frames == "8:11:1"
    for mixture, atoms in zip(stored.mixtures, frames[8:]):
        assert float(mixture.weights.sum()) == pytest.approx(atoms.numbers.sum(), rel=1e-12)
    with pytest.raises(OSError, match="no grid values"):
        stored.density(0)


def test_rerun_with_other_settings_stops_before_writing(tmp_path, drifting):
    path, _ = drifting
    out = tmp_path / "out"
    assert run(path, "-o", out, *FAST, "--index", ":3").exit_code == 0
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    same = run(path, "-o", out, *FAST, "--index", ":4")
    assert same.exit_code == 0 and "1 written, 3 already present" in same.output
    finer = run(path, "-o", out, *FAST, "--spacing", "0.3")
    assert finer.exit_code == 1
    assert finer.output == (f"Error: {out / 'md_00.cube'} was made with spacing 0.4, not 0.3: "
                            "use --overwrite to replace it\n")
    other = run(path, "-o", out, "--spacing", "0.4", "--margin", "1.5")
    assert other.exit_code == 1 and "was made with model promolecule, not electra:default" in other.output
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name in stamps} == stamps
    assert len(list(out.iterdir())) == 4
    replaced = run(path, "-o", out, *FAST, "--spacing", "0.3", "--index", ":2", "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert read_settings(out / "md_00.cube").spacing == 0.3


def test_rerun_of_an_h5_file_checks_its_frames(tmp_path, drifting):
    path, _ = drifting
    out = tmp_path / "out"
    assert run(path, "-o", out, *FAST, "--format", "h5", "--index", ":4").exit_code == 0
    again = run(path, "-o", out, *FAST, "--format", "h5", "--index", ":4")
    assert again.exit_code == 0 and "0 written, 4 already present" in again.output
    more = run(path, "-o", out, *FAST, "--format", "h5")
    assert more.exit_code == 1 and "was made with frames 0:4:1, not 0:11:1" in more.output


def test_charge_and_voxel_sampling_integrate_to_the_electron_count(tmp_path):
    path = tmp_path / "ions.xyz"
    neutral, anion = molecule("H2O"), molecule("H2O")
    anion.info["charge"] = -1
    write(path, [neutral, anion])
    out = tmp_path / "out"
    wide = ["--spacing", "0.3", "--margin", "3.5", "--model", "promolecule"]  # the box holds all but 1e-4 e
    result = run(path, "-o", out, *wide, "--charge", "1", "--sampling", "voxel")
    assert result.exit_code == 0, result.output
    counts = [read_density(out / f"ions_{i}.cube").n_electrons for i in (0, 1)]
    assert counts == pytest.approx([9.0, 11.0], rel=1e-4)  # charge +1 given, -1 kept
    worst = float(result.output.split("worst ")[1].split(" %")[0])
    assert abs(worst) < 1e-2  # the summary's grid-sum check, percent
    point = run(path, "-o", tmp_path / "point", *wide, "--charge", "1")
    assert abs(float(point.output.split("worst ")[1].split(" %")[0])) > 1.0  # point sampling at 0.3 A misses cores


def test_no_folder_for_a_run_that_writes_nothing_and_per_frame_extras_need_per_frame_files(tmp_path, drifting):
    path, _ = drifting
    result = run(path, "-o", tmp_path / "out", *FAST, "--format", "h5", "--png")
    assert result.exit_code == 1 and "--png and --esp write files per frame" in result.output
    assert not (tmp_path / "out").exists()
