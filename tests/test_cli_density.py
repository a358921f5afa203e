"""electra-density end to end with the promolecule: naming, skipping, formats, bad input."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.io import read, write
from click.testing import CliRunner

from ase_electra import Grid
from ase_electra.cli.density import main
from ase_electra.io import read_density, read_density_frames
from ase_electra.models import load_model
from ase_electra.predict import predict_densities

FAST = ["--spacing", "0.3", "--margin", "2.0", "--model", "promolecule"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def water_xyz(tmp_path):
    path = tmp_path / "water.xyz"
    write(path, molecule("H2O"))
    return path


def assert_is_the_prediction(density, atoms, sampling="point"):
    """The file holds the promolecule's density of ``atoms`` on the file's own grid."""
    np.testing.assert_allclose(density.atoms.positions, atoms.positions, atol=1e-5)
    (expected,) = predict_densities(load_model("promolecule"), [atoms], [density.grid], sampling=sampling)
    np.testing.assert_allclose(density.values, expected.values, rtol=1e-4, atol=1e-6 * expected.values.max())


def test_single_frame_cube(tmp_path, water_xyz):
    result = run(water_xyz, "-o", tmp_path / "out", *FAST)
    assert result.exit_code == 0, result.output
    density = read_density(tmp_path / "out" / "water.cube")
    assert_is_the_prediction(density, read(water_xyz))
    np.testing.assert_allclose(density.grid.spacing, 0.3, atol=1e-6)
    assert "1 frames: 1 written" in result.output


def test_trajectory_frames_named_and_skipped_on_rerun(tmp_path):
    frames = [molecule("CH4"), molecule("CH4"), molecule("CH4")]
    for i, atoms in enumerate(frames):
        atoms.positions += 0.05 * i
    traj = tmp_path / "md.xyz"
    write(traj, frames)
    out = tmp_path / "out"
    first = run(traj, "-o", out, *FAST, "--batch-size", "2")
    assert first.exit_code == 0, first.output
    assert sorted(p.name for p in out.iterdir()) == ["md_0.cube", "md_1.cube", "md_2.cube"]
    before = (out / "md_1.cube").stat().st_mtime_ns
    again = run(traj, "-o", out, *FAST)
    assert "0 written, 3 already present" in again.output
    assert (out / "md_1.cube").stat().st_mtime_ns == before


def test_rerun_with_retrained_weights_under_the_same_name_is_refused(tmp_path):
    from ase_electra.models.electra import ElectraDensityModel, default_config

    config = default_config(elements=(1, 6), channels=8, layers=1, n_bessel=4, radial_hidden=8,
                            floating_heavy=4, floating_light=2)
    folder = tmp_path / "mymodel"
    ElectraDensityModel.new(config, seed=0).save(folder)
    write(tmp_path / "ch4.xyz", molecule("CH4"))
    args = [tmp_path / "ch4.xyz", "-o", tmp_path / "out", "--spacing", "0.4", "--margin", "2.0", "--model", folder]
    assert run(*args).exit_code == 0
    assert "0 written, 1 already present" in run(*args).output  # same weights: skipped
    ElectraDensityModel.new(config, seed=1).save(folder)  # retrained, same folder name
    again = run(*args)
    assert again.exit_code == 1 and "was made with model electra:mymodel@" in again.output
    assert "use --overwrite" in again.output


def test_index_selects_frames(tmp_path):
    traj = tmp_path / "md.xyz"
    write(traj, [molecule("H2O")] * 4)
    result = run(traj, "-o", tmp_path / "out", *FAST, "--index", "::2")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["md_0.cube", "md_2.cube"]


def test_periodic_chgcar_uses_the_cell(tmp_path):
    path = tmp_path / "POSCAR"
    write(path, bulk("Si", "diamond", a=5.43), format="vasp")
    result = run(path, "-o", tmp_path / "out", "--format", "chgcar", "--spacing", "0.25", "--model", "promolecule")
    assert result.exit_code == 0, result.output
    density = read_density(tmp_path / "out" / "POSCAR.chgcar")
    np.testing.assert_allclose(density.atoms.cell.array, read(path).cell.array, atol=1e-6)
    assert density.grid.pbc == (True, True, True)
    assert_is_the_prediction(density, read(path), sampling="voxel")  # auto: CHGCAR integrates
    assert density.n_electrons == pytest.approx(2 * 14, rel=1e-4)


def test_molecule_as_chgcar_sits_in_its_box(tmp_path, water_xyz):
    result = run(water_xyz, "-o", tmp_path / "out", *FAST, "--format", "chgcar")
    assert result.exit_code == 0, result.output
    density = read_density(tmp_path / "out" / "water.chgcar")
    box = read(water_xyz)
    box.translate(density.atoms.positions[0] - box.positions[0])
    np.testing.assert_allclose(density.grid.origin, 0)
    assert np.all(density.atoms.positions > 1.9)  # the 2 A margin now lies inside the cell
    box_grid = Grid(density.grid.cell, density.grid.shape)  # evaluated without periodic images
    (expected,) = predict_densities(load_model("promolecule"), [box], [box_grid], sampling="voxel")
    np.testing.assert_allclose(density.values, expected.values, rtol=1e-4, atol=1e-6 * expected.values.max())


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "no frames (empty file)"),
        ("3\n\nO 0 0 nan\nH 0 0 1\nH 0 1 0\n", "non-finite"),
        ("1\n\nXe 0 0 0\n", "Xe not supported"),
        ("2\n\nC 0 0 0\n", "cannot read"),
    ],
    ids=["empty", "nan", "unknown-element", "corrupt"],
)
def test_bad_input_is_refused_in_one_line_and_writes_nothing(tmp_path, content, message):
    path = tmp_path / "bad.xyz"
    path.write_text(content)
    result = run(path, "-o", tmp_path / "out", *FAST)
    assert result.exit_code == 1
    refusal, summary, error = result.output.strip().splitlines()
    assert refusal.startswith(str(path)) and message in refusal
    assert "0 written" in summary
    assert error in ("Error: 1 frame refused", "Error: 1 file unreadable")
    assert not (tmp_path / "out").exists()  # a run that writes nothing leaves no folder


def test_missing_file(tmp_path):
    result = run(tmp_path / "nope.xyz", "-o", tmp_path / "out", "--model", "promolecule")
    assert result.exit_code == 1 and "nope.xyz: no such file" in result.output
    assert result.output.strip().endswith("Error: 1 file unreadable")


def test_bad_frames_are_refused_and_the_rest_written(tmp_path):
    good = molecule("H2O")
    nan = molecule("H2O")
    nan.positions[0, 0] = np.nan
    traj, other, corrupt = tmp_path / "md.xyz", tmp_path / "other.xyz", tmp_path / "corrupt.xyz"
    write(traj, [good, good, nan, good])
    germane = Atoms("GeH4", positions=[[0, 0, 0], [0.88, 0.88, 0.88], [-0.88, -0.88, 0.88], [-0.88, 0.88, -0.88],
                                       [0.88, -0.88, -0.88]])
    write(other, [germane, good])  # Ge: the default model knows H, B, C, N, O, F, Si, P, S, Cl, Br
    corrupt.write_text("2\n\nC 0 0 0\n")
    result = run(corrupt, traj, other, "-o", tmp_path / "out", "--spacing", "0.4", "--margin", "1.5")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[0].startswith(f"{corrupt}: cannot read")
    assert lines[1].startswith(f"{traj}:2: non-finite atomic positions")
    assert lines[2].startswith(f"{other}:0: element(s) Ge not supported")
    assert lines[3].startswith("6 frames: 4 written, 0 already present, 2 refused")
    assert lines[4] == "Error: 2 frames refused, 1 file unreadable"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["md_0.cube", "md_1.cube", "md_3.cube",
                                                                   "other_1.cube"]


def test_grid_too_large(tmp_path, water_xyz):
    result = run(water_xyz, "-o", tmp_path / "out", "--spacing", "0.001", "--margin", "20", "--model", "promolecule")
    assert result.exit_code == 1 and "coarser spacing" in result.output
    assert result.output.startswith(f"{water_xyz}: grid of shape")
    assert not (tmp_path / "out").exists()


def test_single_atom(tmp_path):
    path = tmp_path / "ne.xyz"
    write(path, Atoms("Ne", positions=[[0, 0, 0]]))
    assert run(path, "-o", tmp_path / "out", *FAST).exit_code == 0


def test_default_model_is_the_shipped_one(tmp_path, water_xyz):
    result = run(water_xyz, "-o", tmp_path / "out", "--spacing", "0.3", "--margin", "2.0")
    assert result.exit_code == 0, result.output
    density = read_density(tmp_path / "out" / "water.cube")
    (expected,) = predict_densities(load_model("default"), [read(water_xyz)], [density.grid])
    np.testing.assert_allclose(density.values, expected.values, rtol=1e-4, atol=1e-6 * expected.values.max())


def test_default_model_names_elements_it_lacks(tmp_path):
    path = tmp_path / "fe.xyz"
    write(path, bulk("Co", "hcp", a=2.51, c=4.07))
    result = run(path, "-o", tmp_path / "out", "--spacing", "0.5")
    assert result.exit_code == 1
    assert f"{path}:0: element(s) Co not supported by model 'electra:default" in result.output


def test_default_model_gives_crystals_its_crystal_model(tmp_path):
    path = tmp_path / "POSCAR"
    write(path, bulk("NaCl", "rocksalt", a=5.64), format="vasp")
    result = run(path, "-o", tmp_path / "out", "--format", "chgcar", "--spacing", "0.3")
    assert result.exit_code == 0, result.output
    density = read_density(tmp_path / "out" / "POSCAR.chgcar")
    crystals = load_model("default").crystals
    (expected,) = predict_densities(crystals, [read(path)], [density.grid], sampling="voxel")
    np.testing.assert_allclose(density.values, expected.values, rtol=1e-4, atol=1e-6 * expected.values.max())


def test_default_model_converts_molecules_with_b_si_p_s_cl_br(tmp_path):
    structures = [molecule(name) for name in ("SH2", "CH3Cl", "PH3", "SiH4", "BF3", "CH3SH")]
    bromo = molecule("CH3Cl")
    bromo[1].symbol, bromo[1].position = "Br", bromo[0].position + 1.94 * (bromo[1].position - bromo[0].position) / 1.78
    path = tmp_path / "hetero.xyz"
    write(path, structures + [bromo])
    result = run(path, "-o", tmp_path / "out", "--spacing", "0.4", "--margin", "2.0", "--format", "mixtures")
    assert result.exit_code == 0, result.output
    frames = read_density_frames(tmp_path / "out" / "hetero.mixtures.h5")
    for atoms, mixture in zip(structures + [bromo], frames.mixtures):
        assert float(mixture.integral()) == pytest.approx(atoms.numbers.sum(), rel=1e-5)
