"""Reference records: file format, exact density (units, quadrature, both paths), QM9 splits."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ase_electra.errors import FileFormatError, InvalidInputError
from ase_electra.grid import Grid
from ase_electra.reference import (
    BOHR,
    ReferenceRecord,
    list_records,
    load_record,
    qm9_index,
    save_record,
    split_of,
)

from .conftest import shared_records


@pytest.fixture(scope="module")
def shared_path():
    return shared_records()[0]  # the smallest molecule


@pytest.fixture(scope="module")
def record(shared_path):
    pytest.importorskip("pyscf")
    return load_record(shared_path)


@pytest.fixture
def fake():
    """A record with made-up orbitals: fine for files, not for densities."""
    rng = np.random.default_rng(0)
    return ReferenceRecord(
        numbers=[1, 1], positions=[[0.0, 0.0, 0.0], [0.0, 0.0, 0.74]], basis="sto-3g", xc="pbe",
        mo_coeff_occ=rng.normal(size=(2, 1)), energy=-1.1, source="test", name="h2",
        scf_seconds=0.5, scf_cycles=7,
    )


def one_line_naming(err: pytest.ExceptionInfo, path) -> bool:
    message = str(err.value)
    return message.startswith(str(path)) and "\n" not in message


# ------------------------------------------------------------------------ shared records
def test_shared_record_fields(record, shared_path):
    data = np.load(shared_path)
    assert record.name == shared_path.stem and record.source == "qm9"
    assert (record.basis, record.xc) == ("def2-svp", "pbe")
    assert record.n_electrons == data["numbers"].sum() and record.charge == 0
    atoms = record.atoms
    assert atoms.info["name"] == shared_path.stem and not atoms.pbc.any()
    np.testing.assert_array_equal(atoms.positions, data["positions"])
    assert record.mole().nao == record.mo_coeff_occ.shape[0]
    assert record.scf_cycles == data["scf_cycles"] and record.scf_seconds == data["scf_seconds"]


def test_density_integrates_to_electron_count(record):
    """PySCF's molecular quadrature integrates the all-electron density exactly (~1e-6)."""
    from pyscf.dft import gen_grid

    grids = gen_grid.Grids(record.mole())
    grids.level = 3
    grids.build()
    rho = record.density_at(grids.coords * BOHR) * BOHR**3  # e/bohr^3
    assert grids.weights @ rho == pytest.approx(record.n_electrons, rel=1e-5)


def test_grid_sum_close_to_electron_count(record):
    """A 0.1 Angstrom box grid (atoms off grid points) sums to the electron count within 0.5 %."""
    grid = Grid.for_molecule(record.positions, spacing=0.1, margin=3.0)
    offset = (record.positions - grid.origin) / grid.spacing
    assert np.abs(offset - np.round(offset)).max(axis=1).min() > 0.1, "an atom sits on a grid point"
    rho = record.density_on(grid)
    assert rho.shape == grid.shape and rho.min() >= 0
    assert rho.sum() * grid.voxel_volume == pytest.approx(record.n_electrons, rel=5e-3)


def test_density_at_is_the_readme_formula(record):
    """rho = 2 sum_k (AO @ C)^2 in e/bohr^3, converted to e/Angstrom^3."""
    points = record.positions.mean(0) + np.random.default_rng(1).normal(scale=2.0, size=(500, 3))
    mol = record.mole()
    ao = mol.eval_gto("GTOval_sph", points / BOHR)
    expected = 2 * ((ao @ record.mo_coeff_occ.astype(np.float64)) ** 2).sum(1) / BOHR**3
    np.testing.assert_allclose(record.density_at(points), expected, rtol=1e-10, atol=1e-14)
    assert record.density_at(np.zeros((0, 3))).shape == (0,)


