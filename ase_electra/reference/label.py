"""Labelling in batches: the library behind ``electra-label``.

Molecules (``pbc`` False throughout) are labelled with PySCF (:mod:`.pyscf`), crystals
(periodic along a, b and c) and slabs (periodic along a and b, vacuum along c) with GPAW
(:mod:`.gpaw`); one batch may hold both, and GPAW is needed only when it holds a crystal
or slab. :func:`label_files` turns every selected frame of ASE-readable files into one record file,
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
from .gpaw import DEFAULT_KPT_DENSITY, DEFAULT_SMEARING, DEFAULT_SPACING, check_crystal, check_gpaw, label_crystal
from .pyscf import DEFAULT_BASIS, DEFAULT_CONV_TOL, DEFAULT_GRID_LEVEL, DEFAULT_XC, check_method, check_molecule
from .pyscf import label_structure
from .records import save_record

__all__ = ["check_structure", "label_files", "plan_labels"]


def check_structure(atoms: Atoms, charge: int = 0) -> int:
    """Number of electrons of ``atoms`` with total ``charge``; InvalidInputError if unlabellable.

    A molecule (:func:`~.pyscf.check_molecule`: an even, positive electron count), or a
    crystal or slab (:func:`~.gpaw.check_crystal`: periodic along a, b and c, or along a
    and b with vacuum along c); refuses wires, slabs with their vacuum along a or b,
    empty and non-finite structures.
    """
    return check_crystal(atoms, charge) if atoms.pbc.any() else check_molecule(atoms, charge)


def _check_crystals(jobs: list[FrameJob], xc: str) -> None:
    """GPAW installed, PBE, and a PAW dataset for every element of the crystals ``jobs``, else one error."""
    if not jobs:
        return
    if xc != "pbe":
        raise InvalidInputError(f"{jobs[0].where}: xc: crystals are labelled with PBE only, got {xc!r}")
    for symbol in sorted({s for job in jobs for s in job.atoms.get_chemical_symbols()}):
        try:
            check_gpaw([symbol])
        except InvalidInputError as err:
            first = next(job for job in jobs if symbol in job.atoms.get_chemical_symbols())
            raise InvalidInputError(f"{first.where}: {err}") from err


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
    ecut: float | None = None,
    kpt_density: float = DEFAULT_KPT_DENSITY,
    smearing: float = DEFAULT_SMEARING,
    spacing: float = DEFAULT_SPACING,
    progress: Callable[[list[FrameJob]], Iterable[FrameJob]] | None = None,
) -> tuple[int, int]:
    """Label every selected frame of ``paths`` into ``out_dir``; returns (written, skipped).

    Frames, functional, basis and PAW datasets are all checked before the first
    calculation. Molecules get the settings of :func:`~.pyscf.label_structure` (``xc``,
    ``basis``, ``conv_tol``, ``density_fit``, ``grid_level``), crystals those of
    :func:`~.gpaw.label_crystal` (``ecut`` eV, ``kpt_density`` per 1/Angstrom, ``smearing``
    eV, ``spacing`` Angstrom; PBE only). Records are named by their output stem, with the
    input file's name as ``source``. ``progress`` wraps the list of frames to compute
    (e.g. ``tqdm``). Stops at the first failure; records written before it stay, complete.
    """
    jobs = plan_labels(paths, out_dir, index=index, charge=charge)
    molecules = [job for job in jobs if not job.atoms.pbc.any()]
    if molecules:
        check_method(xc.lower(), basis.lower(), {s for job in molecules for s in job.atoms.get_chemical_symbols()})
    _check_crystals([job for job in jobs if job.atoms.pbc.any()], xc.lower())
    todo = [job for job in jobs if overwrite or not job.output.exists()]
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for job in progress(todo) if progress else todo:
        try:
            if job.atoms.pbc.any():
                record = label_crystal(job.atoms, ecut=ecut, kpt_density=kpt_density, smearing=smearing,
                                       spacing=spacing, charge=charge, name=job.output.stem, source=job.source.name)
            else:
                record = label_structure(job.atoms, xc, basis, conv_tol, density_fit, charge,
                                         grid_level=grid_level, name=job.output.stem, source=job.source.name)
        except ElectraError as err:
            raise type(err)(f"{job.where}: {err}") from err
        save_record(job.output, record)
    return len(todo), len(jobs) - len(todo)
