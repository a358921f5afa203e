"""Seconds per frame of the whole prediction, Atoms -> model -> Gaussians -> grid, by stage.

    python benchmarks/frame_speed.py                          # shipped model, CPU, torch evaluator
    python benchmarks/frame_speed.py --device cuda --backend cupy --batch-size 16

Frames: ``--frames`` copies of the example molecule (qm9_005128, C4H7N3O, 15 atoms) with every atom
moved by a seeded normal displacement of 0.05 Angstrom, as an MD trajectory would move it.
Each frame gets its own box grid (``Grid.for_atoms``, ``--spacing`` and ``--margin`` as in
``electra-density``). Stages, timed separately, in seconds per frame:

* ``model``: ``DensityModel.predict`` on batches of ``--batch-size`` frames (neighbour lists,
  the network and the Gaussian parameters);
* ``grid``: ``evaluate`` of each frame's mixture on its grid with ``--backend``;
* ``to host``: copying the grid values into a float64 NumPy array, as ``predict_densities``
  (and so every file writer) does.

One untimed warm-up batch runs first (CUDA context, CuPy's kernel compilation). No files are
written: ``electra-density`` adds the cube or CHGCAR writing on top of these figures.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from ase.io import read

from ase_electra.evaluate import evaluate
from ase_electra.models import load_model
from ase_electra.predict import grid_for

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "data" / "qm9_005128.xyz"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="'default', 'promolecule' or a model folder")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--backend", choices=("torch", "cupy"), default="torch", help="grid evaluator")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=1, help="frames per model call")
    parser.add_argument("--spacing", type=float, default=0.1, help="grid spacing, Angstrom")
    parser.add_argument("--margin", type=float, default=4.0, help="vacuum around the molecule, Angstrom")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.frames < 1 or args.batch_size < 1:
        parser.error("--frames and --batch-size must be >= 1")
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
    batches = [list(range(i, min(i + args.batch_size, args.frames))) for i in range(0, args.frames, args.batch_size)]

    def one_batch(indices: list[int], times: dict[str, list[float]] | None) -> None:
        _sync(device)
        start = time.perf_counter()
        mixtures = model.predict([frames[i] for i in indices]).split()
        _sync(device)
        model_done = time.perf_counter()
        for i, mixture in zip(indices, mixtures):
            grid_start = time.perf_counter()
            values = evaluate(mixture, grids[i], backend=args.backend)
            _sync(device)
            host_start = time.perf_counter()
            values.double().cpu().numpy()
            host_done = time.perf_counter()
            if times is not None:
                times["grid"].append(host_start - grid_start)
                times["to host"].append(host_done - host_start)
        if times is not None:
            times["model"].extend([(model_done - start) / len(indices)] * len(indices))

    with torch.no_grad():
        one_batch(batches[0], None)  # warm-up
        times: dict[str, list[float]] = {"model": [], "grid": [], "to host": []}
        wall = time.perf_counter()
        for indices in batches:
            one_batch(indices, times)
        wall = time.perf_counter() - wall

    points = statistics.mean(int(np.prod(g.shape)) for g in grids)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"model {model.name} on {name}; evaluator {args.backend}; {args.frames} frames of {base.get_chemical_formula()} "
          f"({len(base)} atoms), batch {args.batch_size}; grid spacing {args.spacing} A, margin {args.margin} A, "
          f"{points:,.0f} points per frame on average; torch {torch.__version__}")
    print(f"{'stage':8} {'mean s/frame':>12} {'median':>9} {'max':>9}")
    for stage, values in times.items():
        print(f"{stage:8} {statistics.mean(values):12.4f} {statistics.median(values):9.4f} {max(values):9.4f}")
    print(f"{'total':8} {wall / args.frames:12.4f}  ({args.frames / wall:.1f} frames/s)")


if __name__ == "__main__":
    main()
