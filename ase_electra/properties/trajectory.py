"""Charges, dipole and quadrupole of every frame of structure files, as one extended XYZ.

The library behind ``electra-properties``. Each frame becomes one extxyz record: the
structure, a per-atom ``charge`` column (Hirshfeld, e) and in the comment line
``dipole`` (e Angstrom), ``quadrupole`` (traceless Buckingham, about the coordinate
origin, 3 x 3, e Angstrom^2), ``source`` (file name), ``frame`` (index in that file) and
``model``. ``ase.io.read(path, ":")`` gives back Atoms whose ``get_charges()`` and
``get_dipole_moment()`` return them and whose ``info["quadrupole"]`` holds the quadrupole.

Records are appended in batches, each written with a single write and flushed to disk.
A rerun keeps the complete records already there, after checking that they are the same
structures in the same order, drops an incomplete last record (an interrupted write),
and continues with the next frame; ``overwrite`` starts afresh.
"""

from __future__ import annotations

import io
import itertools
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from ..convert import ConversionSummary
from ..errors import FileFormatError, InvalidInputError
from ..models import DensityModel
from ..models.base import check_structures
from ..structures import read_frames
from .hirshfeld import hirshfeld_charges, reference_atoms
from .multipoles import dipole_moment, quadrupole_moment

__all__ = ["write_properties"]

_POSITION_TOLERANCE = 1e-6  # Angstrom; extxyz stores 8 decimals


def write_properties(
    files: list[Path],
    output: Path,
    model: DensityModel,
    *,
    index: str = ":",
    batch_size: int = 8,
    overwrite: bool = False,
    progress: Callable[[list[tuple[Path, int, Atoms]]], Iterable[tuple[Path, int, Atoms]]] | None = None,
) -> ConversionSummary:
    """Append the properties of every selected frame of ``files`` to ``output`` (extxyz).

    Parameters
    ----------
    files : list of Path
        Structure files, any format ASE reads; molecules only.
    output : Path
        The extended XYZ file; its folder must exist.
    model : DensityModel
        Predicts the densities, ``batch_size`` frames per call.
    index : str
        ASE frame selection applied to every file.
    overwrite : bool
        Discard an existing ``output`` instead of continuing it.
    progress : callable, optional
        Wraps the frames still to do (e.g. ``tqdm``).
    """
    if batch_size < 1:
        raise InvalidInputError(f"batch size: expected >= 1, got {batch_size}")
    start = time.perf_counter()
    frames = [(Path(path), frame, atoms) for path in files for frame, atoms in read_frames(Path(path), index)[1]]
    for path, frame, atoms in frames:
        atoms.info["name"] = f"{path}:{frame}"
        if atoms.pbc.any():
            raise InvalidInputError(f"{path}:{frame}: electra-properties supports molecules only (periodic structure)")
    structures = [atoms for _, _, atoms in frames]
    check_structures(structures, model.elements, model.name)  # one-line errors before any work
    reference_atoms(np.concatenate([atoms.numbers for atoms in structures]))
    if not output.parent.is_dir():
        raise FileFormatError(f"{output}: folder {output.parent} does not exist")
    if overwrite:
        output.unlink(missing_ok=True)
    kept = _resume(output, frames)
    todo = frames[kept:]
    from ase.io import write

    stream = iter(progress(todo) if progress else todo)
    with open(output, "a", encoding="utf-8") as fh:
        while batch := list(itertools.islice(stream, batch_size)):
            text = io.StringIO()
            for record in _records(model, batch):
                write(text, record, format="extxyz")
            fh.write(text.getvalue())
            fh.flush()
            os.fsync(fh.fileno())
    return ConversionSummary(len(frames), len(todo), kept, time.perf_counter() - start)


def _records(model: DensityModel, batch: list[tuple[Path, int, Atoms]]) -> list[Atoms]:
    """One Atoms per frame with its charges, dipole (calculator results) and quadrupole (info)."""
    structures = [atoms for _, _, atoms in batch]
    with torch.no_grad():
        mixtures = model.predict(structures).split()
    records = []
    for (path, frame, _), atoms, mixture in zip(batch, structures, mixtures):
        record = Atoms(numbers=atoms.numbers, positions=atoms.positions)
        charge = atoms.info.get("charge")
        record.info.update({"source": path.name, "frame": frame, "model": model.name})
        if charge is not None:
            record.info["charge"] = charge
        record.info["quadrupole"] = quadrupole_moment(mixture, atoms.numbers, atoms.positions)
        record.calc = SinglePointCalculator(
            record,
            charges=hirshfeld_charges(mixture, atoms.numbers, atoms.positions),
            dipole=dipole_moment(mixture, atoms.numbers, atoms.positions),
        )
        records.append(record)
    return records


def _resume(output: Path, frames: list[tuple[Path, int, Atoms]]) -> int:
    """Number of complete records in ``output`` (checked against ``frames``); cuts off a partial tail."""
    if not output.exists():
        return 0
    from ase.io import read

    data = output.read_bytes()
    offset, count = 0, 0
    while offset < len(data):
        end = _record_end(data, offset)
        if end is None:
            break
        try:
            record = read(io.StringIO(data[offset:end].decode("utf-8")), format="extxyz")
            charges = record.get_charges()
        except Exception:  # a record cut mid-number parses as anything from ValueError to KeyError
            break
        if count >= len(frames):
            raise InvalidInputError(f"{output}: holds more frames than the input selects; use --overwrite")
        path, frame, atoms = frames[count]
        same = (
            record.info.get("source") == path.name
            and record.info.get("frame") == frame
            and np.array_equal(record.numbers, atoms.numbers)
            and np.allclose(record.positions, atoms.positions, atol=_POSITION_TOLERANCE)
            and len(charges) == len(atoms)
        )
        if not same:
            raise InvalidInputError(
                f"{output}: record {count} is not {path.name}:{frame}; the file belongs to other input, use --overwrite"
            )
        offset, count = end, count + 1
    if offset < len(data):
        with open(output, "r+b") as fh:
            fh.truncate(offset)
    return count


def _record_end(data: bytes, offset: int) -> int | None:
    """Byte offset after the extxyz record starting at ``offset``, or None if it is incomplete."""
    newline = data.find(b"\n", offset)
    if newline < 0:
        return None
    try:
        n_atoms = int(data[offset:newline])
    except ValueError:
        return None
    end = newline
    for _ in range(n_atoms + 1):
        end = data.find(b"\n", end + 1)
        if end < 0:
            return None
    return end + 1
