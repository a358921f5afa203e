"""Seconds per frame of the whole prediction, Atoms -> model -> Gaussians -> grid, by stage.

    python benchmarks/frame_speed.py                          # shipped model, CPU, fastest evaluator
    python benchmarks/frame_speed.py --split 10 --write cube  # ~2,000 Gaussians, cube files written
    python benchmarks/frame_speed.py --device cuda --backend cupy --batch-size 16
    python benchmarks/frame_speed.py --esp --write cube       # as electra-density --esp

Frames: ``--frames`` copies of the example molecule (qm9_005128, C4H7N3O, 15 atoms) with every atom
moved by a seeded normal displacement of 0.05 Angstrom, as an MD trajectory would move it.
Each frame gets its own box grid (``Grid.for_atoms``, ``--spacing`` and ``--margin`` as in
``electra-density``). Stages, timed separately, in seconds per frame:

* ``model``: ``DensityModel.predict`` on batches of ``--batch-size`` frames (neighbour lists,
  the network and the Gaussian parameters);
* ``grid``: ``evaluate`` of each frame's mixture on its grid with ``--backend``;
* ``to host``: copying the grid values into a float64 NumPy array, as ``predict_densities``
  (and so every file writer) does;
* ``write`` (with ``--write cube``): writing the frame's cube file as ``electra-density`` does
  (``ase_electra.io.write_cube``, into a temporary folder);
* ``esp`` (with ``--esp``): the electrostatic potential on the frame's ``--esp-spacing`` box
  (``potential_on_grid``, the Ewald split of :mod:`ase_electra.properties.ewald`), and with
  ``--write cube`` its cube (``write_potential_cube``), as ``electra-density --esp`` does.

``--split N`` replaces each floating Gaussian by N copies of 1/N its weight, their centres
moved by seeded normal offsets of 0.05 Angstrom: a stand-in for a head with N times as
many Gaussians (the shipped model's 210 become 1,995 for the example with ``--split 10``).
It runs in the ``model`` stage and costs nothing measurable there.

One untimed warm-up batch runs first (CUDA context, CuPy's or numba's kernel compilation).
CPU threads: torch's (``OMP_NUM_THREADS``) for the model, numba's (``NUMBA_NUM_THREADS``) for
the grid and the writer's own threads for the cube text; both default to every core.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from ase.io import read

from ase_electra.density import Density
from ase_electra.evaluate import evaluate, select_backend
from ase_electra.gaussians import GaussianMixture
from ase_electra.io import write_cube
from ase_electra.models import load_model
from ase_electra.predict import grid_for
from ase_electra.properties import potential_on_grid, write_potential_cube

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "data" / "qm9_005128.xyz"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def split_floating(mixture: GaussianMixture, n: int, rng: np.random.Generator) -> GaussianMixture:
    """Each floating Gaussian (any not centred on an atom) as n jittered copies of 1/n its weight."""
    if n == 1:
        return mixture
    floating = torch.ones(mixture.n_gaussians, dtype=torch.bool, device=mixture.device)
    # Core Gaussians share their centre with the atom: detect them as repeated centres.
    _, inverse, counts = torch.unique(mixture.centres, dim=0, return_inverse=True, return_counts=True)
    floating &= counts[inverse] == 1
    repeat = torch.where(floating, n, 1)
    weights = torch.repeat_interleave(mixture.weights / repeat, repeat)
    centres = torch.repeat_interleave(mixture.centres, repeat, dim=0)
    jitter = torch.as_tensor(rng.normal(scale=0.05, size=centres.shape), dtype=centres.dtype, device=centres.device)
    moved = torch.repeat_interleave(floating, repeat)[:, None]
    return GaussianMixture(weights, centres + jitter * moved, torch.repeat_interleave(mixture.scale_tril, repeat, dim=0))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="'default', 'promolecule' or a model folder")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--backend", choices=("auto", "torch", "numba", "cupy"), default="auto", help="grid evaluator")
    parser.add_argument("--split", type=int, default=1, help="copies of each floating Gaussian (see above)")
    parser.add_argument("--write", choices=("none", "cube"), default="none", help="also write each frame")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=1, help="frames per model call")
    parser.add_argument("--spacing", type=float, default=0.1, help="grid spacing, Angstrom")
    parser.add_argument("--margin", type=float, default=4.0, help="vacuum around the molecule, Angstrom")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--esp", action="store_true", help="also the electrostatic potential of each frame")
    parser.add_argument("--esp-spacing", type=float, default=0.2, help="grid spacing of the potential, Angstrom")
    args = parser.parse_args(argv)
    if args.frames < 1 or args.batch_size < 1 or args.split < 1:
        parser.error("--frames, --batch-size and --split must be >= 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")

    device = torch.device(args.device)
    model = load_model(args.model, device=device)
    rng = np.random.default_rng(args.seed)
    base = read(EXAMPLE)
    frames = []
    for _ in range(args.frames):
        atoms = base.copy()
        atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
        frames.append(atoms)
    grids = [grid_for(atoms, args.spacing, args.margin) for atoms in frames]
    esp_grids = [grid_for(atoms, args.esp_spacing, args.margin) for atoms in frames]
    batches = [list(range(i, min(i + args.batch_size, args.frames))) for i in range(0, args.frames, args.batch_size)]

    n_gaussians = []
    out_dir = Path(tempfile.mkdtemp(prefix="frame_speed-"))

    def one_batch(indices: list[int], times: dict[str, list[float]] | None) -> None:
        _sync(device)
        start = time.perf_counter()
        mixtures = [split_floating(m, args.split, rng) for m in model.predict([frames[i] for i in indices]).split()]
        _sync(device)
        model_done = time.perf_counter()
        for i, mixture in zip(indices, mixtures):
            n_gaussians.append(mixture.n_gaussians)
            grid_start = time.perf_counter()
            values = evaluate(mixture, grids[i], backend=args.backend)
            _sync(device)
            host_start = time.perf_counter()
            values = values.double().cpu().numpy()
            host_done = time.perf_counter()
            if args.write == "cube":
                write_cube(out_dir / f"frame_{i}.cube", Density(frames[i], grids[i], values))
            write_done = time.perf_counter()
            if args.esp:
                volts = potential_on_grid(mixture, frames[i].numbers, frames[i].positions, esp_grids[i])
                if args.write == "cube":
                    write_potential_cube(out_dir / f"frame_{i}_esp.cube", frames[i], esp_grids[i], volts)
            esp_done = time.perf_counter()
            if times is not None:
                times["grid"].append(host_start - grid_start)
                times["to host"].append(host_done - host_start)
                if args.write != "none":
                    times["write"].append(write_done - host_done)
                if args.esp:
                    times["esp"].append(esp_done - write_done)
        if times is not None:
            times["model"].extend([(model_done - start) / len(indices)] * len(indices))

    with torch.no_grad():
        one_batch(batches[0], None)  # warm-up
        times: dict[str, list[float]] = {"model": [], "grid": [], "to host": []}
        if args.write != "none":
            times["write"] = []
        if args.esp:
            times["esp"] = []
        wall = time.perf_counter()
        for indices in batches:
            one_batch(indices, times)
        wall = time.perf_counter() - wall

    for path in out_dir.iterdir():
        path.unlink()
    out_dir.rmdir()
    points = statistics.mean(int(np.prod(g.shape)) for g in grids)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} torch threads"
    backend = select_backend(model.predict(frames[:1]), args.backend) if args.backend == "auto" else args.backend
    if backend == "numba":
        import numba

        backend += f" ({numba.get_num_threads()} threads)"
    print(f"model {model.name} on {name}; evaluator {backend}; {args.frames} frames of {base.get_chemical_formula()} "
          f"({len(base)} atoms), {statistics.mean(n_gaussians):,.0f} Gaussians each (--split {args.split}), "
          f"batch {args.batch_size}; grid spacing {args.spacing} A, margin {args.margin} A, "
          f"{points:,.0f} points per frame on average; writing: {args.write}; "
          + (f"potential on {statistics.mean(int(np.prod(g.shape)) for g in esp_grids):,.0f} points "
             f"({args.esp_spacing} A); " if args.esp else "") + f"torch {torch.__version__}")
    print(f"{'stage':8} {'mean s/frame':>12} {'median':>9} {'max':>9}")
    for stage, values in times.items():
        print(f"{stage:8} {statistics.mean(values):12.4f} {statistics.median(values):9.4f} {max(values):9.4f}")
    print(f"{'total':8} {wall / args.frames:12.4f}  ({args.frames / wall:.1f} frames/s)")


if __name__ == "__main__":
    main()
