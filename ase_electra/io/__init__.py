"""Density files: the only place where units change.

Inside the package densities are e/Angstrom^3 on grids in Angstrom. Cube files hold
e/bohr^3 and bohr (:mod:`.cube`); VASP CHGCAR files hold rho * V_cell (:mod:`.chgcar`).
Every writer is atomic: it writes a temporary file next to the target and renames it,
so an interrupted write never leaves a partial file.

The format follows from the file name unless given: ``*.cube`` is a cube file;
``CHGCAR``, ``CHGCAR*`` (e.g. ``CHGCAR_relaxed``) and ``*.chgcar`` are CHGCAR files
(case-insensitive); a further ``.gz`` means gzip-compressed (``md_007.cube.gz``).

All frames of a trajectory in one HDF5 file (structures, Gaussian mixtures, grid
values): :func:`read_density_frames` (:mod:`.frames`). Files written by
``electra-density`` record the settings that made them (:func:`read_settings`): in the
first line of cube and CHGCAR files, as an attribute of HDF5 files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from ..density import Density
from ..errors import InvalidInputError
from ..runs import RunSettings
from ._compressed import open_read, plain_name
from .chgcar import read_chgcar, write_chgcar
from .cube import read_cube, write_cube
from .frames import DensityFrames, FramesWriter, read_density_frames, read_frames_settings

__all__ = [
    "DensityFormat",
    "DensityFrames",
    "FramesWriter",
    "density_format",
    "read_chgcar",
    "read_cube",
    "read_density",
    "read_density_frames",
    "read_settings",
    "settings_comment",
    "write_chgcar",
    "write_cube",
    "write_density",
]

#: Marks the settings in a cube or CHGCAR file's first line.
_SETTINGS_MARK = "ase-electra settings "

DensityFormat = Literal["cube", "chgcar"]


def density_format(path: str | os.PathLike, format: DensityFormat | None = None) -> DensityFormat:
    """The format of a density file: ``format`` if given, else guessed from the name.

    >>> density_format("water.cube"), density_format("run/CHGCAR_final"), density_format("md_007.cube.gz")
    ('cube', 'chgcar', 'cube')
    """
    if format is not None:
        if format not in ("cube", "chgcar"):
            raise InvalidInputError(f"density format: expected 'cube' or 'chgcar', got {format!r}")
        return format
    name = plain_name(path).lower()
    if name.endswith(".cube"):
        return "cube"
    if name.startswith("chgcar") or name.endswith(".chgcar"):
        return "chgcar"
    raise InvalidInputError(
        f"{path}: unknown density format; expected a *.cube file or a CHGCAR (CHGCAR*, *.chgcar), "
        "optionally gzipped (*.gz)"
    )


def read_density(path: str | os.PathLike, format: DensityFormat | None = None) -> Density:
    """Read a cube or CHGCAR file as a :class:`Density` (values e/Angstrom^3)."""
    if density_format(path, format) == "cube":
        return read_cube(path)
    return read_chgcar(path)


def write_density(
    path: str | os.PathLike, density: Density, format: DensityFormat | None = None, comment: str | None = None
) -> None:
    """Write ``density`` as a cube or CHGCAR file (gzipped if the name ends in ``.gz``), atomically.

    ``comment`` becomes the first line (e.g. :func:`settings_comment`).
    """
    if density_format(path, format) == "cube":
        write_cube(path, density, comment)
    else:
        write_chgcar(path, density, comment)


def settings_comment(description: str, settings: RunSettings) -> str:
    """A first line for a cube or CHGCAR file: ``description`` and the settings, read back by :func:`read_settings`.

    >>> settings_comment("density", RunSettings(model="promolecule", version="0.1.0"))
    'density; ase-electra settings {"model":"promolecule","version":"0.1.0"}'
    """
    return f"{description}; {_SETTINGS_MARK}{settings.to_json()}"


def read_settings(path: str | os.PathLike) -> RunSettings | None:
    """The settings a density file of ``electra-density`` records (None if it records none).

    Cube and CHGCAR files (gzipped too) hold them in their first line, HDF5 files
    (``*.h5``) as an attribute.
    """
    if Path(path).name.lower().endswith(".h5"):
        return read_frames_settings(path)
    try:
        with open_read(path) as fh:
            line = fh.readline(1 << 16).strip()
        mark = line.index(_SETTINGS_MARK)
        return RunSettings.from_json(line[mark + len(_SETTINGS_MARK):])
    except (ValueError, EOFError):  # no mark, not text, damaged JSON: nothing usable recorded
        return None
