"""Charges, dipole and quadrupole of every frame of structure files, as one extended XYZ.

The library behind ``electra-properties``. Each frame becomes one extxyz record: the
structure, a per-atom ``charge`` column (Hirshfeld, e) and in the comment line
``dipole`` (e Angstrom), ``quadrupole`` (traceless Buckingham, about the coordinate
origin, 3 x 3, e Angstrom^2), ``source`` (file name), ``frame`` (index in that file),
``model`` and ``settings`` (JSON, :class:`~ase_electra.runs.RunSettings`: model,
ase-electra version, ``--charge``). ``ase.io.read(path, ":")`` gives back Atoms whose
``get_charges()`` and ``get_dipole_moment()`` return them and whose
``info["quadrupole"]`` holds the quadrupole.

Records are appended one by one, each written with a single write and flushed to disk.
A rerun keeps the complete records already there, after checking that they are the same
structures in the same order made with the same settings, drops an incomplete last
record (an interrupted write), and continues with the next frame; ``overwrite`` starts
afresh. Frames that cannot be done (periodic, unknown elements, non-finite positions)
are refused one by one (:mod:`ase_electra.runs`) and the others written.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from ..errors import FileFormatError, InvalidInputError
from ..models import DensityModel
from ..models.base import check_for_model, model_identity
from ..runs import Refusals, RunSettings, RunSummary, package_version, run_batches, stale_output
from ..structures import keep_valid, read_inputs
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
    charge: int | None = None,
    progress: Callable[[list[tuple[Path, int, Atoms]]], Iterable[tuple[Path, int, Atoms]]] | None = None,
    report: Callable[[str], None] | None = None,
) -> RunSummary:
    """Append the properties of every selected frame of ``files`` to ``output`` (extxyz).

    Parameters
    ----------
    files : list of Path
        Structure files, any format ASE reads; molecules only.
    output : Path
        The extended XYZ file; its folder must exist. Created with the first record.
    model : DensityModel
        Predicts the densities, ``batch_size`` frames per call.
    index : str
        ASE frame selection applied to every file.
    overwrite : bool
        Discard an existing ``output`` instead of continuing it.
    charge : int, optional
        Total charge of frames that carry no ``atoms.info['charge']``, elementary charges.
    progress : callable, optional
        Wraps the frames still to do (e.g. ``tqdm``).
    report : callable, optional
        Receives one line per refused frame or unreadable file, as it happens.

    Raises
    ------
    InvalidInputError
        If ``output`` holds records of other structures or made with other settings
        (before anything is written).
    """
    if batch_size < 1:
        raise InvalidInputError(f"batch size: expected >= 1, got {batch_size}")
    start = time.perf_counter()
    refusals = Refusals(report)
    frames = [
        (source.path, frame, atoms)
        for source in read_inputs(files, index, refusals=refusals, charge=charge)
        for frame, atoms in keep_valid(source, lambda atoms: _check(atoms, model), refusals).frames
    ]
    if not output.parent.is_dir():
        raise FileFormatError(f"{output}: folder {output.parent} does not exist")
    settings = RunSettings(model=model_identity(model), version=package_version(), format="extxyz", charge=charge)
    if overwrite:
        output.unlink(missing_ok=True)
    kept = _resume(output, frames, settings)
    todo = frames[kept:]
    from ase.io import write

    def append(_, record: Atoms) -> None:
        text = io.StringIO()
        write(text, record, format="extxyz")
        with open(output, "a", encoding="utf-8") as fh:
            fh.write(text.getvalue())
            fh.flush()
            os.fsync(fh.fileno())

    written = run_batches(progress(todo) if progress else todo, batch_size, lambda batch: _records(model, batch,
                          settings), append, lambda item: f"{item[0]}:{item[1]}", refusals)
    return RunSummary(len(frames) + refusals.frames, written, kept, time.perf_counter() - start, refusals.frames,
                      refusals.failure())


def _check(atoms: Atoms, model: DensityModel) -> None:
    """Raise a one-line error for a frame the model or the Hirshfeld partition cannot take."""
    if atoms.pbc.any():
        raise InvalidInputError(f"{atoms.info['name']}: electra-properties supports molecules only "
                                "(periodic structure)")
    check_for_model(model, [atoms])
    reference_atoms(atoms.numbers)


def _records(model: DensityModel, batch: list[tuple[Path, int, Atoms]], settings: RunSettings) -> list[Atoms]:
    """One Atoms per frame with its charges, dipole (calculator results) and quadrupole (info)."""
    structures = [atoms for _, _, atoms in batch]
    with torch.no_grad():
        mixtures = model.predict(structures).split()
    records = []
    for (path, frame, _), atoms, mixture in zip(batch, structures, mixtures):
        record = Atoms(numbers=atoms.numbers, positions=atoms.positions)
        charge = atoms.info.get("charge")
        record.info.update({"source": path.name, "frame": frame, "model": model.name,
                            "settings": settings.to_json()})
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


def _resume(output: Path, frames: list[tuple[Path, int, Atoms]], settings: RunSettings) -> int:
    """Number of complete records in ``output``, checked against ``frames`` and ``settings``; cuts off a partial tail."""
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
        made_with = record.info.get("settings")
        stale = stale_output(output, None if made_with is None else RunSettings.from_json(made_with), settings)
        if stale is not None:
            raise InvalidInputError(stale)
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
