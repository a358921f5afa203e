"""VASP CHGCAR files: a POSCAR, the grid shape, then rho * V_cell with x fastest.

VASP stores the density times the cell volume (``rho * V_cell``, rho in e/Angstrom^3,
V_cell in Angstrom^3), so a grid sum divided by the number of points is the electron
count. The grid spans the cell from the origin (point (i, j, k) at i a/nx + j b/ny +
k c/nz, the :class:`~ase_electra.grid.Grid` convention) and is periodic. Reading uses
pymatgen's ``Chgcar`` (a compiled number parser); only the total density is read (for
spin-polarised files the first block; augmentation occupancies are ignored). Writing
uses ASE's POSCAR writer for the header and the fast formatter for the values; no
augmentation occupancies are written.
"""

from __future__ import annotations

import io
import os

import numpy as np
from ase import Atoms
from ase.io.vasp import write_vasp

from ..density import Density
from ..errors import FileFormatError, InvalidInputError
from ..grid import Grid
from ._atomic import atomic_path
from ._compressed import open_write
from ._files import first_line, require_file
from ._format import write_rows

__all__ = ["read_chgcar", "write_chgcar"]

_PER_LINE = 5
_WIDTH, _DIGITS = 18, 10  # "%18.10E": 11 significant digits, VASP's precision
_ATOL = 1e-6  # Angstrom: how close origin and cells must be to count as equal


def read_chgcar(path: str | os.PathLike) -> Density:
    """Read the total density of a CHGCAR file (with pymatgen).

    Parameters
    ----------
    path : str or path-like
        A CHGCAR (or CHG, AECCAR) file: values rho * V_cell.

    Returns
    -------
    Density
        Values (nx, ny, nz) in e/Angstrom^3 (file values / V_cell) on a periodic grid
        spanning the lattice from the origin; atoms in Angstrom, periodic.

    Raises
    ------
    FileFormatError
        If the file is missing, unreadable, corrupt or truncated; the one-line message
        names the file and the problem.
    """
    from pymatgen.io.vasp.outputs import Chgcar  # pymatgen takes ~1 s to import

    path = require_file(path)
    try:
        chgcar = Chgcar.from_file(str(path))
    except OSError as err:
        raise FileFormatError(f"{path}: cannot read: {err.strerror or err}") from err
    except (ValueError, IndexError, KeyError, EOFError) as err:  # pymatgen's parse errors
        raise FileFormatError(f"{path}: corrupt or truncated CHGCAR ({first_line(err)})") from err

    structure = chgcar.structure
    cell = np.array(structure.lattice.matrix)  # (3, 3), Angstrom
    data = np.asarray(chgcar.data["total"], dtype=np.float64)  # (nx, ny, nz), rho * V_cell
    if not np.isfinite(data).all():
        raise FileFormatError(f"{path}: non-finite density values")
    try:
        grid = Grid(cell, data.shape, np.zeros(3), (True, True, True))
        atoms = Atoms(
            symbols=[site.specie.symbol for site in structure],
            positions=structure.cart_coords,
            cell=cell,
            pbc=True,
        )
        return Density(atoms, grid, data / abs(np.linalg.det(cell)))  # -> e/Angstrom^3
    except (InvalidInputError, KeyError) as err:
        raise FileFormatError(f"{path}: invalid CHGCAR contents: {err}") from err


def write_chgcar(path: str | os.PathLike, density: Density, comment: str | None = None) -> None:
    """Write a density as a CHGCAR file, atomically (a temporary file, then a rename).

    Parameters
    ----------
    path : str or path-like
        Destination; replaced only once the whole file is written; gzip-compressed if
        the name ends in ``.gz`` (pymatgen reads it back).
    density : Density
        Values in e/Angstrom^3, written as rho * V_cell in ``%18.10E`` (11 significant
        digits, like VASP), x fastest, five per line. The grid must start at the origin
        and, if the atoms have a cell, span exactly that cell; the grid cell becomes the
        CHGCAR lattice. CHGCAR has no periodicity flags: the file reads back periodic.
    comment : str, optional
        First line (the POSCAR comment) instead of the chemical formula; line breaks
        become spaces.

    Raises
    ------
    InvalidInputError
        If the grid's origin is not zero or the grid does not span the atoms' cell
        (move a molecule's box to the origin first, with the box as cell).
    """
    grid, atoms = density.grid, density.atoms
    if not np.allclose(grid.origin, 0.0, atol=_ATOL):
        raise InvalidInputError(
            f"CHGCAR grids start at the origin, this one at {np.round(grid.origin, 6).tolist()} A; "
            "translate the atoms and grid so that the box starts at zero"
        )
    if atoms.cell.rank == 3 and not np.allclose(atoms.cell.array, grid.cell, atol=_ATOL):
        raise InvalidInputError(
            f"a CHGCAR grid must span the atoms' cell: grid cell {np.round(grid.cell, 6).tolist()} A, "
            f"atoms cell {np.round(atoms.cell.array, 6).tolist()} A"
        )
    lattice = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=grid.cell, pbc=True)
    header = io.StringIO()
    write_vasp(header, lattice, direct=True, vasp5=True)
    text = header.getvalue()
    if comment is not None:
        text = " ".join(comment.split()) + "\n" + text.split("\n", 1)[1]
    nx, ny, nz = grid.shape
    text += f"\n{nx:5d}{ny:5d}{nz:5d}\n"
    flat = (density.values * abs(np.linalg.det(grid.cell))).ravel(order="F")  # x fastest, rho * V
    full = len(flat) - len(flat) % _PER_LINE
    with atomic_path(path) as tmp, open_write(tmp, path) as fh:
        fh.write(text.encode())
        write_rows(fh, flat[:full].reshape(-1, _PER_LINE), _PER_LINE, _WIDTH, _DIGITS, "E")
        write_rows(fh, flat[full:].reshape(1, -1), _PER_LINE, _WIDTH, _DIGITS, "E")
