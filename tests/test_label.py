"""Labelling with PySCF (tiny molecules, STO-3G) and ``electra-label`` end to end."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import fcc111, molecule
from ase.io import write
from click.testing import CliRunner

pytest.importorskip("pyscf")

from ase_electra.cli.label import main  # noqa: E402
from ase_electra.errors import InvalidInputError  # noqa: E402
from ase_electra.reference import (  # noqa: E402
    BOHR,
    ReferenceRecord,
    SCFNotConvergedError,
    check_structure,
    label_structure,
    load_record,
    save_record,
)
from ase_electra.reference import label as label_module  # noqa: E402

FAST = ["--basis", "sto-3g"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def h2(stretch: float = 1.0) -> Atoms:
    atoms = molecule("H2")
    atoms.positions *= stretch
    return atoms


@pytest.fixture(scope="module")
def water():
    return label_structure(molecule("H2O"), basis="sto-3g")


# --------------------------------------------------------------------------- library
def test_energy_matches_direct_pyscf(water):
    from pyscf import dft, gto

    atoms = molecule("H2O")
    mol = gto.M(atom=[(int(z), p) for z, p in zip(atoms.numbers, atoms.positions)], basis="sto-3g",
                unit="Angstrom", verbose=0)
    mf = dft.RKS(mol, xc="pbe").density_fit()
    mf.conv_tol = 1e-9
    assert water.energy == pytest.approx(mf.kernel(), abs=1e-7)
    assert (water.basis, water.xc, water.name, water.source) == ("sto-3g", "pbe", "H2O", "ase-electra")
    assert water.n_electrons == 10 and water.mo_coeff_occ.shape == (mol.nao, 5)
    assert water.scf_cycles > 0 and water.scf_seconds > 0


def test_grid_level_is_pyscfs_and_recorded(tmp_path, water):
    from pyscf import dft, gto

    atoms = molecule("H2O")
    coarse = label_structure(atoms, basis="sto-3g", grid_level=1, conv_tol=1e-8)
    mol = gto.M(atom=[(int(z), p) for z, p in zip(atoms.numbers, atoms.positions)], basis="sto-3g",
                unit="Angstrom", verbose=0)
    mf = dft.RKS(mol, xc="pbe").density_fit()
    mf.conv_tol, mf.grids.level = 1e-8, 1
    assert coarse.energy == pytest.approx(mf.kernel(), abs=1e-7)
    assert abs(coarse.energy - water.energy) > 1e-6  # level 1 is not the default level 3
    back = load_record(save_record(tmp_path / "coarse.npz", coarse))
    assert (back.grid_level, back.conv_tol) == (1, 1e-8) and (water.grid_level, water.conv_tol) == (3, 1e-9)


def test_labelled_density_integrates_to_electron_count(water):
    from pyscf.dft import gen_grid

    grids = gen_grid.Grids(water.mole())
    grids.build()
    assert grids.weights @ water.density_at(grids.coords * BOHR) * BOHR**3 == pytest.approx(10, rel=1e-5)


def test_record_round_trips(tmp_path, water):
    back = load_record(save_record(tmp_path / "water.npz", water))
    assert back.energy == water.energy and back.scf_cycles == water.scf_cycles
    np.testing.assert_array_equal(back.mo_coeff_occ, water.mo_coeff_occ)
    np.testing.assert_array_equal(back.positions, molecule("H2O").positions)


@pytest.mark.parametrize(
    "atoms, kwargs, message",
    [
        (molecule("OH"), {}, "9 electrons"),
        (molecule("H2O"), {"charge": 1}, "9 electrons"),
        (Atoms("H2", [[0, 0, 0], [0, 0, 0.74]], cell=[5, 5, 5], pbc=True), {}, "periodic"),
        (Atoms("I2", [[0, 0, 0], [0, 0, 2.7]]), {"basis": "def2-svp"}, "effective core potential"),
        (molecule("H2O"), {"basis": "no-such-basis"}, "unknown"),
        (molecule("H2O"), {"xc": "no-such-functional"}, "unknown functional"),
    ],
    ids=["odd", "odd-cation", "periodic", "ecp", "basis", "xc"],
)
def test_unlabellable_structures_refused_before_scf(atoms, kwargs, message):
    with pytest.raises(InvalidInputError, match=message) as err:
        label_structure(atoms, **kwargs)
    assert "\n" not in str(err.value)


def test_charged_even_structure_accepted():
    assert check_structure(molecule("OH"), charge=-1) == 10


def test_slabs_are_crystals_and_wires_are_refused():
    """Periodic along a and b with vacuum along c: a slab, for GPAW (odd counts are fine); a wire: refused."""
    assert check_structure(fcc111("Al", (1, 1, 3), vacuum=6.0)) == 39
    wire = fcc111("Al", (1, 1, 3), vacuum=6.0)
    wire.pbc = (True, False, False)
    with pytest.raises(InvalidInputError, match=r"a wire \(periodic along one axis\)") as err:
        check_structure(wire)
    assert "\n" not in str(err.value)


def test_not_converged():
    with pytest.raises(SCFNotConvergedError, match="not converged"):
        label_structure(h2(), basis="sto-3g", max_cycle=1, conv_tol=1e-14)


# ------------------------------------------------------------------------------- CLI
def test_cli_writes_selected_frames_and_skips_existing(tmp_path):
    write(tmp_path / "md.xyz", [h2(1.0), h2(1.1)])
    write(tmp_path / "hh.xyz", h2(1.0))
    out = tmp_path / "out"
    first = run(tmp_path / "md.xyz", "-o", out, "--index", "1", *FAST)  # frame numbers are the file's
    assert first.exit_code == 0, first.output
    assert sorted(p.name for p in out.iterdir()) == ["md_1.npz"]
    second = run(tmp_path / "md.xyz", tmp_path / "hh.xyz", "-o", out, *FAST)
    assert second.exit_code == 0, second.output
    assert "3 frames: 2 labelled, 1 already present" in second.stdout
    assert sorted(p.name for p in out.iterdir()) == ["hh.npz", "md_0.npz", "md_1.npz"]
    records = {p.stem: load_record(p) for p in out.iterdir()}
    assert records["hh"].name == "hh" and records["md_1"].source == "md.xyz"
    assert records["hh"].energy == pytest.approx(records["md_0"].energy, abs=1e-9)
    assert records["md_1"].energy != pytest.approx(records["md_0"].energy, abs=1e-6)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    third = run(tmp_path / "md.xyz", tmp_path / "hh.xyz", "-o", out, *FAST)
    assert third.exit_code == 0 and "0 labelled, 3 already present" in third.stdout
    assert stamps == {p.name: p.stat().st_mtime_ns for p in out.iterdir()}


def test_cli_overwrite(tmp_path):
    write(tmp_path / "hh.xyz", h2())
    out = tmp_path / "out"
    out.mkdir()
    stale = ReferenceRecord(h2().numbers, h2().positions, "sto-3g", "pbe", [[0.5], [0.5]], 0.0, "old", "stale")
    save_record(out / "hh.npz", stale)
    result = run(tmp_path / "hh.xyz", "-o", out, "--overwrite", *FAST)
    assert result.exit_code == 0, result.output
    assert load_record(out / "hh.npz").name == "hh"


@pytest.mark.parametrize("case", ["missing", "unknown-format", "odd-electrons", "bad-index"])
def test_cli_one_line_errors_and_no_output(tmp_path, case):
    path = tmp_path / {"missing": "nope.xyz", "unknown-format": "h2.qqq"}.get(case, "oh.xyz")
    extra = []
    if case == "unknown-format":
        path.write_text("two hydrogens, trust me\n")
    elif case == "odd-electrons":
        write(path, [h2(), molecule("OH")])
    elif case == "bad-index":
        write(path, h2())
        extra = ["--index", "5"]
    result = run(path, "-o", tmp_path / "out", *FAST, *extra)
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {path}") and len(result.output.strip().splitlines()) == 1
    assert case != "odd-electrons" or f"{path}:1: 9 electrons" in result.output
    assert not (tmp_path / "out").exists()


def test_cli_traceback(tmp_path):
    result = run(tmp_path / "nope.xyz", "-o", tmp_path / "out", "--traceback")
    assert result.exit_code == 1 and isinstance(result.exception, OSError)
    assert "Error:" not in result.output


def test_cli_failure_keeps_finished_records_and_no_partial_file(tmp_path, monkeypatch):
    write(tmp_path / "md.xyz", [h2(1.0), h2(1.1), h2(1.2)])
    real, calls = label_structure, []

    def flaky(atoms, *args, **kwargs):
        calls.append(kwargs["name"])
        if len(calls) == 2:
            raise SCFNotConvergedError("SCF not converged (simulated)")
        return real(atoms, *args, **kwargs)

    monkeypatch.setattr(label_module, "label_structure", flaky)
    result = run(tmp_path / "md.xyz", "-o", tmp_path / "out", *FAST)
    assert result.exit_code == 1
    assert f"Error: {tmp_path / 'md.xyz'}:1: SCF not converged" in result.output
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["md_0.npz"]
    assert load_record(tmp_path / "out" / "md_0.npz").n_electrons == 2
