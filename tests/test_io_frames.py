"""Density files beyond one plain cube: gzip, settings lines, HDF5 frames files, and their one-line errors."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
from ase.build import molecule

from ase_electra import Density, FileFormatError, Grid
from ase_electra.io import (
    FramesWriter,
    density_format,
    read_density,
    read_density_frames,
    read_settings,
    settings_comment,
    write_density,
)
from ase_electra.models import load_model
from ase_electra.predict import predict_densities
from ase_electra.runs import RunSettings

SETTINGS = RunSettings(model="promolecule", version="0.1.0", format="cube", spacing=0.3, margin=2.0, sampling="point")


@pytest.fixture(scope="module")
def water():
    atoms = molecule("H2O")
    grid = Grid.for_molecule(atoms.positions, 0.3, 2.0)
    (density,) = predict_densities(load_model("promolecule"), [atoms], [grid])
    return density


@pytest.mark.parametrize("name", ["w.cube.gz", "CHGCAR.gz", "w.chgcar.gz"])
def test_gzip_round_trip_keeps_values_and_settings(tmp_path, water, name):
    density = water
    if density_format(name) == "chgcar":
        atoms = density.atoms.copy()
        atoms.translate(-density.grid.origin)
        atoms.cell = density.grid.cell
        density = Density(atoms, Grid(density.grid.cell, density.grid.shape), density.values)
    path = tmp_path / name
    write_density(path, density, comment=settings_comment("test", SETTINGS))
    with gzip.open(path, "rt") as fh:
        assert fh.readline().startswith("test; ase-electra settings {")
    back = read_density(path)
    np.testing.assert_allclose(back.values, density.values, rtol=1e-5, atol=1e-12)
    assert read_settings(path) == SETTINGS


def test_truncated_gzip_cube_is_one_line(tmp_path, water):
    path = tmp_path / "w.cube.gz"
    write_density(path, water)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(FileFormatError, match=r"w\.cube\.gz: corrupt or truncated cube data") as info:
        read_density(path)
    assert "\n" not in str(info.value)
    assert read_settings(path) is None  # the default comment records no settings


def test_frames_writer_round_trip_and_atomicity(tmp_path, water):
    mixture = load_model("promolecule").predict([water.atoms]).to("cpu", torch.float64)
    path = tmp_path / "w.h5"
    with pytest.raises(RuntimeError), FramesWriter(path, SETTINGS, "w.xyz", with_grid=True, compress=True) as writer:
        writer.append(3, water.atoms, mixture, water)
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []  # no file, no temporary file
    charged = water.atoms.copy()
    charged.info["charge"] = 1
    with FramesWriter(path, SETTINGS, "w.xyz", with_grid=True, compress=False) as writer:
        writer.append(3, water.atoms, mixture, water)
        writer.append(5, charged, mixture, water)
    frames = read_density_frames(path)
    assert frames.frames.tolist() == [3, 5] and frames.settings == SETTINGS and read_settings(path) == SETTINGS
    assert "charge" not in frames.atoms[0].info and frames.atoms[1].info["charge"] == 1
    np.testing.assert_array_equal(frames.density(1).values, water.values.astype(np.float32))
    torch.testing.assert_close(frames.mixtures[0].scale_tril, mixture.scale_tril, rtol=0, atol=0)
    assert read_density_frames(path, values=False).values is None


def test_not_a_frames_file_is_one_line(tmp_path):
    path = tmp_path / "x.h5"
    path.write_text("not hdf5")
    with pytest.raises(FileFormatError, match=r"x\.h5: not a density frames file") as info:
        read_density_frames(path)
    assert "\n" not in str(info.value)