@pytest.mark.parametrize("skewed", [False, True], ids=["box", "skewed"])
def test_density_on_equals_density_at(record, skewed):
    grid = Grid.for_molecule(record.positions, spacing=0.35, margin=2.0)
    if skewed:
        cell = grid.cell.copy()
        cell[1, 0] = 0.3 * cell[1, 1]
        grid = Grid(cell, grid.shape, grid.origin - [1.0, 0.0, 0.0])
    on = record.density_on(grid)
    at = record.density_at(grid.points()).reshape(grid.shape)
    np.testing.assert_allclose(on, at, rtol=1e-10, atol=1e-12 * at.max())
    small = record.density_on(grid, chunk_bytes=1_000_000)  # many small chunks: same numbers
    np.testing.assert_allclose(small, on, rtol=1e-12, atol=1e-14 * at.max())


def test_factorised_path_up_to_g_functions():
    """cc-pVQZ water (s to g shells, general contractions): grid path equals eval_gto."""
    pytest.importorskip("pyscf")
    from ase.build import molecule

    water = molecule("H2O")
    coeff = np.random.default_rng(2).normal(scale=0.3, size=(115, 5))  # cc-pVQZ water: 115 AOs
    fake = ReferenceRecord(water.numbers, water.positions, "cc-pvqz", "pbe", coeff, -76.0, "test", "water")
    grid = Grid.for_molecule(water.positions, spacing=0.3, margin=2.0)
    at = fake.density_at(grid.points()).reshape(grid.shape)
    np.testing.assert_allclose(fake.density_on(grid), at, rtol=1e-10, atol=1e-12 * at.max())


def test_record_count_mismatch_with_basis(record):
    wrong = dataclasses.replace(record, basis="sto-3g")
    with pytest.raises(InvalidInputError, match="spherical AOs"):
        wrong.density_at(np.zeros((1, 3)))


# ----------------------------------------------------------------------------- files
def test_save_load_round_trip(tmp_path, fake):
    path = save_record(tmp_path / "h2.npz", fake)
    back = load_record(path)
    for field in dataclasses.fields(ReferenceRecord):
        np.testing.assert_array_equal(getattr(back, field.name), getattr(fake, field.name))
    assert [p.name for p in tmp_path.iterdir()] == ["h2.npz"]  # no temporary file left
    untimed = dataclasses.replace(fake, scf_seconds=None, scf_cycles=None)
    no_timing = load_record(save_record(tmp_path / "b.npz", untimed))
    assert no_timing.scf_seconds is None and no_timing.scf_cycles is None
    assert "scf_seconds" not in np.load(tmp_path / "b.npz").files


def test_saved_file_matches_shared_format(tmp_path, shared_path):
    """Re-saving a shared record gives the same keys, dtypes, shapes and values."""
    ours = np.load(save_record(tmp_path / shared_path.name, load_record(shared_path)))
    theirs = np.load(shared_path)
    assert sorted(ours.files) == sorted(theirs.files)
    for key in theirs.files:
        assert (ours[key].dtype, ours[key].shape) == (theirs[key].dtype, theirs[key].shape), key
        np.testing.assert_array_equal(ours[key], theirs[key])


def test_record_is_immutable(fake):
    with pytest.raises(dataclasses.FrozenInstanceError):
        fake.name = "x"
    with pytest.raises(ValueError):
        fake.positions[0, 0] = 1.0
    assert fake.mo_coeff_occ.dtype == np.float32 and fake.numbers.dtype == np.int16


@pytest.mark.parametrize(
    "change, message",
    [
        ({"positions": np.zeros((2, 2))}, "positions"),
        ({"numbers": [1.0, 1.0]}, "numbers"),
        ({"mo_coeff_occ": np.full((2, 1), np.nan)}, "mo_coeff_occ"),
        ({"basis": ""}, "basis"),
        ({"energy": float("inf")}, "energy"),
        ({"scf_cycles": -1}, "scf_cycles"),
    ],
)
def test_record_validation(fake, change, message):
    with pytest.raises(InvalidInputError, match=message):
        dataclasses.replace(fake, **change)


def test_missing_file(tmp_path):
    with pytest.raises(FileFormatError, match="no such file") as err:
        load_record(tmp_path / "qm9_000001.npz")
    assert one_line_naming(err, tmp_path / "qm9_000001.npz")


def write_npz(path, **arrays):
    with open(path, "wb") as stream:
        np.savez(stream, **arrays)
    return path


