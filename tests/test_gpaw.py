"""Crystals and slabs labelled with GPAW: samples, records, ``electra-label``, scoring and training samples of them.

Tests marked ``needs_gpaw`` run GPAW at toy settings (Si at 300 eV, Al(111) slabs at 250 eV,
a few k-points, 0.2 A samples: seconds each on one core) and skip where GPAW is not
installed (``make gpaw``).
"""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
from ase import Atoms
from ase.build import add_adsorbate, bulk, fcc111, molecule
from ase.io import write
from click.testing import CliRunner

from ase_electra import Density, Grid
from ase_electra.errors import FileFormatError, InvalidInputError, MissingDependencyError
from ase_electra.io import write_density
from ase_electra.reference import PeriodicRecord, ReferenceRecord, load_record, save_record
from ase_electra.reference.gpaw import SLAB_VACUUM, check_crystal, default_ecut, kpoint_grid, label_crystal

needs_gpaw = pytest.mark.skipif(importlib.util.find_spec("gpaw") is None, reason="GPAW not installed (make gpaw)")
TOY = {"ecut": 300.0, "kpt_density": 1.2, "spacing": 0.2}
TOY_CLI = ["--ecut", "300", "--kpt-density", "1.2", "--spacing", "0.2"]
SLAB_TOY = {"ecut": 250.0, "kpt_density": 1.2, "spacing": 0.2}


def silicon() -> Atoms:
    """Diamond Si, moved so that no nucleus sits within 0.01 A of a 0.2 A grid point."""
    atoms = bulk("Si", "diamond", 5.43)
    atoms.positions += [0.037, 0.061, 0.083]
    return atoms


def label(*args) -> object:
    from ase_electra.cli.label import main

    return CliRunner().invoke(main, [str(a) for a in args])


def al_slab() -> Atoms:
    """Al(111), 1x1, two layers, 6 A of vacuum on each side along c; nuclei moved off the 0.2 A grid points in plane."""
    atoms = fcc111("Al", (1, 1, 2), vacuum=6.0)
    atoms.positions += [0.037, 0.061, 0.0]
    return atoms


@pytest.fixture(scope="module")
def si() -> PeriodicRecord:
    pytest.importorskip("gpaw", reason="GPAW not installed (make gpaw)")
    return label_crystal(silicon(), **TOY, name="si")


@pytest.fixture(scope="module")
def slab_record() -> PeriodicRecord:
    pytest.importorskip("gpaw", reason="GPAW not installed (make gpaw)")
    return label_crystal(al_slab(), **SLAB_TOY, name="al111")


# ------------------------------------------------------------------------------ settings
def test_kpoint_grid_is_four_per_inverse_angstrom():
    cell = np.diag([2.0, 4.0, 40.0])  # |b| = 0.5, 0.25, 0.025 per Angstrom
    assert kpoint_grid(cell) == (13, 7, 1)  # ceil(2 pi |b| 4)
    assert kpoint_grid(bulk("Si", "diamond", 5.43).cell) == (9, 9, 9)
    assert kpoint_grid(bulk("Al", "fcc", 4.05).cell, 2.0) == (6, 6, 6)


def test_cutoff_rises_with_fluorine():
    assert default_ecut(bulk("LiF", "rocksalt", 4.03).numbers) == 1200.0
    assert default_ecut(bulk("NaCl", "rocksalt", 5.64).numbers) == 800.0


# ------------------------------------------------------------------------- samples
@needs_gpaw
def test_samples_plus_missing_charge_are_gpaws_all_electron_density():
    """On GPAW's own grids, samples plus the missing charge at the nearest point equal GPAW's density."""
    from gpaw import GPAW, PW

    from ase_electra.reference.gpaw import _all_electron_samples

    atoms = silicon()
    atoms.calc = GPAW(mode=PW(250), xc="PBE", kpts={"size": (2, 2, 2), "gamma": True}, txt=None)
    atoms.get_potential_energy()
    for refinement in (1, 2):
        gpaw = atoms.calc.get_all_electron_density(gridrefinement=refinement)  # e/A^3, GPAW's grid
        samples, missing = _all_electron_samples(atoms.calc, gpaw.shape)
        volume = atoms.cell.volume / samples.size
        nearest = np.round(atoms.cell.scaled_positions(atoms.positions) * gpaw.shape).astype(int) % gpaw.shape
        for point, charge in zip(nearest, missing):
            samples[tuple(point)] += charge / volume
        assert np.abs(samples - gpaw).max() < 1e-6 * gpaw.max()


