"""Batch conversion: structure files -> density files, one per frame or one per input.

This is the library behind ``electra-density``. All frames are read first
(:mod:`ase_electra.structures`) and the frames of one input file get one grid: molecules
share the box around all their frames (plus margin, or a fixed ``box``), periodic frames
keep their cells with one grid shape, so frames can be differenced point by point.
Frames then go through the model in batches and each output is written atomically as
soon as it is ready.

Reruns and failures (:mod:`ase_electra.runs`): every output records the settings that
made it; a rerun skips outputs made with the same settings and stops before writing
anything if an existing output was made otherwise. Frames that cannot be converted
(unknown elements, non-finite positions, a grid too large) are refused one by one and
the others are written.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from ase import Atoms

from .density import Density
from .errors import InvalidInputError
from .grid import DEFAULT_MAX_POINTS, Grid
from .io import FramesWriter, read_settings, settings_comment, write_density
from .models import DensityModel
from .models.base import check_for_model, model_identity
from .predict import grid_for, in_box_frame, predict_densities
from .runs import FRAME_ERRORS, Refusals, RunSettings, RunSummary, package_version, run_batches, stale_output
from .structures import FrameJob, InputFile, keep_valid, name_outputs, read_inputs

if TYPE_CHECKING:
    from .gaussians import GaussianMixture
    from .properties import VacuumLevel

__all__ = ["Format", "Sampling", "convert"]

Format = Literal["cube", "chgcar", "h5", "mixtures"]
Sampling = Literal["auto", "point", "voxel"]
SUFFIX = {"cube": ".cube", "chgcar": ".chgcar", "h5": ".h5", "mixtures": ".mixtures.h5"}
_SINGLE_FILE = ("h5", "mixtures")
_DESCRIPTION = "ase-electra electron density, e/bohr^3"
_AXES = {"a": 0, "b": 1, "c": 2, "x": 0, "y": 1, "z": 2}  # --planar-average: lattice axes, or Cartesian ones


@dataclass(frozen=True)
class _Result:
    """What the model made of one frame: its density on its grid and/or its mixture."""

    density: Density | None
    mixture: GaussianMixture | None


def convert(
    files: list[Path],
    out_dir: Path,
    model: DensityModel,
    *,
    fmt: Format = "cube",
    spacing: float = 0.1,
    margin: float = 4.0,
    box: tuple[float, float, float] | None = None,
    index: str = ":",
    batch_size: int = 1,
    overwrite: bool = False,
    compress: bool = False,
    sampling: Sampling = "auto",
    charge: int | None = None,
    png: bool = False,
    esp: bool = False,
    esp_spacing: float = 0.2,
    planar_average: str | None = None,
    fermi_level: float | None = None,
    max_points: int = DEFAULT_MAX_POINTS,
    progress: Callable[[list[FrameJob]], Iterable[FrameJob]] | None = None,
    report: Callable[[str], None] | None = None,
) -> RunSummary:
    """Predict and write the density of every frame of ``files`` into ``out_dir``.

    Parameters
    ----------
    fmt : {"cube", "chgcar", "h5", "mixtures"}
        ``cube``/``chgcar``: one file per frame, ``<stem>_<frame>.cube`` (molecules
        written as CHGCAR are moved into their box). ``h5``: one HDF5 file per input,
        ``<stem>.h5``, with every frame's structure, Gaussian mixture and float32 grid
        values; ``mixtures``: ``<stem>.mixtures.h5``, the same without grid
        (:mod:`ase_electra.io.frames`).
    spacing, margin : float, Angstrom
        Grid spacing; vacuum around the molecules of all frames of a file (periodic
        cells use their cell).
    box : tuple of 3 float, Angstrom, optional
        Fixed box for molecules instead of ``margin``, centred on the file's frames;
        frames with atoms outside it are refused.
    index : str
        ASE frame selection applied to every file.
    batch_size : int
        Frames per model call.
    compress : bool
        gzip: ``.cube.gz``/``.chgcar.gz``, or HDF5's deflate filter inside ``.h5``.
    sampling : {"auto", "point", "voxel"}
        Grid values: the density at each point, or values whose grid sum integrates to
        the electron count (:func:`~ase_electra.predict.predict_densities`); auto:
        voxel for CHGCAR (VASP's convention), point otherwise.
    charge : int, optional
        Total charge of frames that carry no ``atoms.info['charge']``, elementary charges.
    png, esp : bool
        Also write ``<output stem>.png`` (log-scale density slices, :mod:`ase_electra.render`)
        or ``<output stem>_esp.cube`` (electrostatic potential in Hartree per unit
        charge on a grid of ``esp_spacing``: molecules, slabs and crystals, each with
        the zero :func:`~ase_electra.properties.potential_on_grid` states; wires are
        refused) per frame; cube and chgcar only. A frame is done when all its files exist.
    planar_average : {"a", "b", "c", "x", "y", "z"}, optional
        With ``esp``, also write ``<output stem>_esp_<axis>.dat``: the potential (volts)
        averaged over the planes of that lattice axis against their height (Angstrom) along
        the planes' normal; x, y, z name the lattice axis whose planes are perpendicular to
        that Cartesian axis (refused if there is none). Its header gives the vacuum levels
        (:func:`~ase_electra.properties.vacuum_levels`: the energy, eV, of an electron at
        rest in each vacuum region, ``-e`` times the potential) when some plane lies 3
        Angstrom from every atom, and with ``fermi_level`` (eV, on the potential's zero)
        the work functions, vacuum level minus Fermi level; the summary line gives them too.
    progress : callable, optional
        Wraps the frames still to write (e.g. ``tqdm``).
    report : callable, optional
        Receives one line per refused frame or unreadable file, as it happens.

    Returns
    -------
    RunSummary
        Its note gives the worst relative difference between a written frame's grid sum
        (times voxel volume) and its electron count.

    Raises
    ------
    InvalidInputError
        For bad settings, or an existing output made with other settings (before
        anything is written; ``overwrite`` replaces it).
    """
    if fmt not in SUFFIX:
        raise InvalidInputError(f"format: expected one of {sorted(SUFFIX)}, got {fmt!r}")
    if batch_size < 1:
        raise InvalidInputError(f"batch size: expected >= 1, got {batch_size}")
    if (png or esp) and fmt in _SINGLE_FILE:
        raise InvalidInputError(f"--png and --esp write files per frame: use --format cube or chgcar, not {fmt}")
    start = time.perf_counter()
    refusals = Refusals(report)
    inputs, grid_of = [], {}
    for source in read_inputs(files, index, refusals=refusals, charge=charge):
        source = keep_valid(source, lambda atoms: check_for_model(model, [atoms]), refusals)
        if fmt != "mixtures":
            source, grids = _gridded(source, spacing, margin, box, max_points, refusals)
            grid_of |= {(source.path, frame): grid for (frame, _), grid in zip(source.frames, grids)}
        if source.frames:
            inputs.append(source)
    if (planar_average is not None or fermi_level is not None) and not esp:
        raise InvalidInputError("--planar-average and --fermi-level average the potential: add --esp")
    if fermi_level is not None and planar_average is None:
        raise InvalidInputError("--fermi-level gives work functions from the planar average: add --planar-average")
    if planar_average is not None and planar_average not in _AXES:
        raise InvalidInputError(f"--planar-average: expected one of {', '.join(_AXES)}, got {planar_average!r}")
    if esp and (wire := next((f"{s.path}:{i}" for s in inputs for i, a in s.frames if sum(a.pbc) == 1), None)):
        raise InvalidInputError(f"{wire}: --esp supports molecules, slabs and crystals, not one periodic axis (a wire)")
    if planar_average in ("x", "y", "z"):
        for source in inputs:
            for frame, atoms in source.frames:
                _lattice_axis(atoms, planar_average, f"{source.path}:{frame}")
    sampled = _sampling(sampling, fmt)
    gridded = fmt != "mixtures"
    settings = RunSettings(
        model=model_identity(model), version=package_version(), format=fmt, spacing=spacing if gridded else None,
        margin=margin if gridded and box is None else None, box=box if gridded else None, sampling=sampled,
        charge=charge,
    )
    sink = _Sink(out_dir, fmt, SUFFIX[fmt] + (".gz" if compress and fmt not in _SINGLE_FILE else ""), compress,
                 overwrite, png, esp, esp_spacing, margin, max_points, model.name, planar_average, fermi_level)
    jobs = name_outputs(inputs, out_dir, sink.suffix, single_file=fmt in _SINGLE_FILE)
    sink.settings = {source.path: _with_frames(settings, source, fmt, index) for source in inputs}
    todo = jobs if overwrite else [job for job in jobs if not sink.done(job)]

    def compute(batch: list[FrameJob]) -> list[_Result]:
        structures = [job.atoms for job in batch]
        mixtures = _mixtures(model, structures) if fmt in _SINGLE_FILE or esp else [None] * len(batch)
        if not gridded:
            return [_Result(None, m) for m in mixtures]
        grids = [grid_of[job.source, job.frame] for job in batch]
        densities = predict_densities(model, structures, grids, sampling=sampled)
        return [_Result(d, m) for d, m in zip(densities, mixtures)]

    with sink:
        written = run_batches(progress(todo) if progress else todo, batch_size, compute, sink.write,
                              lambda job: job.where, refusals)
    note = ""
    if sink.errors:
        name, error = max(sink.errors.items(), key=lambda item: abs(item[1]))
        note = f"grid sum / electrons - 1: worst {100 * error:+.3f} % ({name})"
    if sink.vacuum:
        note = "; ".join(filter(None, [note, _vacuum_note(sink.vacuum, fermi_level)]))
    n_frames = sum(len(source.frames) for source in inputs) + refusals.frames
    return RunSummary(n_frames, written, len(jobs) - len(todo), time.perf_counter() - start,
                      refusals.frames, refusals.failure(), note)


class _Sink:
    """Writes each frame's result: one file per frame, or appended to its input's HDF5 file.

    ``settings`` (per input path) are set once outputs are named. Single-file outputs are
    written one input at a time (frames arrive in input order), each atomically; an
    exception drops the one being written. ``errors`` collects each written frame's
    grid-sum error (:func:`_integration_error`).
    """

    def __init__(self, out_dir: Path, fmt: Format, suffix: str, compress: bool, overwrite: bool, png: bool,
                 esp: bool, esp_spacing: float, margin: float, max_points: int, model_name: str,
                 planar_average: str | None = None, fermi_level: float | None = None) -> None:
        self.out_dir, self.fmt, self.suffix, self.compress, self.overwrite = out_dir, fmt, suffix, compress, overwrite
        self.png, self.esp, self.esp_spacing, self.margin, self.max_points = png, esp, esp_spacing, margin, max_points
        self.model_name, self.planar_average, self.fermi_level = model_name, planar_average, fermi_level
        self.settings: dict[Path, RunSettings] = {}
        self.errors: dict[str, float] = {}
        self.vacuum: dict[str, list[VacuumLevel]] = {}  # each written frame's vacuum levels (planar average)
        self._writer: tuple[Path, FramesWriter] | None = None

    @property
    def extras(self) -> list[str]:
        """Endings of the files asked for beside each frame's density."""
        return ([".png"] if self.png else []) + (["_esp.cube"] if self.esp else []) + \
            ([f"_esp_{self.planar_average}.dat"] if self.planar_average else [])

    def sibling(self, job: FrameJob, ending: str) -> Path:
        """``<frame name><ending>`` beside the output: ``md_007.png`` for ``md_007.cube.gz``."""
        return job.output.with_name(job.output.name[: -len(self.suffix)] + ending)

    def done(self, job: FrameJob) -> bool:
        """True if ``job``'s outputs exist; InvalidInputError if its output was made with other settings."""
        if not job.output.exists():
            return False
        reason = stale_output(job.output, read_settings(job.output), self.settings[job.source])
        if reason is not None:
            raise InvalidInputError(reason)
        return all(self.sibling(job, ending).exists() for ending in self.extras)

    def write(self, job: FrameJob, result: _Result) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)  # only now: a run that writes nothing leaves no folder
        if result.density is not None:
            self.errors[job.where] = _integration_error(result.density)
        if self.fmt in _SINGLE_FILE:
            self._append(job, result)
        else:
            self._write_files(job, result)

    def _append(self, job: FrameJob, result: _Result) -> None:
        if self._writer is None or self._writer[0] != job.output:
            self.__exit__(None, None, None)  # the previous input's file is complete
            writer = FramesWriter(job.output, self.settings[job.source], job.source.name,
                                  with_grid=self.fmt == "h5", compress=self.compress)
            self._writer = (job.output, writer)
        self._writer[1].append(job.frame, job.atoms, result.mixture, result.density)

    def _write_files(self, job: FrameJob, result: _Result) -> None:
        density = result.density
        if self.overwrite or not job.output.exists():
            comment = settings_comment(_DESCRIPTION, self.settings[job.source])
            stored = Density(*in_box_frame(density.atoms, density.grid), density.values) if self.fmt == "chgcar" \
                else density
            write_density(job.output, stored, format=self.fmt, comment=comment)
        picture, potential = self.sibling(job, ".png"), self.sibling(job, "_esp.cube")
        if self.png and (self.overwrite or not picture.exists()):
            from .render import write_density_png

            write_density_png(picture, density, name=self.sibling(job, "").name, model=self.model_name)
        average = self.sibling(job, f"_esp_{self.planar_average}.dat") if self.planar_average else None
        if self.esp and (self.overwrite or not potential.exists() or (average and not average.exists())):
            from .properties import potential_on_grid, write_potential_cube

            grid = grid_for(job.atoms, self.esp_spacing, self.margin, self.max_points)
            volts = potential_on_grid(result.mixture, job.atoms.numbers, job.atoms.positions, grid)
            write_potential_cube(potential, job.atoms, grid, volts)
            if average:
                axis = _lattice_axis(job.atoms, self.planar_average, job.where) if any(job.atoms.pbc) \
                    else _AXES[self.planar_average]
                self.vacuum[job.where] = write_planar_average(average, job.atoms, grid, volts, axis, self.fermi_level)

    def __enter__(self) -> _Sink:
        return self

    def __exit__(self, *exc) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer[1], None
            writer.__exit__(*exc)


def _gridded(
    source: InputFile, spacing: float, margin: float, box: tuple[float, float, float] | None, max_points: int,
    refusals: Refusals,
) -> tuple[InputFile, list[Grid]]:
    """``source`` without the frames that get no grid (refused), and each kept frame's grid.

    Molecules of one file share one box around all of them; periodic frames (crystals,
    slabs, wires) keep their cells, with the largest grid shape any of them needs. A frame
    whose ``pbc`` differs from the file's first frame, or with atoms outside a fixed
    ``box``, is refused.
    """
    if not source.frames:
        return source, []
    pbc = tuple(source.frames[0][1].pbc)
    kept = []
    for frame, atoms in source.frames:
        if tuple(atoms.pbc) == pbc:
            kept.append((frame, atoms))
        else:
            refusals.add(f"{source.path}:{frame}", InvalidInputError(
                f"pbc {list(atoms.pbc)} in a file whose first frame has pbc {list(pbc)} (one grid per file)"))
    try:
        if any(pbc):
            cells = [grid_for(atoms, spacing, margin, max_points) for _, atoms in kept]
            shape = tuple(np.max([g.shape for g in cells], axis=0))
            grids = [Grid(g.cell, shape, g.origin, g.pbc) for g in cells]
        else:
            grid = _box(np.concatenate([atoms.positions for _, atoms in kept]), spacing, margin, box, max_points)
            kept = _inside(source.path, kept, grid, box, refusals) if box is not None else kept
            grids = [grid] * len(kept)
    except FRAME_ERRORS as err:
        refusals.add(str(source.path), err, frames=len(kept))
        kept, grids = [], []
    return InputFile(source.path, source.count, kept), grids


def _box(positions: np.ndarray, spacing: float, margin: float, box: tuple[float, float, float] | None,
         max_points: int) -> Grid:
    """The box around ``positions`` (N, 3) Angstrom with ``margin``, or a ``box`` centred on them."""
    if box is None:
        return Grid.for_molecule(positions, spacing, margin, max_points)
    centre = 0.5 * (positions.min(0) + positions.max(0))
    half = 0.5 * np.asarray(box, dtype=np.float64)
    return Grid.for_molecule(np.stack([centre - half, centre + half]), spacing, 0.0, max_points)


def _inside(path: Path, frames: list[tuple[int, Atoms]], grid: Grid, box: tuple[float, float, float],
            refusals: Refusals) -> list[tuple[int, Atoms]]:
    """The frames whose atoms all lie within the points of ``grid``, the ``box``; the others are refused."""
    lo = grid.origin
    hi = lo + np.diag(grid.cell) * (1 - 1 / np.array(grid.shape))  # the last grid point
    kept = []
    for frame, atoms in frames:
        if np.all((atoms.positions >= lo) & (atoms.positions <= hi)):
            kept.append((frame, atoms))
        else:
            size = " x ".join(f"{length:g}" for length in box)
            refusals.add(f"{path}:{frame}", InvalidInputError(f"atoms outside the {size} A box"))
    return kept


def _sampling(sampling: Sampling, fmt: Format) -> str | None:
    """auto -> voxel for CHGCAR, point for cube and h5; None without a grid."""
    if sampling not in ("auto", "point", "voxel"):
        raise InvalidInputError(f"sampling: expected 'auto', 'point' or 'voxel', got {sampling!r}")
    if fmt == "mixtures":
        return None
    return ("voxel" if fmt == "chgcar" else "point") if sampling == "auto" else sampling


def _with_frames(settings: RunSettings, source: InputFile, fmt: Format, index: str) -> RunSettings:
    """A single-file output's settings also name the frames it holds (the selection, as a slice)."""
    if fmt not in _SINGLE_FILE:
        return settings
    from ase.io.formats import string2index

    selection = string2index(index)
    numbers = range(source.count)[selection if isinstance(selection, slice) else slice(selection, selection + 1)]
    return dataclasses.replace(settings, frames=f"{numbers.start}:{numbers.stop}:{numbers.step}")


def _mixtures(model: DensityModel, structures: list[Atoms]) -> list[GaussianMixture]:
    """Each structure's mixture, on the CPU as float64 (a second pass through the model: milliseconds)."""
    import torch

    with torch.no_grad():
        return model.predict(structures).to("cpu", torch.float64).split()


def _integration_error(density: Density) -> float:
    """Grid sum times voxel volume over the electron count (sum of Z minus charge), minus one."""
    electrons = float(density.atoms.numbers.sum()) - float(density.atoms.info.get("charge", 0))
    return density.n_electrons / electrons - 1.0


def _lattice_axis(atoms: Atoms, name: str, where: str) -> int:
    """The lattice axis (0, 1, 2) of ``--planar-average name`` for periodic ``atoms`` (x, y, z: the axis whose
    planes are perpendicular to that Cartesian axis)."""
    axis = _AXES[name]
    if name in "abc" or not any(atoms.pbc):
        return axis
    from .properties.electrostatics import plane_normal

    for i in range(3):
        if abs(plane_normal(atoms.cell.array, i)[axis]) > 1 - 1e-6:
            return i
    raise InvalidInputError(f"{where}: no lattice planes are perpendicular to {name}; "
                            "give the lattice axis (--planar-average a, b or c)")


def write_planar_average(path: Path, atoms: Atoms, grid: Grid, volts: np.ndarray, axis: int,
                         fermi_level: float | None) -> list[VacuumLevel]:
    """Write the potential's planar average over lattice axis ``axis`` as text; returns its vacuum levels.

    Columns: plane height along the planes' normal (Angstrom) and potential (volts). The
    header names the axis and normal, the potential's zero, and each vacuum level (and work
    function with ``fermi_level``, eV) of :func:`~ase_electra.properties.vacuum_levels`.
    """
    from .properties import planar_average, vacuum_levels
    from .properties.electrostatics import plane_normal

    heights, averages = planar_average(volts, grid, axis)
    normal = plane_normal(grid.cell, axis)
    period = float(grid.cell[axis] @ normal) if grid.pbc[axis] else None
    zero = {0: "zero at infinity (a molecule)", 2: "planar average -(2 pi / A) sum_k q_k E|z - Z_k| (a slab)",
            3: "zero mean over the cell (a crystal: VASP's and GPAW's)"}[sum(grid.pbc)]
    lines = [f"ase-electra planar average of the electrostatic potential (nuclei + electrons) over the planes of "
             f"lattice axis {'abc'[axis]}, normal {np.round(normal, 6).tolist()}; potential {zero}"]
    try:
        levels = vacuum_levels(heights, averages, atoms.positions @ normal, period)
    except InvalidInputError as err:
        levels = []
        lines.append(str(err))
    for level in levels:
        lines.append(f"vacuum level {level.side}: {level.energy:.6f} eV (an electron at rest, -e * potential) "
                     f"at {level.height:.3f} A, flat to {level.flatness:.1e} eV over 1 A")
        if fermi_level is not None:
            lines.append(f"work function {level.side}: {level.energy - fermi_level:.6f} eV "
                         f"(vacuum level - Fermi level {fermi_level:g} eV)")
    lines.append("height (Angstrom), potential (V)")
    text = "".join(f"# {line}\n" for line in lines) + "".join(f"{z:.6f} {v:.9f}\n" for z, v in zip(heights, averages))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return levels


def _vacuum_note(vacuum: dict[str, list[VacuumLevel]], fermi_level: float | None) -> str:
    """The summary's words on vacuum levels and work functions (eV) of the frames written."""
    energies = [level.energy for levels in vacuum.values() for level in levels]
    if not energies:
        return "no vacuum in the planar averages"

    def span(values: list[float]) -> str:
        lo, hi = (round(v, 3) + 0.0 for v in (min(values), max(values)))  # + 0.0: no "-0.000"
        return f"{lo:.3f}" if lo == hi else f"{lo:.3f} to {hi:.3f}"

    note = f"vacuum level {span(energies)} eV"
    if fermi_level is not None:
        note += f", work function {span([e - fermi_level for e in energies])} eV"
    return note
