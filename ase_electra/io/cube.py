"""Gaussian cube files: geometry in bohr, density in e/bohr^3.

The layout is the standard one (``ase/io/cube.py``): two comment lines; the atom count
and the origin; one line per axis with the number of points and the voxel vector
(cell row / n); one line per atom with atomic number, nuclear charge and position; then
the values with x outermost and z innermost, six per line and a line break after each
z-row. Grid point (i, j, k) sits at origin + i a/nx + j b/ny + k c/nz, the
:class:`~ase_electra.grid.Grid` convention, so no point is dropped or duplicated.

Units change here and only here: Angstrom <-> bohr for the geometry, e/Angstrom^3 <->
e/bohr^3 for the values.

A name ending in ``.gz`` is read and written through gzip (``md_007.cube.gz``).

A cube file has no periodicity flags: :func:`read_cube` returns a grid and atoms with
``pbc = (False, False, False)``, whatever was written.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import cube as ase_cube
from ase.units import Bohr

from ..density import Density
from ..errors import FileFormatError, InvalidInputError
from ..grid import Grid
from ._atomic import atomic_path
from ._compressed import open_read, open_write
from ._files import first_line, require_file
from ._format import write_rows

__all__ = ["read_cube", "write_cube"]

_PER_LINE = 6
_WIDTH, _DIGITS = 13, 5  # "%13.5e": 6 significant digits, relative error <= 5e-6
_NO_PBC = (False, False, False)
#: ASE parses with int()/float()/reshape; a truncated gzip stream ends in EOFError or zlib.error
_PARSE_ERRORS = (ValueError, IndexError, MemoryError, EOFError, zlib.error)


def read_cube(path: str | os.PathLike) -> Density:
    """Read a density from a cube file (with ``ase.io.cube.read_cube``).

    Parameters
    ----------
    path : str or path-like
        The cube file: geometry in bohr, values in e/bohr^3; gzip-compressed if the
        name ends in ``.gz``.

    Returns
    -------
    Density
        Values (nx, ny, nz) in e/Angstrom^3 on a grid with the file's origin, cell =
        voxel vectors * (nx, ny, nz) in Angstrom and ``pbc`` all False; atoms in
        Angstrom with that cell and ``pbc`` False.

    Raises
    ------
    FileFormatError
        If the file is missing, unreadable, corrupt or truncated; the one-line message
        names the file and the problem.
    """
    path = require_file(path)
    try:
        with open_read(path) as fh:
            content = ase_cube.read_cube(fh, read_data=True)
    except OSError as err:
        raise FileFormatError(f"{path}: cannot read: {err.strerror or err}") from err
    except _PARSE_ERRORS as err:
        raise FileFormatError(f"{path}: {_diagnose(path)} ({first_line(err)})") from err

    datas = content["datas"]  # (n_values, nx, ny, nz)
    if len(datas) != 1:
        raise FileFormatError(f"{path}: holds {len(datas)} values per grid point; expected 1 (a density)")
    data = datas[0]
    if not np.isfinite(data).all():
        raise FileFormatError(f"{path}: non-finite density values")
    atoms = content["atoms"]
    try:
        grid = Grid(
            np.asarray(content["spacing"]) * np.array(data.shape)[:, None],  # voxel rows * n, Angstrom
            data.shape,
            content["origin"],
            _NO_PBC,
        )
        atoms = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=grid.cell, pbc=_NO_PBC)
        return Density(atoms, grid, data / Bohr**3)  # e/bohr^3 -> e/Angstrom^3
    except InvalidInputError as err:
        raise FileFormatError(f"{path}: invalid cube geometry: {err}") from err


def _diagnose(path: Path) -> str:
    """Which part of an unreadable cube file is broken: the header or the values."""
    try:
        with open_read(path) as fh:
            ase_cube.read_cube(fh, read_data=False)
    except _PARSE_ERRORS:
        return "corrupt or truncated cube header"
    return "corrupt or truncated cube data"


def write_cube(path: str | os.PathLike, density: Density, comment: str | None = None) -> None:
    """Write a density as a cube file, atomically (a temporary file, then a rename).

    Parameters
    ----------
    path : str or path-like
        Destination; replaced only once the whole file is written; gzip-compressed if
        the name ends in ``.gz``.
    density : Density
        Values in e/Angstrom^3, written in e/bohr^3 as ``%13.5e`` (6 significant digits);
        geometry written in bohr. Magnitudes below 1e-99 e/bohr^3 are written as zero.
        The grid's ``pbc`` is not stored.
    comment : str, optional
        First line of the file; line breaks are replaced by spaces.
    """
    grid = density.grid
    comment = " ".join((comment or "ase-electra electron density, e/bohr^3").split())
    lines = [comment, "OUTER LOOP: X, MIDDLE LOOP: Y, INNER LOOP: Z"]
    origin = grid.origin / Bohr
    lines.append(f"{len(density.atoms):5d}{origin[0]:12.6f}{origin[1]:12.6f}{origin[2]:12.6f}")
    for n, (x, y, z) in zip(grid.shape, grid.voxels / Bohr):
        lines.append(f"{n:5d}{x:12.6f}{y:12.6f}{z:12.6f}")
    for number, (x, y, z) in zip(density.atoms.numbers, density.atoms.positions / Bohr):
        lines.append(f"{number:5d}{float(number):12.6f}{x:12.6f}{y:12.6f}{z:12.6f}")
    header = ("\n".join(lines) + "\n").encode()
    rows = (density.values * Bohr**3).reshape(-1, grid.shape[2])  # (nx * ny, nz), e/bohr^3
    with atomic_path(path) as tmp, open_write(tmp, path) as fh:
        fh.write(header)
        write_rows(fh, rows, _PER_LINE, _WIDTH, _DIGITS)
