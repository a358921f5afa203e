"""Structure files in, one output per frame: reading, frame selection, output names.

Every batch command (``electra-density``, ``electra-label``) names outputs the same way:
``<stem><suffix>`` for a file holding one frame, otherwise ``<stem>_<frame><suffix>``
with ``frame`` the frame's position in the file (not in the ``index`` selection), so
runs over different selections never clash and reruns find their outputs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ase import Atoms

from .errors import FileFormatError, InvalidInputError
from .io._files import require_file

__all__ = ["FrameJob", "read_frames", "plan_frames"]


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


def plan_frames(paths: Iterable[Path], out_dir: Path, suffix: str, index: str = ":") -> list[FrameJob]:
    """Every selected frame of ``paths`` with its output path in ``out_dir``.

    Each frame's ``atoms.info['name']`` is set to ``path:frame`` for messages. Raises
    InvalidInputError if two frames would write the same output.
    """
    jobs: dict[Path, FrameJob] = {}
    for path in map(Path, paths):
        count, frames = read_frames(path, index)
        for frame, atoms in frames:
            output = out_dir / (f"{path.stem}{suffix}" if count == 1 else f"{path.stem}_{frame}{suffix}")
            job = FrameJob(atoms, path, frame, output)
            atoms.info["name"] = job.where
            if output in jobs:
                raise InvalidInputError(f"{job.where} and {jobs[output].where} would both write {output}")
            jobs[output] = job
    return list(jobs.values())
