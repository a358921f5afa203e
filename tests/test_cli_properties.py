"""electra-properties end to end (extxyz round trip, resume, bad input) and electra-density --esp."""

from __future__ import annotations

import re

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.io import read, write
from ase.units import Bohr
from click.testing import CliRunner

from ase_electra.cli.density import main as density_main
from ase_electra.cli.properties import main
from ase_electra.io import read_cube
from ase_electra.models import load_model
from ase_electra.properties import (
    HARTREE_PER_VOLT,
    dipole_moment,
    electrostatic_potential,
    hirshfeld_charges,
    quadrupole_moment,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def run(command, *args):
    return CliRunner().invoke(command, [str(a) for a in args])


@pytest.fixture
def trajectory(tmp_path):
    frames = [molecule("CH3OH") for _ in range(5)]
    for i, atoms in enumerate(frames):
        atoms.positions += 0.02 * i * np.sin(np.arange(18).reshape(6, 3))
    path = tmp_path / "md.xyz"
    write(path, frames)
    return path


def test_extxyz_round_trip_matches_the_library(tmp_path, trajectory):
    out = tmp_path / "props.extxyz"
    result = run(main, trajectory, "-o", out, "--model", "promolecule", "--batch-size", "2")
    assert result.exit_code == 0, result.output
    assert "5 frames: 5 written, 0 already present" in result.output
    back = read(out, ":")
    model = load_model("promolecule")
    for i, (record, atoms) in enumerate(zip(back, read(trajectory, ":"))):
        mixture = model.predict([atoms])
        assert record.info["frame"] == i and record.info["source"] == "md.xyz"
        np.testing.assert_allclose(record.positions, atoms.positions, atol=1e-7)
        np.testing.assert_allclose(record.get_charges(), hirshfeld_charges(mixture, atoms.numbers, atoms.positions),
                                   atol=1e-7)
        np.testing.assert_allclose(record.get_dipole_moment(), dipole_moment(mixture, atoms.numbers, atoms.positions),
                                   atol=1e-7)
        np.testing.assert_allclose(record.info["quadrupole"],
                                   quadrupole_moment(mixture, atoms.numbers, atoms.positions), atol=1e-7)


def test_resume_keeps_frames_and_drops_a_cut_record(tmp_path, trajectory):
    out = tmp_path / "props.extxyz"
    assert run(main, trajectory, "-o", out, "--model", "promolecule", "--index", ":3").exit_code == 0
    first = out.read_bytes()
    out.write_bytes(first + first[: len(first) // 5])  # an interrupted append: a partial fourth record
    result = run(main, trajectory, "-o", out, "--model", "promolecule")
    assert result.exit_code == 0, result.output
    assert "5 frames: 2 written, 3 already present" in result.output
    assert out.read_bytes().startswith(first)
    assert [a.info["frame"] for a in read(out, ":")] == [0, 1, 2, 3, 4]
    again = run(main, trajectory, "-o", out, "--model", "promolecule")
    assert "0 written, 5 already present" in again.output


def test_resume_refuses_an_output_of_other_structures(tmp_path, trajectory):
    out = tmp_path / "props.extxyz"
    other = tmp_path / "other.xyz"
    write(other, molecule("H2O"))
    assert run(main, other, "-o", out, "--model", "promolecule").exit_code == 0
    result = run(main, trajectory, "-o", out, "--model", "promolecule")
    assert result.exit_code == 1
    assert "use --overwrite" in result.output and len(result.output.strip().splitlines()) == 1
    assert run(main, trajectory, "-o", out, "--model", "promolecule", "--overwrite").exit_code == 0
    assert len(read(out, ":")) == 5


def germane() -> Atoms:
    """GeH4, Ge-H 1.52 Angstrom: an element the default model lacks."""
    return Atoms("GeH4", positions=[[0, 0, 0], [0.88, 0.88, 0.88], [-0.88, -0.88, 0.88], [-0.88, 0.88, -0.88],
                                    [0.88, -0.88, -0.88]])


@pytest.mark.parametrize("case, message", [
    ("missing", "no such file"),
    ("periodic", "molecules only"),
    ("unknown", "not supported by model"),
])
def test_bad_input_is_refused_in_one_line_and_writes_nothing(tmp_path, case, message):
    path = tmp_path / "in.xyz"
    if case == "periodic":
        write(path, bulk("Si", "diamond", a=5.43), format="extxyz")
    elif case == "unknown":
        write(path, germane())
    out = tmp_path / "props.extxyz"
    result = run(main, path, "-o", out, "--model", "default")
    assert result.exit_code == 1
    refusal, summary, error = result.output.strip().splitlines()
    assert refusal.startswith(str(path)) and message in refusal.lower()
    assert "0 written" in summary
    assert error == ("Error: 1 file unreadable" if case == "missing" else "Error: 1 frame refused")
    assert not out.exists()


def test_bad_frames_are_refused_and_the_rest_written(tmp_path, trajectory):
    frames = read(trajectory, ":")
    frames[2].positions[1, 2] = np.nan
    frames[3] = germane()  # Ge: the default model knows H, B, C, N, O, F, Si, P, S, Cl, Br
    write(trajectory, frames)
    out = tmp_path / "props.extxyz"
    result = run(main, trajectory, "-o", out, "--batch-size", "5")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[0].startswith(f"{trajectory}:2: non-finite atomic positions")
    assert lines[1].startswith(f"{trajectory}:3: element(s) Ge not supported")
    assert lines[2].startswith("5 frames: 3 written, 0 already present, 2 refused")
    assert lines[3] == "Error: 2 frames refused"
    assert [a.info["frame"] for a in read(out, ":")] == [0, 1, 4]


def test_rerun_with_another_model_stops_before_writing(tmp_path, trajectory):
    out = tmp_path / "props.extxyz"
    assert run(main, trajectory, "-o", out, "--model", "promolecule", "--index", ":2").exit_code == 0
    before = out.read_bytes()
    result = run(main, trajectory, "-o", out, "--model", "default")
    assert result.exit_code == 1
    assert re.fullmatch(rf"Error: {re.escape(str(out))} was made with model promolecule, not "
                        r"electra:default@[0-9a-f]{12}: use --overwrite to replace it\n", result.output)
    assert out.read_bytes() == before
    charged = run(main, trajectory, "-o", out, "--model", "promolecule", "--charge", "1")
    assert charged.exit_code == 1 and "was made with charge none, not 1" in charged.output
    assert out.read_bytes() == before


def test_charge_is_given_to_frames_without_one(tmp_path):
    path = tmp_path / "ions.xyz"
    neutral, ion = molecule("H2O"), molecule("H2O")
    ion.info["charge"] = -1
    write(path, [neutral, ion])
    out = tmp_path / "props.extxyz"
    assert run(main, path, "-o", out, "--model", "promolecule", "--charge", "1").exit_code == 0
    back = read(out, ":")
    assert [a.info["charge"] for a in back] == [1, -1]
    for record in back:  # Hirshfeld charges sum to the total charge
        assert record.get_charges().sum() == pytest.approx(record.info["charge"], abs=1e-6)


def test_density_esp_writes_a_hartree_cube(tmp_path):
    path = tmp_path / "water.xyz"
    atoms = molecule("H2O")
    write(path, atoms)
    result = run(density_main, path, "-o", tmp_path / "out", "--model", "promolecule", "--spacing", "0.4",
                 "--margin", "2.0", "--esp", "--esp-spacing", "0.5")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["water.cube", "water_esp.cube"]
    esp = read_cube(tmp_path / "out" / "water_esp.cube")
    np.testing.assert_allclose(esp.grid.spacing, 0.5, atol=1e-6)
    hartree = esp.values.reshape(-1) * Bohr**3
    pts = esp.grid.points()
    expected = electrostatic_potential(load_model("promolecule").predict([atoms]), atoms.numbers, atoms.positions,
                                       pts) * HARTREE_PER_VOLT
    np.testing.assert_allclose(hartree, expected, rtol=1e-5, atol=1e-9)
    assert "0 written, 1 already present" in run(density_main, path, "-o", tmp_path / "out", "--model",
                                                 "promolecule", "--spacing", "0.4", "--margin", "2.0",
                                                 "--esp", "--esp-spacing", "0.5").output


def test_density_esp_of_a_crystal_and_a_slab_with_its_planar_average(tmp_path):
    from ase.build import fcc111

    from ase_electra.grid import Grid
    from ase_electra.properties import potential_on_grid

    crystal = bulk("Si", "diamond", a=5.43)
    write(tmp_path / "POSCAR", crystal, format="vasp")
    result = run(density_main, tmp_path / "POSCAR", "-o", tmp_path / "si", "--model", "promolecule", "--spacing",
                 "0.5", "--esp", "--esp-spacing", "0.4")
    assert result.exit_code == 0, result.output
    esp = read_cube(tmp_path / "si" / "POSCAR_esp.cube")
    expected = potential_on_grid(load_model("promolecule").predict([crystal]), crystal.numbers, crystal.positions,
                                 Grid.for_cell(crystal.cell.array, 0.4))
    np.testing.assert_allclose(esp.values * Bohr**3, expected * HARTREE_PER_VOLT, rtol=1e-5, atol=1e-9)

    slab = fcc111("Al", (1, 1, 3), vacuum=6.0)
    del slab.info["adsorbate_info"]  # extxyz cannot store it
    write(tmp_path / "slab.extxyz", slab)
    args = ("-o", tmp_path / "slab", "--model", "promolecule", "--spacing", "0.5", "--esp", "--esp-spacing", "0.3")
    result = run(density_main, tmp_path / "slab.extxyz", *args, "--planar-average", "z", "--fermi-level", "-4.5")
    assert result.exit_code == 0, result.output
    table = tmp_path / "slab" / "slab_esp_z.dat"
    header = [line for line in table.read_text().splitlines() if line.startswith("#")]
    levels = [float(line.split(": ")[1].split()[0]) for line in header if line.startswith("# vacuum level")]
    works = [float(line.split(": ")[1].split()[0]) for line in header if line.startswith("# work function")]
    np.testing.assert_allclose(levels, 0.0, atol=1e-4)  # neutral spherical atoms: no dipole, both levels zero
    assert len(levels) == 2 and np.allclose(works, np.array(levels) + 4.5, atol=1e-6)
    heights, volts = np.loadtxt(table, unpack=True)
    assert heights[0] == 0.0 and np.all(np.diff(heights) > 0) and -volts[0] == pytest.approx(levels[0], abs=1e-4)
    assert "vacuum level 0.000 eV, work function 4.500 eV" in result.output
    assert "0 written, 1 already present" in run(density_main, tmp_path / "slab.extxyz", *args,
                                                 "--planar-average", "z").output


@pytest.mark.parametrize("extra, message", [
    (("--planar-average", "c"), "add --esp"),
    (("--esp", "--fermi-level", "1.0"), "add --planar-average"),
    (("--esp",), "not one periodic axis (a wire)"),
])
def test_density_esp_refusals(tmp_path, extra, message):
    wire = molecule("H2")
    wire.cell, wire.pbc = [1.5, 6.0, 6.0], [True, False, False]
    wire.center()
    write(tmp_path / "wire.extxyz", wire)
    result = run(density_main, tmp_path / "wire.extxyz", "-o", tmp_path / "out", "--model", "promolecule",
                 "--spacing", "0.5", *extra)
    assert result.exit_code == 1 and message in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