def fake_arrays(fake, **change):
    arrays = {f.name: getattr(fake, f.name) for f in dataclasses.fields(ReferenceRecord)}
    return {k: np.asarray(v) for k, v in {**arrays, **change}.items() if v is not None}


@pytest.mark.parametrize("case", ["garbage", "truncated", "npy", "missing-key", "bad-shape", "bad-type", "pickle"])
def test_corrupt_file(tmp_path, fake, case):
    path = tmp_path / "bad.npz"
    if case == "garbage":
        path.write_bytes(b"not a zip file at all")
    elif case == "truncated":
        save_record(path, fake)
        path.write_bytes(path.read_bytes()[:200])
    elif case == "npy":
        np.save(open(path, "wb"), np.zeros(3))
    elif case == "missing-key":
        write_npz(path, **fake_arrays(fake, mo_coeff_occ=None))
    elif case == "bad-shape":
        write_npz(path, **fake_arrays(fake, positions=np.zeros((2, 2))))
    elif case == "bad-type":
        write_npz(path, **fake_arrays(fake, energy=np.array("high")))
    else:
        write_npz(path, **fake_arrays(fake, name=np.array([{"evil": 1}], dtype=object)))
    with pytest.raises(FileFormatError) as err:
        load_record(path)
    assert one_line_naming(err, path)


def test_save_is_atomic(tmp_path, fake, monkeypatch):
    target = save_record(tmp_path / "h2.npz", fake)
    before = target.read_bytes()

    def fail(stream, **arrays):
        stream.write(b"half a record")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", fail)
    with pytest.raises(OSError, match="disk full"):
        save_record(target, dataclasses.replace(fake, energy=-2.0))
    with pytest.raises(OSError, match="disk full"):
        save_record(tmp_path / "new.npz", fake)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["h2.npz"]


# ---------------------------------------------------------------------- QM9 names, splits
def test_split_of():
    assert [split_of(i) for i in range(20, 30)] == ["train"] * 8 + ["validation", "test"]
    assert split_of(np.int64(5128)) == "validation" and split_of(129) == "test"
    for bad in (-1, 1.5, True, "9"):
        with pytest.raises(InvalidInputError):
            split_of(bad)


def test_qm9_index(tmp_path):
    assert qm9_index("qm9_005128") == 5128
    assert qm9_index(tmp_path / "qm9_000129.npz") == 129
    assert qm9_index("gdb_17") == 17
    for bad in ("water", "qm9_", "qm9_12a", "xqm9_000001"):
        with pytest.raises(InvalidInputError, match="not a QM9 record name"):
            qm9_index(bad)


def test_list_records(tmp_path):
    for name in ("qm9_000129.npz", "qm9_000018.npz", "qm9_000010.npz", "water.npz", ".tmp.npz", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    names = lambda paths: [p.name for p in paths]  # noqa: E731
    assert names(list_records(tmp_path)) == ["qm9_000010.npz", "qm9_000018.npz", "qm9_000129.npz", "water.npz"]
    assert names(list_records(tmp_path, "train")) == ["qm9_000010.npz"]
    assert names(list_records(tmp_path, "validation")) == ["qm9_000018.npz"]
    assert names(list_records(tmp_path, "test")) == ["qm9_000129.npz"]
    with pytest.raises(InvalidInputError, match="split"):
        list_records(tmp_path, "valid")
    with pytest.raises(FileFormatError, match="no such folder"):
        list_records(tmp_path / "absent")


def test_shared_folder_has_no_test_split(shared_path):
    folder = shared_path.parent
    assert list_records(folder, "test") == []
    assert len(list_records(folder, "train")) + len(list_records(folder, "validation")) == len(list_records(folder))


def test_dipole_moment_matches_pyscf(record):
    from pyscf.scf import hf

    coeff = record.mo_coeff_occ.astype(np.float64)
    expected = hf.dip_moment(record.mole(), 2 * coeff @ coeff.T, unit="AU", verbose=0) * 0.529177210903
    np.testing.assert_allclose(record.dipole_moment(), expected, rtol=1e-7, atol=1e-9)  # PySCF's own bohr
