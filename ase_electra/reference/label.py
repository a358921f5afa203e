"""Labelling in batches: the library behind ``electra-label``.

:func:`label_files` turns every selected frame of ASE-readable files into one record file,
``<stem>.npz`` for a file holding a single frame and ``<stem>_<frame>.npz`` otherwise (frame
counted in the file from 0, whatever ``index`` selects, so runs over different selections
never clash). All frames are read and checked before the first calculation; each record is
written atomically when ready, and outputs that exist are skipped unless ``overwrite``, so
an interrupted batch resumes where it stopped.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from ase import Atoms

from ..errors import ElectraError, InvalidInputError
from ..structures import FrameJob, plan_frames
from .pyscf import DEFAULT_BASIS, DEFAULT_CONV_TOL, DEFAULT_GRID_LEVEL, DEFAULT_XC, check_method, check_molecule
from .pyscf import label_structure
from .records import save_record

__all__ = ["check_structure", "label_files", "plan_labels"]


def check_structure(atoms: Atoms, charge: int = 0) -> int:
    """Number of electrons of ``atoms`` with total ``charge``; InvalidInputError if unlabellable.

    Refuses empty, periodic or non-finite structures and odd or non-positive electron counts.
    """
    return check_molecule(atoms, charge)


def plan_labels(paths: Iterable[str | os.PathLike], out_dir: str | os.PathLike, *, index: str = ":",
                charge: int = 0) -> list[FrameJob]:
    """Read and check every selected frame of ``paths`` and name its output in ``out_dir``.

    Raises FileFormatError or InvalidInputError (naming the file and frame) for unreadable
    files, unlabellable frames and two frames that would write the same output.
    """
    jobs = plan_frames(map(Path, paths), Path(out_dir), ".npz", index)
    for job in jobs:
        try:
            check_structure(job.atoms, charge)
        except InvalidInputError as err:
            raise InvalidInputError(f"{job.where}: {err}") from err
    return jobs


def label_files(
    paths: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    index: str = ":",
    overwrite: bool = False,
    xc: str = DEFAULT_XC,
    basis: str = DEFAULT_BASIS,
    conv_tol: float = DEFAULT_CONV_TOL,
    density_fit: bool = True,
    charge: int = 0,
    grid_level: int = DEFAULT_GRID_LEVEL,
    progress: Callable[[list[FrameJob]], Iterable[FrameJob]] | None = None,
) -> tuple[int, int]:
    """Label every selected frame of ``paths`` into ``out_dir``; returns (written, skipped).

    Frames, functional and basis are all checked before the first calculation; the
    method settings are those of :func:`~ase_electra.reference.label_structure`. Records
    are named by their output stem, with the input file's name as ``source``.
    ``progress`` wraps the list of frames to compute (e.g. ``tqdm``). Stops at the first
    failure; records written before it stay, complete.
    """
    jobs = plan_labels(paths, out_dir, index=index, charge=charge)
    check_method(xc.lower(), basis.lower(), {s for job in jobs for s in job.atoms.get_chemical_symbols()})
    todo = [job for job in jobs if overwrite or not job.output.exists()]
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for job in progress(todo) if progress else todo:
        try:
            record = label_structure(job.atoms, xc, basis, conv_tol, density_fit, charge, grid_level=grid_level,
                                     name=job.output.stem, source=job.source.name)
        except ElectraError as err:
            raise type(err)(f"{job.where}: {err}") from err
        save_record(job.output, record)
    return len(todo), len(jobs) - len(todo)
