"""Disk per frame and seconds per frame of each electra-density output format on one trajectory.

    python benchmarks/trajectory_disk.py                      # 100 frames of qm9_005128, 0.1 A, default model
    python benchmarks/trajectory_disk.py --frames 20 --spacing 0.2 --model promolecule

The trajectory is ``examples/data/qm9_005128.xyz`` (18 atoms) repeated with seeded normal
noise of 0.05 Angstrom on every coordinate, written to a temporary folder as one xyz file.
Each format (cube, cube --compress, h5, h5 --compress, mixtures) is one ``electra-density``
call in this process (model loaded once per call, as a user's run does); the figures are
the output's total bytes divided by the frame count (MB = 10^6 bytes) and the call's wall
time divided by the frame count, after one untimed single-frame call that pays for imports. Every run also checks that all frames share one grid.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from ase.io import read, write
from click.testing import CliRunner

from ase_electra.cli.density import main as density_main
from ase_electra.io import read_density, read_density_frames

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "data" / "qm9_005128.xyz"
FORMATS = {
    "cube": ["--format", "cube"],
    "cube --compress": ["--format", "cube", "--compress"],
    "h5": ["--format", "h5"],
    "h5 --compress": ["--format", "h5", "--compress"],
    "mixtures": ["--format", "mixtures"],
}


def trajectory(path: Path, frames: int, noise: float, seed: int) -> None:
    """Write ``frames`` noisy copies of the example molecule to ``path`` (Angstrom)."""
    atoms = read(EXAMPLE)
    rng = np.random.default_rng(seed)
    copies = []
    for _ in range(frames):
        copy = atoms.copy()
        copy.positions += rng.normal(scale=noise, size=copy.positions.shape)
        copies.append(copy)
    write(path, copies)


def shared_shapes(out: Path, name: str) -> set[tuple[int, int, int]]:
    """Grid shapes of every frame written by one run (one element when the frames share a grid)."""
    if name.startswith("cube"):
        files = sorted(out.iterdir())
        return {read_density(p).grid.shape for p in files[:3] + files[-3:]}
    if name.startswith("h5"):
        (path,) = out.iterdir()
        return {grid.shape for grid in read_density_frames(path, values=False).grids}
    return set()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--spacing", type=float, default=0.1, help="Angstrom")
    parser.add_argument("--model", default="default")
    parser.add_argument("--noise", type=float, default=0.05, help="Angstrom, per coordinate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=list(FORMATS))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = tmp / "md.xyz"
        trajectory(path, args.frames, args.noise, args.seed)
        print(f"{args.frames} frames of {EXAMPLE.stem} (noise {args.noise} A), spacing {args.spacing} A, "
              f"model {args.model}")
        warm = CliRunner().invoke(density_main, [str(path), "-o", str(tmp / "warm-up"), "--model", args.model,
                                                 "--spacing", str(args.spacing), "--index", "0"])
        if warm.exit_code != 0:  # the first call pays for imports and compilation: not counted
            raise SystemExit(warm.output)
        print(f"{'format':16} {'files':>5} {'MB/frame':>9} {'s/frame':>8} {'grids':>6}")
        for name in args.formats:
            out = tmp / name.replace(" ", "")
            start = time.perf_counter()
            result = CliRunner().invoke(density_main, [str(path), "-o", str(out), "--model", args.model,
                                                       "--spacing", str(args.spacing), *FORMATS[name]])
            seconds = time.perf_counter() - start
            if result.exit_code != 0:
                raise SystemExit(f"{name}: {result.output}")
            files = list(out.iterdir())
            size = sum(p.stat().st_size for p in files) / 1e6 / args.frames
            shapes = shared_shapes(out, name)
            grids = str(len(shapes)) if shapes else "-"
            print(f"{name:16} {len(files):5d} {size:9.3f} {seconds / args.frames:8.2f} {grids:>6}", flush=True)


if __name__ == "__main__":
    main()
