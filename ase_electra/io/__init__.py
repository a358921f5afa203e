"""Density files: the only place where units change.

Inside the package densities are e/Angstrom^3 on grids in Angstrom. Cube files hold
e/bohr^3 and bohr (:mod:`.cube`); VASP CHGCAR files hold rho * V_cell (:mod:`.chgcar`).
Every writer is atomic: it writes a temporary file next to the target and renames it,
so an interrupted write never leaves a partial file.

The format follows from the file name unless given: ``*.cube`` is a cube file;
``CHGCAR``, ``CHGCAR*`` (e.g. ``CHGCAR_relaxed``) and ``*.chgcar`` are CHGCAR files
(case-insensitive).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from ..density import Density
from ..errors import InvalidInputError
from .chgcar import read_chgcar, write_chgcar
from .cube import read_cube, write_cube

__all__ = [
    "DensityFormat",
    "density_format",
    "read_chgcar",
    "read_cube",
    "read_density",
    "write_chgcar",
    "write_cube",
    "write_density",
]

DensityFormat = Literal["cube", "chgcar"]


def density_format(path: str | os.PathLike, format: DensityFormat | None = None) -> DensityFormat:
    """The format of a density file: ``format`` if given, else guessed from the name.

    >>> density_format("water.cube"), density_format("run/CHGCAR_final")
    ('cube', 'chgcar')
    """
    if format is not None:
        if format not in ("cube", "chgcar"):
            raise InvalidInputError(f"density format: expected 'cube' or 'chgcar', got {format!r}")
        return format
    name = Path(path).name.lower()
    if name.endswith(".cube"):
        return "cube"
    if name.startswith("chgcar") or name.endswith(".chgcar"):
        return "chgcar"
    raise InvalidInputError(
        f"{path}: unknown density format; expected a *.cube file or a CHGCAR (CHGCAR*, *.chgcar)"
    )


def read_density(path: str | os.PathLike, format: DensityFormat | None = None) -> Density:
    """Read a cube or CHGCAR file as a :class:`Density` (values e/Angstrom^3)."""
    if density_format(path, format) == "cube":
        return read_cube(path)
    return read_chgcar(path)


def write_density(path: str | os.PathLike, density: Density, format: DensityFormat | None = None) -> None:
    """Write ``density`` as a cube or CHGCAR file, atomically."""
    if density_format(path, format) == "cube":
        write_cube(path, density)
    else:
        write_chgcar(path, density)