@needs_gpaw
def test_gpaw_runs_where_symmetric_and_samples_where_given(si):
    """GPAW runs Si with an atom at the origin; a structure moved by one voxel gives the same samples, rolled."""
    from ase_electra.reference.gpaw import _symmetric_shift

    atoms = silicon()
    np.testing.assert_allclose(_symmetric_shift(atoms), -atoms.positions[0])
    atoms.positions += atoms.cell[0] / si.density.shape[0]  # one sample spacing along a
    moved = label_crystal(atoms, **TOY)
    np.testing.assert_allclose(moved.density, np.roll(si.density, 1, axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(moved.missing_charge, si.missing_charge, atol=1e-6)
    assert moved.energy == pytest.approx(si.energy, abs=1e-8)


@needs_gpaw
def test_grid_sum_plus_missing_charge_is_the_electron_count(si):
    grid = si.grid
    samples = si.density.astype(np.float64).sum() * grid.voxel_volume
    assert samples + si.missing_charge.sum() == pytest.approx(28.0, abs=1e-4)
    assert abs(samples - 28.0) > 0.5  # a 0.2 A grid misses the cusps: the samples alone are not the count
    assert grid.shape == Grid.for_cell(silicon().cell, 0.2).shape and si.density.dtype == np.float32


@needs_gpaw
def test_record_holds_the_settings(si):
    assert si.kpts.tolist() == list(kpoint_grid(silicon().cell, 1.2)) == [3, 3, 3]
    assert (si.ecut, si.smearing, si.spacing, si.xc, si.charge) == (300.0, 0.1, 0.2, "pbe", 0)
    assert si.code.startswith("gpaw 26.7") and not si.spin_polarized
    assert si.scf_cycles > 0 and si.scf_seconds > 0 and si.n_electrons == 28
    atoms = si.atoms
    assert atoms.pbc.all() and np.allclose(atoms.cell, silicon().cell) and atoms.info["name"] == "si"


@needs_gpaw
def test_record_round_trips(tmp_path, si):
    back = load_record(save_record(tmp_path / "si.npz", si))
    assert isinstance(back, PeriodicRecord)
    np.testing.assert_array_equal(back.density, si.density)
    np.testing.assert_array_equal(back.missing_charge, si.missing_charge)
    np.testing.assert_array_equal(back.kpts, si.kpts)
    assert (back.energy, back.code, back.name, back.scf_cycles) == (si.energy, si.code, si.name, si.scf_cycles)


@needs_gpaw
def test_record_values_only_on_their_own_grid(si):
    np.testing.assert_array_equal(si.density_on(Grid.for_cell(silicon().cell, 0.2)), si.density)
    with pytest.raises(InvalidInputError, match="on its cell grid"):
        si.density_on(Grid.for_cell(silicon().cell, 0.1))


# ------------------------------------------------------------------- scoring, datasets
def score(pred, ref) -> dict:
    """``electra-score --json`` of two paths: the one row's entry."""
    import json

    from ase_electra.cli.score import main

    result = CliRunner().invoke(main, [str(pred), str(ref), "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["files"]
    return row


@needs_gpaw
def test_electra_score_against_a_periodic_record(tmp_path, si):
    from ase_electra.cli.density import main as density
    from ase_electra.cli.score import main as score_main

    ref = save_record(tmp_path / "si.npz", si)
    write_density(tmp_path / "si.cube", Density(si.atoms, si.grid, si.density.astype(np.float64)))
    exact = score(tmp_path / "si.cube", ref)
    assert exact["nmae"] < 1e-4 and exact["nmae_far"] < 1e-4  # the cube file rounds to 5 digits
    write(tmp_path / "si.traj", si.atoms)
    for spacing in ("0.2", "0.3"):
        made = CliRunner().invoke(density, [str(tmp_path / "si.traj"), "-o", str(tmp_path / spacing), "--model",
                                            "promolecule", "--spacing", spacing, "--format", "chgcar"])
        assert made.exit_code == 0, made.output
    (promolecule,) = (tmp_path / "0.2").iterdir()
    row = score(promolecule, ref)
    assert 0.01 < row["nmae"] < 0.5 and row["electrons_ref"] == pytest.approx(si.density.sum() * si.grid.voxel_volume)
    (coarse,) = (tmp_path / "0.3").iterdir()
    refused = CliRunner().invoke(score_main, [str(coarse), str(ref)])
    assert refused.exit_code == 1 and "on its cell grid" in refused.output and refused.output.count("\n") == 1


@needs_gpaw
def test_training_samples_of_periodic_records(tmp_path, si):
    from ase_electra.datasets import GridCache, find_samples

    save_record(tmp_path / "si.npz", si)
    (sample,) = find_samples(tmp_path, spacing=0.1)  # the samples' own grid, whatever spacing is asked
    assert sample.grid.same_as(si.grid) and sample.atoms.pbc.all() and sample.reference_dipole is None
    np.testing.assert_array_equal(GridCache(tmp_path / "cache").values(sample), si.density)


# ------------------------------------------------------------------------------- CLI
@needs_gpaw
def test_cli_labels_crystals_with_gpaw_and_molecules_with_pyscf(tmp_path):
    pytest.importorskip("pyscf")
    write(tmp_path / "si.traj", silicon())
    write(tmp_path / "h2.xyz", molecule("H2"))
    result = label(tmp_path / "si.traj", tmp_path / "h2.xyz", "-o", tmp_path / "out", "--basis", "sto-3g", *TOY_CLI)
    assert result.exit_code == 0, result.output
    assert "2 frames: 2 labelled" in result.stdout
    crystal, h2 = load_record(tmp_path / "out" / "si.npz"), load_record(tmp_path / "out" / "h2.npz")
    assert isinstance(crystal, PeriodicRecord) and crystal.code.startswith("gpaw") and crystal.source == "si.traj"
    assert isinstance(h2, ReferenceRecord) and h2.basis == "sto-3g"
    again = label(tmp_path / "si.traj", tmp_path / "h2.xyz", "-o", tmp_path / "out", *TOY_CLI)
    assert again.exit_code == 0 and "0 labelled, 2 already present" in again.stdout


def wire() -> Atoms:
    atoms = silicon()
    atoms.pbc = (True, False, False)
    return atoms


@pytest.mark.parametrize(
    "atoms, args, message",
    [
        (wire, [], "a wire (periodic along one axis)"),
        (lambda: fcc111("Al", (1, 1, 2), vacuum=2.0), [], "4 A are needed on each side"),
        (lambda: bulk("Tc", "hcp", 2.74, 4.40), [], "Tc: GPAW has no PBE PAW dataset"),
        (silicon, ["--xc", "lda"], "crystals are labelled with PBE only"),
    ],
    ids=["wire", "thin-vacuum", "no-paw-dataset", "not-pbe"],
)
def test_cli_one_line_errors_before_any_scf(tmp_path, atoms, args, message):
    if message.startswith("Tc") and importlib.util.find_spec("gpaw") is None:
        pytest.skip("GPAW not installed (make gpaw)")
    write(tmp_path / "s.traj", [molecule("H2"), atoms()])
    result = label(tmp_path / "s.traj", "-o", tmp_path / "out", *args)
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {tmp_path / 's.traj'}:1: ") and message in result.output
    assert result.output.count("\n") == 1 and not (tmp_path / "out").exists()


def test_cli_without_gpaw_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "gpaw", None)  # import gpaw fails
    monkeypatch.setitem(sys.modules, "gpaw.setup_data", None)
    write(tmp_path / "si.traj", silicon())
    result = label(tmp_path / "si.traj", "-o", tmp_path / "out")
    assert result.exit_code == 1 and "make gpaw" in result.output and result.output.count("\n") == 1
    with pytest.raises(MissingDependencyError):
        label_crystal(silicon())


def test_crystal_checks():
    assert check_crystal(bulk("Al", "fcc", 4.05)) == 13  # odd counts are fine: smeared occupations
    with pytest.raises(InvalidInputError, match="0 electrons"):
        check_crystal(bulk("Li", "bcc", 3.5), charge=3)


def test_corrupt_periodic_record_is_one_line(tmp_path):
    fields = {"numbers": np.array([14, 14], np.int16), "positions": silicon().positions, "cell": silicon().cell[:],
              "pbc": np.ones(3, bool), "density": np.zeros((5, 5, 5), np.float32), "missing_charge": np.zeros(2),
              "spacing": 0.2, "xc": "pbe", "code": "gpaw 26.7.0", "ecut": 300.0, "kpts": np.array([3, 3, 3]),
              "smearing": 0.1, "spin_polarized": False, "charge": 0, "energy": -0.4, "source": "", "name": "si"}
    np.savez(tmp_path / "si.npz", **fields)
    with pytest.raises(FileFormatError, match=r"si.npz: density: expected finite values of shape \(20, 20, 20\)"):
        load_record(tmp_path / "si.npz")
    np.savez(tmp_path / "gap.npz", **(fields | {"pbc": np.array([True, False, True])}))
    with pytest.raises(FileFormatError, match=r"gap.npz: pbc: expected \[True, True, True\] \(a crystal\) or"):
        load_record(tmp_path / "gap.npz")


def test_periodic_record_without_pbc_is_a_crystal(tmp_path):
    """Files written before slabs were labelled hold no ``pbc`` key: they load periodic along a, b and c."""
    fields = {"numbers": np.array([13], np.int16), "positions": np.zeros((1, 3)), "cell": np.eye(3),
              "density": np.zeros((5, 5, 5), np.float32), "missing_charge": np.zeros(1), "spacing": 0.2,
              "xc": "pbe", "code": "gpaw 26.7.0", "ecut": 300.0, "kpts": np.array([3, 3, 3]), "smearing": 0.1,
              "spin_polarized": False, "charge": 0, "energy": -0.1, "source": "", "name": "al"}
    np.savez(tmp_path / "al.npz", **fields)
    record = load_record(tmp_path / "al.npz")
    assert record.pbc == (True, True, True) and record.grid.pbc == (True, True, True) and record.atoms.pbc.all()


# -------------------------------------------------------------------------------- slabs
def test_slab_checks_accept_vacuum_along_c():
    assert check_crystal(al_slab()) == 26
    assert check_crystal(fcc111("Al", (1, 1, 3), vacuum=SLAB_VACUUM)) == 39  # exactly 4 A on each side


def off_centre() -> Atoms:
    atoms = al_slab()
    atoms.positions[:, 2] -= 3.0  # 3 A below, 9 A above: 12 A in all, but the bottom face cuts the density
    return atoms


def sheared() -> Atoms:
    atoms = al_slab()
    atoms.cell[2] += [0.1, 0.0, 0.0]
    return atoms


def vacuum_along_a() -> Atoms:
    atoms = fcc111("Al", (1, 1, 2), vacuum=6.0)
    atoms.cell, atoms.positions = atoms.cell[[2, 0, 1]], atoms.positions[:, [2, 0, 1]]  # c -> a: same structure
    atoms.pbc = (False, True, True)
    return atoms


@pytest.mark.parametrize(
    "atoms, message",
    [
        (wire, "pbc=[True, False, False]: a wire (periodic along one axis); GPAW labels crystals"),
        (vacuum_along_a, "a slab with its vacuum along a; put the vacuum along c"),
        (lambda: fcc111("Al", (1, 1, 2), vacuum=3.0),
         "slab: 3.00 A of vacuum below the atoms along c and 3.00 A above (6.00 A in all); 4 A are needed on each "
         "side (8 A in all)"),
        (off_centre, "3.00 A of vacuum below the atoms along c and 9.00 A above (12.00 A in all)"),
        (sheared, "slab: c is not orthogonal to a and b"),
    ],
    ids=["wire", "vacuum-along-a", "thin-vacuum", "off-centre", "sheared"],
)
def test_slab_checks_refuse_in_one_line(atoms, message):
    with pytest.raises(InvalidInputError) as err:
        check_crystal(atoms())
    assert message in str(err.value) and "\n" not in str(err.value)


@needs_gpaw
def test_slab_record_round_trips_with_its_pbc(tmp_path, slab_record):
    assert slab_record.pbc == (True, True, False) and slab_record.kpts.tolist() == [4, 4, 1]  # 1 k-point along c
    assert slab_record.grid.same_as(Grid.for_atoms(al_slab(), 0.2))  # the calculator's grid: the cell, pbc in plane
    back = load_record(save_record(tmp_path / "al111.npz", slab_record))
    assert back.pbc == (True, True, False) and back.grid.pbc == (True, True, False)
    assert back.atoms.pbc.tolist() == [True, True, False]
    np.testing.assert_array_equal(back.density, slab_record.density)
    np.testing.assert_array_equal(back.positions, al_slab().positions)  # as given: GPAW's shift is not kept


@needs_gpaw
def test_slab_samples_integrate_to_the_electron_count(slab_record):
    samples = slab_record.density.astype(np.float64).sum() * slab_record.grid.voxel_volume
    assert samples + slab_record.missing_charge.sum() == pytest.approx(26.0, rel=5e-3)


@needs_gpaw
def test_slab_density_vanishes_in_the_middle_of_the_vacuum(slab_record):
    planes = slab_record.density.astype(np.float64).mean(axis=(0, 1))  # (nz,) e/A^3, plane averages along c
    assert planes.max() > 0.1 and abs(planes[0]) < 1e-4  # point 0 is 6 A from either surface
    assert np.abs(slab_record.density[:, :, 0]).max() < 1e-3  # 250 eV: plane-wave ringing only


@needs_gpaw
def test_slab_shift_stays_in_plane_and_dipole_layer_follows_c():
    """An asymmetric slab (H on top) gives the same samples however its cell is rotated: GPAW's dipole layer
    takes the slab's normal as z, so GPAW gets the slab with c along z."""
    from ase_electra.reference.gpaw import _symmetric_shift

    atoms = fcc111("Al", (1, 1, 2), vacuum=5.0)
    add_adsorbate(atoms, "H", 1.6, "ontop")
    atoms.center(vacuum=5.0, axis=2)
    atoms.positions += [0.037, 0.061, 0.0]
    assert _symmetric_shift(atoms)[2] == 0.0 and np.abs(_symmetric_shift(atoms)).max() > 0
    record = label_crystal(atoms, **SLAB_TOY)
    atoms.rotate(37, (1, 2, 3), rotate_cell=True)
    rotated = label_crystal(atoms, **SLAB_TOY)
    np.testing.assert_allclose(rotated.density, record.density, atol=1e-6)
    assert rotated.energy == pytest.approx(record.energy, abs=1e-8)


@needs_gpaw
def test_training_samples_and_scores_of_a_slab_record(tmp_path, slab_record):
    from ase_electra.cli.density import main as density
    from ase_electra.datasets import GridCache, find_samples

    (tmp_path / "records").mkdir()
    ref = save_record(tmp_path / "records" / "al111.npz", slab_record)
    (sample,) = find_samples(tmp_path / "records", spacing=0.1)
    assert sample.grid.same_as(slab_record.grid) and sample.atoms.pbc.tolist() == [True, True, False]
    np.testing.assert_array_equal(GridCache(tmp_path / "cache").values(sample), slab_record.density)
    write(tmp_path / "al111.traj", al_slab())
    made = CliRunner().invoke(density, [str(tmp_path / "al111.traj"), "-o", str(tmp_path / "pred"), "--model",
                                        "promolecule", "--spacing", "0.2", "--format", "chgcar"])
    assert made.exit_code == 0, made.output
    (promolecule,) = (tmp_path / "pred").iterdir()
    row = score(promolecule, ref)
    assert 0.01 < row["nmae"] < 0.5 and row["electrons_ref"] == pytest.approx(26.0, rel=0.05)
