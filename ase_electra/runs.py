"""What the batch commands share: settings that outputs record, refused frames, summaries.

``electra-density`` (:mod:`ase_electra.convert`) and ``electra-properties``
(:mod:`ase_electra.properties.trajectory`) both

- record in every output the :class:`RunSettings` that made it, and on a rerun skip an
  output only if it was made with the same settings; any other existing output stops
  the run before anything is written, with one line naming the first difference
  (:func:`stale_output`);
- keep going past frames they cannot convert: each refused frame (or unreadable file)
  is reported in one line as it happens and counted in the :class:`RunSummary`
  (:class:`Refusals`, :func:`run_batches`).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from .errors import ElectraError, GridTooLargeError, InvalidInputError

__all__ = ["FRAME_ERRORS", "Refusals", "RunSettings", "RunSummary", "package_version", "run_batches", "stale_output"]

T = TypeVar("T")
R = TypeVar("R")

#: Errors that refuse one frame (or one file) and let the run go on; anything else stops it.
FRAME_ERRORS = (InvalidInputError, GridTooLargeError)


def package_version() -> str:
    """The installed ase-electra's version (``importlib.metadata``)."""
    from importlib.metadata import version

    return version("ase-electra")


@dataclass(frozen=True)
class RunSettings:
    """The settings an output was made with; ``None`` means "does not apply".

    Parameters
    ----------
    model : str
        The model's name (``DensityModel.name``).
    version : str
        ase-electra's version.
    format : str, optional
        Output format (``cube``, ``chgcar``, ``h5``, ``mixtures``, ``extxyz``).
    spacing : float, optional
        Grid spacing, Angstrom.
    margin : float, optional
        Vacuum around molecules, Angstrom (``None`` when ``box`` is given).
    box : tuple of 3 float, optional
        Fixed box lengths of molecules' grids, Angstrom.
    sampling : str, optional
        ``point`` or ``voxel`` (see :func:`ase_electra.predict.predict_densities`).
    charge : int, optional
        Total charge given to frames that carry none, elementary charges.
    frames : str, optional
        The frames of the input held by a single-file output, as a slice ``start:stop:step``.

    Examples
    --------
    >>> old = RunSettings(model="promolecule", version="0.1.0", spacing=0.1)
    >>> old.difference(RunSettings.from_json(old.to_json()))
    >>> old.difference(dataclasses.replace(old, spacing=0.2))
    'spacing 0.1, not 0.2'
    """

    model: str
    version: str
    format: str | None = None
    spacing: float | None = None
    margin: float | None = None
    box: tuple[float, float, float] | None = None
    sampling: str | None = None
    charge: int | None = None
    frames: str | None = None

    def to_json(self) -> str:
        """One line of JSON, the settings that apply only."""
        return json.dumps({k: v for k, v in dataclasses.asdict(self).items() if v is not None}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> RunSettings:
        """Parse :meth:`to_json`'s output; keys this version does not know are kept out."""
        data = json.loads(text)
        if not isinstance(data, dict) or not {"model", "version"} <= data.keys():
            raise InvalidInputError(f"settings: expected a JSON object with model and version, got {text[:80]!r}")
        if data.get("box") is not None:
            data["box"] = tuple(data["box"])
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def difference(self, new: RunSettings) -> str | None:
        """``"<name> <self's value>, not <new's value>"`` for the first setting that differs, else None."""
        for field in dataclasses.fields(self):
            old_value, new_value = getattr(self, field.name), getattr(new, field.name)
            if old_value != new_value:
                return f"{field.name} {_shown(old_value)}, not {_shown(new_value)}"
        return None


def _shown(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return " x ".join(f"{v:g}" for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def stale_output(path: Path, made_with: RunSettings | None, settings: RunSettings) -> str | None:
    """The one-line reason an existing output may not be kept, or None if it was made with ``settings``.

    ``made_with`` is what the output records (None: it records nothing, e.g. written by
    an older ase-electra).
    """
    if made_with is None:
        return f"{path} records no settings (an older ase-electra made it): use --overwrite to replace it"
    difference = made_with.difference(settings)
    return None if difference is None else f"{path} was made with {difference}: use --overwrite to replace it"


class Refusals:
    """Frames (``path:frame``) and files (``path``) a run could not convert, reported as they come.

    ``report`` receives one line per refusal (the CLI writes it above the progress bar).
    """

    def __init__(self, report: Callable[[str], None] | None = None) -> None:
        self._report = report
        self.lines: list[str] = []
        self.frames = 0
        self.files = 0

    def add(self, where: str, error: ElectraError, frames: int = 1) -> None:
        """Record that ``where`` (``frames`` frames; 0: a file that cannot be read) was refused because of ``error``."""
        text = str(error).splitlines()[0] if str(error) else type(error).__name__
        line = text if text.startswith(where) else f"{where}: {text}"
        self.lines.append(line)
        self.frames += frames
        self.files += frames == 0
        if self._report is not None:
            self._report(line)

    def failure(self) -> str | None:
        """``"3 frames refused"`` (and unreadable files), or None if nothing was refused."""
        parts = [f"{n} {noun}{'s' * (n != 1)} {what}" for n, noun, what in
                 ((self.frames, "frame", "refused"), (self.files, "file", "unreadable")) if n]
        return ", ".join(parts) or None


def run_batches(
    items: Iterable[T],
    batch_size: int,
    compute: Callable[[list[T]], Sequence[R]],
    write: Callable[[T, R], None],
    where: Callable[[T], str],
    refusals: Refusals,
) -> int:
    """``write(item, result)`` for each item, computing ``batch_size`` items at a time; returns items written.

    A batch whose ``compute`` raises one of :data:`FRAME_ERRORS` is computed again item
    by item, so only the items that fail are refused (reported with ``where(item)``).
    """
    written = 0
    stream = iter(items)
    while batch := list(itertools.islice(stream, batch_size)):
        for part, results in _computed(batch, compute, where, refusals):
            for item, result in zip(part, results):
                write(item, result)
                written += 1
    return written


def _computed(
    batch: list[T], compute: Callable[[list[T]], Sequence[R]], where: Callable[[T], str], refusals: Refusals
) -> Iterator[tuple[list[T], Sequence[R]]]:
    try:
        yield batch, compute(batch)
        return
    except FRAME_ERRORS as err:
        if len(batch) == 1:
            refusals.add(where(batch[0]), err)
            return
    for item in batch:
        yield from _computed([item], compute, where, refusals)


@dataclass(frozen=True)
class RunSummary:
    """What a batch run did: frames selected, written, kept from an earlier run, refused.

    ``failure`` is :meth:`Refusals.failure` (None if nothing was refused); ``note`` ends the line.
    """

    frames: int
    written: int
    skipped: int
    seconds: float
    refused: int = 0
    failure: str | None = None
    note: str = ""

    def line(self, out: Path) -> str:
        """One line for the terminal, e.g. ``4 frames: 3 written, 0 already present, 1 refused, ...``."""
        rate = self.written / self.seconds if self.seconds > 0 else math.inf
        refused = f", {self.refused} refused" if self.refused else ""
        note = f"; {self.note}" if self.note else ""
        return (
            f"{self.frames} frames: {self.written} written, {self.skipped} already present{refused}, "
            f"{self.seconds:.1f} s ({rate:.2f} frames/s){note} -> {out}"
        )
