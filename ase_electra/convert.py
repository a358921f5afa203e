"""Batch conversion: structure files -> one density file per frame.

This is the library behind ``electra-density``. All frames are read and named first
(:mod:`ase_electra.structures`), then go through the model in batches; each output is
written atomically as soon as it is ready, so a failure in frame k leaves frames before
k complete and no partial file, and a rerun skips outputs that already exist.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from .density import Density
from .errors import InvalidInputError
from .grid import DEFAULT_MAX_POINTS
from .io import write_density
from .models import DensityModel
from .predict import grid_for, in_box_frame, predict_densities
from .structures import FrameJob, plan_frames

__all__ = ["ConversionSummary", "convert"]

Format = Literal["cube", "chgcar"]
SUFFIX = {"cube": ".cube", "chgcar": ".chgcar"}


@dataclass(frozen=True)
class ConversionSummary:
    """What a conversion did."""

    frames: int
    written: int
    skipped: int
    seconds: float

    def line(self, out_dir: Path) -> str:
        rate = self.written / self.seconds if self.seconds > 0 else math.inf
        return (
            f"{self.frames} frames: {self.written} written, {self.skipped} already present, "
            f"{self.seconds:.1f} s ({rate:.2f} frames/s) -> {out_dir}"
        )


def convert(
    files: list[Path],
    out_dir: Path,
    model: DensityModel,
    *,
    fmt: Format = "cube",
    spacing: float = 0.1,
    margin: float = 4.0,
    index: str = ":",
    batch_size: int = 1,
    overwrite: bool = False,
    png: bool = False,
    esp: bool = False,
    esp_spacing: float = 0.2,
    max_points: int = DEFAULT_MAX_POINTS,
    progress: Callable[[list[FrameJob]], Iterable[FrameJob]] | None = None,
) -> ConversionSummary:
    """Predict and write the density of every frame of ``files`` into ``out_dir``.

    Parameters
    ----------
    fmt : {"cube", "chgcar"}
        Output format; molecules written as CHGCAR are moved into their box.
    spacing, margin : float, Angstrom
        Grid spacing; vacuum around molecules (periodic cells use their cell).
    index : str
        ASE frame selection applied to every file.
    batch_size : int
        Frames per model call.
    png : bool
        Also write ``<output stem>.png`` per frame: log-scale density slices through the
        principal plane (:mod:`ase_electra.render`). A frame is done when both files exist;
        an existing density file is kept unless ``overwrite``.
    esp : bool
        Also write ``<output stem>_esp.cube`` per frame: the electrostatic potential of
        nuclei plus electrons in Hartree per unit charge on a box grid of ``esp_spacing``
        (Angstrom) with the same ``margin``
        (:mod:`ase_electra.properties.electrostatics`). Molecules only: a periodic frame
        raises InvalidInputError before anything is written.
    progress : callable, optional
        Wraps the frames still to write (e.g. ``tqdm``).
    """
    if fmt not in SUFFIX:
        raise InvalidInputError(f"format: expected one of {sorted(SUFFIX)}, got {fmt!r}")
    if batch_size < 1:
        raise InvalidInputError(f"batch size: expected >= 1, got {batch_size}")
    start = time.perf_counter()
    jobs = plan_frames(files, out_dir, SUFFIX[fmt], index)
    if esp:
        periodic = next((job for job in jobs if job.atoms.pbc.any()), None)
        if periodic is not None:
            raise InvalidInputError(
                f"{periodic.where}: --esp supports molecules only (no Ewald sum for periodic structures)"
            )
    todo = [job for job in jobs if overwrite or not all(p.exists() for p in _outputs(job, png, esp))]
    out_dir.mkdir(parents=True, exist_ok=True)
    stream = iter(progress(todo) if progress else todo)
    while batch := list(itertools.islice(stream, batch_size)):
        for job in batch:
            if not np.isfinite(job.atoms.positions).all():
                raise InvalidInputError(f"{job.where}: non-finite atomic positions")
        grids = [grid_for(job.atoms, spacing, margin, max_points) for job in batch]
        for job, density in zip(batch, predict_densities(model, [job.atoms for job in batch], grids)):
            picture = density
            if fmt == "chgcar":
                density = Density(*in_box_frame(density.atoms, density.grid), density.values)
            if overwrite or not job.output.exists():
                write_density(job.output, density, format=fmt)
            if png and (overwrite or not job.output.with_suffix(".png").exists()):
                _write_png(job, picture, model.name)
        if esp:
            _write_esp([job for job in batch if overwrite or not _esp_path(job).exists()], model, esp_spacing,
                       margin, max_points)
    return ConversionSummary(len(jobs), len(todo), len(jobs) - len(todo), time.perf_counter() - start)


def _outputs(job: FrameJob, png: bool, esp: bool) -> list[Path]:
    """The files a finished ``job`` leaves."""
    return [job.output] + ([job.output.with_suffix(".png")] if png else []) + ([_esp_path(job)] if esp else [])


def _esp_path(job: FrameJob) -> Path:
    return job.output.with_name(f"{job.output.stem}_esp.cube")


def _write_esp(jobs: list[FrameJob], model: DensityModel, spacing: float, margin: float, max_points: int) -> None:
    """``<output stem>_esp.cube`` of each job, Hartree per unit charge.

    The batch goes through the model a second time (the densities above keep only grid
    values); that costs milliseconds against seconds for the potential.
    """
    if not jobs:
        return
    import torch

    from .properties import potential_on_grid, write_potential_cube

    with torch.no_grad():
        mixtures = model.predict([job.atoms for job in jobs]).split()
    for job, mixture in zip(jobs, mixtures):
        grid = grid_for(job.atoms, spacing, margin, max_points)
        potential = potential_on_grid(mixture, job.atoms.numbers, job.atoms.positions, grid)  # volts
        write_potential_cube(_esp_path(job), job.atoms, grid, potential)


def _write_png(job: FrameJob, density: Density, model_name: str) -> None:
    """``<output stem>.png``: the density's slices, titled with the frame, formula and model."""
    from .render import write_density_png

    write_density_png(job.output.with_suffix(".png"), density, name=job.output.stem, model=model_name)
