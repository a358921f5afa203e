"""Every frame of a trajectory in one HDF5 file: structures, Gaussian mixtures, grid values.

``electra-density --format h5`` writes ``<stem>.h5`` per input file and ``--format
mixtures`` writes ``<stem>.mixtures.h5``, the same layout without grid and values. F
frames, N atoms and K Gaussians in all (frames may differ in size), units as inside the
package::

    attrs: settings (JSON, :class:`~ase_electra.runs.RunSettings`), source (input file name)
    frames            (F,) int64           frame number in the input file
    atoms/counts      (F,) int64           atoms per frame
    atoms/numbers     (N,) int64           atomic numbers, frame after frame
    atoms/positions   (N, 3) float64       Angstrom
    atoms/cells       (F, 3, 3) float64    Angstrom
    atoms/pbc         (F, 3) bool
    atoms/charges     (F,) float64         total charge, elementary charges (NaN: none given)
    mixture/counts    (F,) int64           Gaussians per frame
    mixture/weights   (K,) float64         electrons
    mixture/centres   (K, 3) float64       Angstrom
    mixture/scale_tril (K, 3, 3) float64   Angstrom, lower-triangular
    grid/cells        (F, 3, 3) float64    Angstrom (h5 only; frames of molecules share one box)
    grid/origins      (F, 3) float64       Angstrom
    grid/pbc          (3,) bool
    values            (F, nx, ny, nz) float32  e/Angstrom^3, one chunk per frame

The mixtures are what the model predicted (float64), so
:func:`ase_electra.evaluate.evaluate_points` gives the density exactly at any point;
``values`` are float32 (about 7 significant digits). Files are written atomically, and
gzip-compressed inside (HDF5's shuffle and deflate filters) when asked. Any HDF5 tool
reads them; :func:`read_density_frames` returns :class:`DensityFrames`.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from ase import Atoms

from ..density import Density
from ..errors import FileFormatError
from ..grid import Grid
from ..runs import RunSettings
from ._atomic import atomic_path
from ._compressed import GZIP_LEVEL
from ._files import first_line, require_file

if TYPE_CHECKING:
    from ..gaussians import GaussianMixture

__all__ = ["DensityFrames", "FramesWriter", "read_density_frames", "read_frames_settings"]

_RAGGED = {  # dataset -> (per-item shape, dtype); one row per atom or Gaussian
    "atoms/numbers": ((), np.int64),
    "atoms/positions": ((3,), np.float64),
    "mixture/weights": ((), np.float64),
    "mixture/centres": ((3,), np.float64),
    "mixture/scale_tril": ((3, 3), np.float64),
}
_PER_FRAME = {  # dataset -> (per-frame shape, dtype); one row per frame
    "frames": ((), np.int64),
    "atoms/counts": ((), np.int64),
    "atoms/cells": ((3, 3), np.float64),
    "atoms/pbc": ((3,), bool),
    "atoms/charges": ((), np.float64),
    "mixture/counts": ((), np.int64),
}
_GRID = {"grid/cells": ((3, 3), np.float64), "grid/origins": ((3,), np.float64)}


@dataclass(frozen=True, eq=False)
class DensityFrames:
    """The frames of one file written by ``electra-density --format h5`` or ``mixtures``.

    Parameters
    ----------
    source : str
        Name of the structure file the frames came from.
    frames : ndarray, shape (F,)
        Each frame's number in that file.
    atoms : list of ase.Atoms
        Each frame's structure (Angstrom; ``info['charge']`` where one was given).
    mixtures : list of GaussianMixture
        Each frame's predicted density (float64, CPU): exact at any point with
        :func:`ase_electra.evaluate.evaluate_points`.
    grids : list of Grid, or None
        Each frame's grid (one shared box for molecules); None for a mixtures file.
    values : ndarray, shape (F, nx, ny, nz), float32, or None
        Density on the grids, e/Angstrom^3; None for a mixtures file or when not read.
    settings : RunSettings or None
        What made the file.
    """

    source: str
    frames: np.ndarray
    atoms: list[Atoms]
    mixtures: list[GaussianMixture]
    grids: list[Grid] | None
    values: np.ndarray | None
    settings: RunSettings | None

    def __len__(self) -> int:
        return len(self.frames)

    def density(self, i: int) -> Density:
        """Frame ``i`` (position in the file, not frame number) as a :class:`Density` (float64)."""
        if self.grids is None or self.values is None:
            raise FileFormatError(f"{self.source}: no grid values in this file (a mixtures file, or values=False)")
        return Density(self.atoms[i], self.grids[i], self.values[i])


class FramesWriter:
    """Append frames to a new HDF5 file, moved onto ``path`` only by :meth:`close`.

    Use as a context manager; an exception inside leaves ``path`` untouched and no
    temporary file. ``values`` of :meth:`append` is required exactly when ``with_grid``.
    """

    def __init__(self, path: Path, settings: RunSettings, source: str, *, with_grid: bool, compress: bool) -> None:
        import h5py

        self._stack = contextlib.ExitStack()
        tmp = self._stack.enter_context(atomic_path(path))
        self._file = self._stack.enter_context(h5py.File(tmp, "w"))
        self._file.attrs["settings"] = settings.to_json()
        self._file.attrs["source"] = source
        self._with_grid, self._compress = with_grid, compress
        for name, (shape, dtype) in (_RAGGED | _PER_FRAME | (_GRID if with_grid else {})).items():
            self._file.create_dataset(name, (0, *shape), dtype=dtype, maxshape=(None, *shape))

    def __enter__(self) -> FramesWriter:
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        else:
            self._stack.__exit__(*exc)

    def append(self, frame: int, atoms: Atoms, mixture: GaussianMixture, density: Density | None = None) -> None:
        """Add one frame: its number in the input, structure, mixture and (with a grid) density."""
        if (density is not None) != self._with_grid:
            raise ValueError("FramesWriter.append: density required exactly when the file has a grid")
        m = mixture.to("cpu", dtype=_torch_float64())
        charge = atoms.info.get("charge")
        rows = {
            "frames": frame,
            "atoms/counts": len(atoms),
            "atoms/cells": atoms.cell.array,
            "atoms/pbc": atoms.pbc,
            "atoms/charges": np.nan if charge is None else float(charge),
            "mixture/counts": m.n_gaussians,
        }
        for name, row in rows.items():
            _extend(self._file[name], np.asarray(row)[None])
        ragged = {
            "atoms/numbers": atoms.numbers,
            "atoms/positions": atoms.positions,
            "mixture/weights": m.weights.numpy(),
            "mixture/centres": m.centres.numpy(),
            "mixture/scale_tril": m.scale_tril.numpy(),
        }
        for name, block in ragged.items():
            _extend(self._file[name], np.asarray(block))
        if density is not None:
            self._append_grid(density)

    def _append_grid(self, density: Density) -> None:
        grid = density.grid
        if "values" not in self._file:
            self._file.create_dataset(
                "values", (0, *grid.shape), dtype=np.float32, maxshape=(None, *grid.shape), chunks=(1, *grid.shape),
                **({"compression": "gzip", "compression_opts": GZIP_LEVEL, "shuffle": True} if self._compress else {}),
            )
            self._file.create_dataset("grid/pbc", data=np.array(grid.pbc))
        values = self._file["values"]
        if values.shape[1:] != grid.shape or tuple(self._file["grid/pbc"][()]) != grid.pbc:
            raise ValueError(f"FramesWriter: grid {grid.describe()} differs from the file's shape {values.shape[1:]}")
        _extend(values, density.values.astype(np.float32)[None])
        _extend(self._file["grid/cells"], grid.cell[None])
        _extend(self._file["grid/origins"], grid.origin[None])

    def close(self) -> None:
        """Finish the file and move it onto its path."""
        self._stack.close()


def _torch_float64():
    import torch

    return torch.float64


def _extend(dataset, rows: np.ndarray) -> None:
    start = dataset.shape[0]
    dataset.resize(start + len(rows), axis=0)
    dataset[start:] = rows


def read_density_frames(path: str | os.PathLike, *, values: bool = True) -> DensityFrames:
    """Read a file of ``electra-density --format h5`` or ``--format mixtures``.

    Parameters
    ----------
    path : str or path-like
        The ``.h5`` file.
    values : bool
        Read the grid values (F x grid points float32: 5 MB per frame of a 0.1 Angstrom
        QM9 box); False reads structures, mixtures and grids only.

    Raises
    ------
    FileFormatError
        If the file is missing, not HDF5 or lacks part of the layout (module docstring).

    Examples
    --------
    >>> frames = read_density_frames("out/md.h5")                      # doctest: +SKIP
    >>> frames.density(0).n_electrons, frames.values.shape             # doctest: +SKIP
    >>> evaluate_points(frames.mixtures[0], frames.atoms[0].positions)  # doctest: +SKIP
    """
    import h5py
    import torch

    from ..gaussians import GaussianMixture

    path = require_file(path)
    try:
        with h5py.File(path, "r") as h5:
            data = {name: h5[name][()] for name in (*_RAGGED, *_PER_FRAME)}
            settings = _settings(h5)
            source = str(h5.attrs.get("source", path.name))
            grids = None
            if "grid/cells" in h5:
                pbc = tuple(bool(p) for p in h5["grid/pbc"][()])
                shape = h5["values"].shape[1:]
                grids = [Grid(c, shape, o, pbc) for c, o in zip(h5["grid/cells"][()], h5["grid/origins"][()])]
            array = h5["values"][()] if values and grids is not None else None
    except (OSError, KeyError, ValueError) as err:
        raise FileFormatError(f"{path}: not a density frames file ({first_line(err)})") from err
    atom_ends = np.cumsum(data["atoms/counts"])
    gauss_ends = np.cumsum(data["mixture/counts"])
    atoms, mixtures = [], []
    for f in range(len(data["frames"])):
        a = slice(atom_ends[f] - data["atoms/counts"][f], atom_ends[f])
        g = slice(gauss_ends[f] - data["mixture/counts"][f], gauss_ends[f])
        structure = Atoms(numbers=data["atoms/numbers"][a], positions=data["atoms/positions"][a],
                          cell=data["atoms/cells"][f], pbc=data["atoms/pbc"][f])
        if not np.isnan(data["atoms/charges"][f]):
            structure.info["charge"] = float(data["atoms/charges"][f])
        atoms.append(structure)
        mixtures.append(GaussianMixture(*(torch.from_numpy(data[f"mixture/{name}"][g])
                                          for name in ("weights", "centres", "scale_tril"))))
    return DensityFrames(source, data["frames"], atoms, mixtures, grids, array, settings)


def read_frames_settings(path: str | os.PathLike) -> RunSettings | None:
    """The settings an HDF5 frames file records, None if it records none."""
    import h5py

    try:
        with h5py.File(require_file(path), "r") as h5:
            return _settings(h5)
    except OSError as err:
        raise FileFormatError(f"{path}: not an HDF5 file ({first_line(err)})") from err


def _settings(h5) -> RunSettings | None:
    text = h5.attrs.get("settings")
    return None if text is None else RunSettings.from_json(str(text))
