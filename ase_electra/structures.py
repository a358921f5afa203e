"""Structure files in, one output per frame (or per file): reading, frame selection, output names.

Every batch command (``electra-density``, ``electra-label``) names outputs the same way:
``<stem><suffix>`` for a file holding one frame, otherwise ``<stem>_<frame><suffix>``
with ``frame`` the frame's position in the file (not in the ``index`` selection),
zero-padded to the digits of the file's frame count (``md_007.cube`` of 100 frames), so
names sort in frame order, runs over different selections never clash and reruns find
their outputs. Single-file outputs (one per input) are named ``<stem><suffix>``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ase import Atoms

from .errors import ElectraError, FileFormatError, InvalidInputError
from .io._files import require_file
from .runs import FRAME_ERRORS, Refusals

__all__ = [
    "FrameJob", "InputFile", "frame_name", "keep_valid", "name_outputs", "plan_frames", "read_frames", "read_inputs",
]


@dataclass(frozen=True, eq=False)
class FrameJob:
    """One frame of a structure file and the file its result goes to."""

    atoms: Atoms
    source: Path
    frame: int
    output: Path

    @property
    def where(self) -> str:
        """``path:frame``, for messages."""
        return f"{self.source}:{self.frame}"


@dataclass(frozen=True, eq=False)
class InputFile:
    """A structure file: its frame count and the ``(frame, atoms)`` an index selects."""

    path: Path
    count: int
    frames: list[tuple[int, Atoms]]


def read_frames(path: Path, index: str = ":") -> tuple[int, list[tuple[int, Atoms]]]:
    """Number of frames in ``path``, and ``(frame, atoms)`` for those ``index`` selects.

    ``index`` uses ASE's syntax (``':'``, ``'-1'``, ``'::10'``). Raises FileFormatError
    for missing, unreadable or empty files and InvalidInputError for a bad selection.
    """
    from ase.io import read
    from ase.io.formats import string2index

    path = require_file(path)
    try:
        selection = string2index(index)
    except ValueError as err:
        raise InvalidInputError(f"index: expected ASE syntax such as ':', '-1' or '::10', got {index!r}") from err
    if path.stat().st_size == 0:
        raise FileFormatError(f"{path}: no frames (empty file)")
    try:
        frames = read(path, index=":")
    except Exception as exc:  # ASE raises many types for unreadable input
        raise FileFormatError(f"{path}: cannot read structures ({exc.__class__.__name__}: {exc})") from exc
    numbers = list(range(len(frames)))
    try:
        chosen = numbers[selection] if isinstance(selection, slice) else [numbers[selection]]
    except IndexError as err:
        raise InvalidInputError(f"{path}: index {index!r} out of range for {len(frames)} frames") from err
    if not chosen:
        raise FileFormatError(f"{path}: no frames (empty file or empty index selection {index!r})")
    return len(frames), [(i, frames[i]) for i in chosen]


def read_inputs(
    paths: Iterable[Path], index: str = ":", *, refusals: Refusals | None = None, charge: int | None = None
) -> list[InputFile]:
    """Read every file of ``paths``; each frame's ``atoms.info['name']`` becomes ``path:frame``.

    Parameters
    ----------
    refusals : Refusals, optional
        Where unreadable files go (reported, then left out); without it they raise.
    charge : int, optional
        Total charge (elementary charges) set as ``atoms.info['charge']`` on frames that
        carry none.
    """
    files = []
    for path in map(Path, paths):
        try:
            count, frames = read_frames(path, index)
        except ElectraError as err:
            if refusals is None:
                raise
            refusals.add(str(path), err, frames=0)
            continue
        for frame, atoms in frames:
            atoms.info["name"] = f"{path}:{frame}"
            if charge is not None:
                atoms.info.setdefault("charge", charge)
        files.append(InputFile(path, count, frames))
    return files


def keep_valid(source: InputFile, check: Callable[[Atoms], None], refusals: Refusals) -> InputFile:
    """``source`` without the frames ``check`` rejects (it raises one of ``FRAME_ERRORS``); those are refused."""
    kept = []
    for frame, atoms in source.frames:
        try:
            check(atoms)
        except FRAME_ERRORS as err:
            refusals.add(f"{source.path}:{frame}", err)
            continue
        kept.append((frame, atoms))
    return InputFile(source.path, source.count, kept)


def frame_name(path: Path, frame: int, count: int) -> str:
    """Output stem of ``frame`` of a file of ``count`` frames: ``<stem>`` or ``<stem>_<frame, zero-padded>``.

    >>> frame_name(Path("md.xyz"), 7, 100), frame_name(Path("md.xyz"), 7, 10), frame_name(Path("w.xyz"), 0, 1)
    ('md_007', 'md_07', 'w')
    """
    return path.stem if count == 1 else f"{path.stem}_{frame:0{len(str(count))}d}"


def plan_frames(paths: Iterable[Path], out_dir: Path, suffix: str, index: str = ":") -> list[FrameJob]:
    """Every selected frame of ``paths`` with its output path in ``out_dir`` (see :func:`name_outputs`)."""
    return name_outputs(read_inputs(paths, index), out_dir, suffix)


def name_outputs(inputs: list[InputFile], out_dir: Path, suffix: str, *, single_file: bool = False) -> list[FrameJob]:
    """Every frame of ``inputs`` with its output path in ``out_dir``.

    With ``single_file`` every frame of an input goes to ``<stem><suffix>``. Raises
    InvalidInputError if two frames (or two inputs) would write the same output.
    """
    jobs: list[FrameJob] = []
    claimed: dict[Path, str] = {}
    for source in inputs:
        for frame, atoms in source.frames:
            name = source.path.stem if single_file else frame_name(source.path, frame, source.count)
            job = FrameJob(atoms, source.path, frame, out_dir / f"{name}{suffix}")
            owner = str(source.path) if single_file else job.where
            if claimed.setdefault(job.output, owner) != owner:
                raise InvalidInputError(f"{owner} and {claimed[job.output]} would both write {job.output}")
            jobs.append(job)
    return jobs
