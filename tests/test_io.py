"""Density files: round trips, foreign readers (ASE, pymatgen), bad files, atomic writes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.io.cube import read_cube as ase_read_cube
from ase.units import Bohr

from ase_electra import Density, FileFormatError, Grid, InvalidInputError
from ase_electra.io import (
    density_format,
    read_chgcar,
    read_cube,
    read_density,
    write_chgcar,
    write_cube,
    write_density,
)
from ase_electra.io import _format, chgcar, cube


def gaussian_values(grid: Grid, atoms: Atoms) -> np.ndarray:
    """A smooth positive density (nx, ny, nz), e/A^3: one Gaussian per atom, Z electrons."""
    points = grid.points()  # (P, 3)
    rho = np.zeros(len(points))
    for z, position in zip(atoms.numbers, atoms.positions):
        d = points - position
        if any(grid.pbc):  # nearest image, for a periodic cell
            frac = np.linalg.solve(grid.cell.T, d.T).T
            d = (frac - np.round(frac)) @ grid.cell
        rho += z * np.exp(-(d**2).sum(1) / (2 * 0.5**2)) / (2 * np.pi * 0.5**2) ** 1.5
    return rho.reshape(grid.shape)


@pytest.fixture
def water() -> Density:
    """Non-periodic box, non-zero origin, shape not a multiple of 6 along z."""
    atoms = molecule("H2O")
    grid = Grid.for_molecule(atoms.positions, spacing=0.25, margin=2.5)
    return Density(atoms, grid, gaussian_values(grid, atoms))


@pytest.fixture
def silicon() -> Density:
    """Periodic, non-orthogonal (fcc primitive) cell."""
    atoms = bulk("Si", "diamond", a=5.43)
    grid = Grid.for_cell(atoms.cell.array, spacing=0.3)
    return Density(atoms, grid, gaussian_values(grid, atoms))


@pytest.fixture
def water_at_origin(water) -> Density:
    """The water box moved to start at the origin, box as cell (what CHGCAR needs)."""
    atoms = water.atoms.copy()
    atoms.translate(-water.grid.origin)
    atoms.cell = water.grid.cell
    return Density(atoms, Grid(water.grid.cell, water.grid.shape), water.values)


def assert_same_atoms(a: Atoms, b: Atoms, atol: float = 1e-5) -> None:
    assert a.get_chemical_symbols() == b.get_chemical_symbols()
    np.testing.assert_allclose(a.positions, b.positions, atol=atol)


# ------------------------------------------------------------------------- fast formatter
def test_formatter_matches_printf():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(20000) * 10.0 ** rng.uniform(-90, 90, 20000)
    x[:8] = [0.0, -0.0, 1.0, 9.999995, 9.9999949, 1e-5, -0.1, 123456.5]
    buffer = io.BytesIO()
    _format.write_rows(buffer, x.reshape(-1, 1), 1, 13, 5)
    assert buffer.getvalue().decode().splitlines() == ["%13.5e" % v for v in x]


def test_formatter_eleven_digits_within_last_digit():
    rng = np.random.default_rng(2)
    x = rng.standard_normal(5000) * 10.0 ** rng.uniform(-30, 30, 5000)
    buffer = io.BytesIO()
    _format.write_rows(buffer, x.reshape(-1, 1), 1, 18, 10, "E")
    lines = buffer.getvalue().decode().splitlines()
    assert all(len(line) == 18 and "E" in line for line in lines)
    np.testing.assert_allclose([float(s) for s in lines], x, rtol=1e-10)


def test_formatter_layout_and_threads():
    rows = np.random.default_rng(3).random((50, 8))
    single, threaded = io.BytesIO(), io.BytesIO()
    _format.write_rows(single, rows, 6, 13, 5, threads=1)
    _format.write_rows(threaded, rows, 6, 13, 5, threads=2)
    assert single.getvalue() == threaded.getvalue()
    lines = single.getvalue().decode().split("\n")[:-1]
    assert [len(line.split()) for line in lines] == [6, 2] * 50  # break after each row
    np.testing.assert_allclose(np.array(" ".join(lines).split(), float).reshape(rows.shape), rows, rtol=5e-6)


def test_formatter_extremes():
    buffer = io.BytesIO()
    _format.write_rows(buffer, np.array([[1e-120, -1e-150, 9.9e99]]), 3, 13, 5)
    assert buffer.getvalue().decode().split() == ["0.00000e+00", "-0.00000e+00", "9.90000e+99"]
    with pytest.raises(InvalidInputError, match="1e100"):
        _format.write_rows(io.BytesIO(), np.array([[1e100]]), 1, 13, 5)
    with pytest.raises(InvalidInputError, match="width"):
        _format.write_rows(io.BytesIO(), np.ones((1, 1)), 1, 12, 5)


# ------------------------------------------------------------------------- cube
@pytest.mark.parametrize("name", ["water", "silicon"])
def test_cube_round_trip(tmp_path, request, name):
    density = request.getfixturevalue(name)
    write_cube(tmp_path / "d.cube", density)
    back = read_cube(tmp_path / "d.cube")
    assert back.grid.shape == density.grid.shape
    assert back.grid.pbc == (False, False, False) and not back.atoms.pbc.any()
    np.testing.assert_allclose(back.grid.origin, density.grid.origin, atol=1e-5)
    np.testing.assert_allclose(back.grid.cell, density.grid.cell, atol=1e-4)  # 6 decimals of bohr
    np.testing.assert_allclose(back.grid.spacing, density.grid.spacing, atol=1e-6)
    np.testing.assert_allclose(back.values, density.values, rtol=5e-6, atol=1e-99)
    assert_same_atoms(back.atoms, density.atoms)
    assert back.n_electrons == pytest.approx(density.n_electrons, rel=1e-5)


def test_cube_reads_back_in_ase(tmp_path, silicon):
    write_cube(tmp_path / "si.cube", silicon)
    with open(tmp_path / "si.cube") as fh:
        content = ase_read_cube(fh)
    np.testing.assert_allclose(content["data"], silicon.values * Bohr**3, rtol=5e-6)  # e/bohr^3
    np.testing.assert_allclose(content["spacing"], silicon.grid.voxels, atol=1e-6)
    np.testing.assert_allclose(content["origin"], 0.0, atol=1e-12)
    assert_same_atoms(content["atoms"], silicon.atoms)
    voxel_bohr3 = abs(np.linalg.det(content["spacing"])) / Bohr**3
    assert content["data"].sum() * voxel_bohr3 == pytest.approx(silicon.n_electrons, rel=1e-5)


def test_cube_layout(tmp_path, water):
    write_cube(tmp_path / "w.cube", water, comment="water\nprediction")
    lines = (tmp_path / "w.cube").read_text().splitlines()
    nx, ny, nz = water.grid.shape
    assert lines[0] == "water prediction"
    assert lines[2].split()[0] == "3" and [int(s.split()[0]) for s in lines[3:6]] == [nx, ny, nz]
    data = lines[6 + len(water.atoms) :]
    per_row = [6] * (nz // 6) + ([nz % 6] if nz % 6 else [])
    assert [len(line.split()) for line in data] == per_row * (nx * ny)


# ------------------------------------------------------------------------- CHGCAR
@pytest.mark.parametrize("name", ["silicon", "water_at_origin"])
def test_chgcar_round_trip(tmp_path, request, name):
    density = request.getfixturevalue(name)
    write_chgcar(tmp_path / "CHGCAR", density)
    back = read_chgcar(tmp_path / "CHGCAR")
    assert back.grid.pbc == (True, True, True) and back.atoms.pbc.all()
    assert back.grid.same_as(Grid(density.grid.cell, density.grid.shape, pbc=True))
    np.testing.assert_allclose(back.values, density.values, rtol=1e-10, atol=1e-99)
    assert_same_atoms(back.atoms, density.atoms, atol=1e-9)
    assert back.n_electrons == pytest.approx(density.n_electrons, rel=1e-10)


def test_chgcar_reads_back_in_pymatgen(tmp_path, silicon):
    from pymatgen.io.vasp.outputs import Chgcar

    write_chgcar(tmp_path / "CHGCAR", silicon)
    theirs = Chgcar.from_file(str(tmp_path / "CHGCAR"))
    volume = silicon.atoms.get_volume()
    np.testing.assert_allclose(theirs.data["total"], silicon.values * volume, rtol=1e-10)
    np.testing.assert_allclose(theirs.structure.lattice.matrix, silicon.grid.cell, atol=1e-12)
    assert [s.specie.symbol for s in theirs.structure] == ["Si", "Si"]
    np.testing.assert_allclose(theirs.structure.cart_coords, silicon.atoms.positions, atol=1e-9)
    # VASP's convention: the mean of rho * V over the grid is the electron count
    assert theirs.data["total"].mean() == pytest.approx(silicon.n_electrons, rel=1e-10)


def test_chgcar_x_fastest(tmp_path, silicon):
    nx, ny, nz = silicon.grid.shape
    i, j, k = np.indices(silicon.grid.shape)
    labelled = Density(silicon.atoms, silicon.grid, 1.0 + i + 100 * j + 10000 * k)
    write_chgcar(tmp_path / "CHGCAR", labelled)
    lines = (tmp_path / "CHGCAR").read_text().splitlines()
    start = lines.index(f"{nx:5d}{ny:5d}{nz:5d}") + 1
    first = np.array(" ".join(lines[start : start + 4]).split(), float) / silicon.atoms.get_volume()
    np.testing.assert_allclose(first, 1.0 + np.arange(20) % nx + 100 * (np.arange(20) // nx), rtol=1e-10)


def test_chgcar_refuses_grids_off_the_cell(tmp_path, water, silicon):
    with pytest.raises(InvalidInputError, match="start at the origin"):
        write_chgcar(tmp_path / "CHGCAR", water)
    shrunk = Grid(silicon.grid.cell * 0.9, silicon.grid.shape, pbc=True)
    with pytest.raises(InvalidInputError, match="span the atoms' cell"):
        write_chgcar(tmp_path / "CHGCAR", Density(silicon.atoms, shrunk, silicon.values))
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------- dispatch
def test_format_from_name(tmp_path, silicon):
    assert density_format("a/b.cube") == density_format("x.CUBE") == "cube"
    assert {density_format(n) for n in ["CHGCAR", "CHGCAR_final", "si.chgcar", "run/chgcar"]} == {"chgcar"}
    with pytest.raises(InvalidInputError, match="unknown density format"):
        density_format("si.xyz")
    with pytest.raises(InvalidInputError, match="'cube' or 'chgcar'"):
        density_format("si.cube", "xsf")
    write_density(tmp_path / "si.dat", silicon, format="chgcar")
    assert read_density(tmp_path / "si.dat", format="chgcar").grid.pbc == (True, True, True)
    write_density(tmp_path / "si.cube", silicon)
    assert read_density(tmp_path / "si.cube").grid.pbc == (False, False, False)


# ------------------------------------------------------------------------- bad files
def _damage(text: str, how: str) -> str:
    lines = text.splitlines(keepends=True)
    if how == "truncated":
        return "".join(lines[: len(lines) // 2])
    if how == "cut-mid-number":
        return text[: len(text) // 2 - 3]
    if how == "corrupt-value":
        return "".join(lines[:-3] + ["  1.0 abc 2.0\n"] + lines[-2:])
    if how == "corrupt-header":
        return "".join(lines[:2] + ["x y z\n"] + lines[3:])
    if how == "empty":
        return ""
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["truncated", "cut-mid-number", "corrupt-value", "corrupt-header", "empty"])
@pytest.mark.parametrize("name", ["d.cube", "CHGCAR"])
def test_bad_file_names_file(tmp_path, water_at_origin, name, how):
    good, bad = tmp_path / name, tmp_path / "bad" / name
    write_density(good, water_at_origin)
    bad.parent.mkdir()
    bad.write_text(_damage(good.read_text(), how))
    with pytest.raises(FileFormatError) as info:
        read_density(bad)
    message = str(info.value)
    assert message.startswith(str(bad)) and len(message.splitlines()) == 1


def test_cube_diagnosis(tmp_path, water):
    write_cube(tmp_path / "w.cube", water)
    text = (tmp_path / "w.cube").read_text()
    (tmp_path / "w.cube").write_text(_damage(text, "truncated"))
    with pytest.raises(FileFormatError, match="truncated cube data"):
        read_cube(tmp_path / "w.cube")
    (tmp_path / "w.cube").write_text(_damage(text, "corrupt-header"))
    with pytest.raises(FileFormatError, match="cube header"):
        read_cube(tmp_path / "w.cube")


@pytest.mark.parametrize("name", ["missing.cube", "CHGCAR"])
def test_missing_file_and_folder(tmp_path, name):
    with pytest.raises(FileFormatError, match=f"{name}: no such file$"):
        read_density(tmp_path / name)
    (tmp_path / name).mkdir()
    with pytest.raises(FileFormatError, match=f"{name}: is a folder, not a file$"):
        read_density(tmp_path / name)


# ------------------------------------------------------------------------- atomic writes
@pytest.mark.parametrize("module, name", [(cube, "w.cube"), (chgcar, "CHGCAR")])
def test_failed_write_leaves_no_file(tmp_path, monkeypatch, water_at_origin, module, name):
    def half_then_fail(fh, rows, *args, **kwargs):
        fh.write(b"  1.00000e+00\n" * 10)
        raise RuntimeError("disk full")

    target = tmp_path / name
    monkeypatch.setattr(module, "write_rows", half_then_fail)
    with pytest.raises(RuntimeError, match="disk full"):
        write_density(target, water_at_origin)
    assert list(tmp_path.iterdir()) == []

    monkeypatch.undo()
    write_density(target, water_at_origin)
    before = target.read_bytes()
    monkeypatch.setattr(module, "write_rows", half_then_fail)
    with pytest.raises(RuntimeError):
        write_density(target, water_at_origin)
    assert target.read_bytes() == before and list(tmp_path.iterdir()) == [target]


def test_write_into_missing_folder(tmp_path, water):
    with pytest.raises(FileFormatError, match="nowhere"):
        write_cube(tmp_path / "nowhere" / "w.cube", water)
