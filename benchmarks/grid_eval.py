"""Throughput of the grid evaluators: torch on the CPU and, with a GPU, torch CUDA and CuPy.

Two workloads:

* ``qm9``: a QM9-sized molecule (9 heavy atoms, 9 hydrogens, made up by a seeded random
  walk) carrying about 2,000 Gaussians whose widths run from 0.05 to 1 Angstrom, as an
  all-electron core/valence mixture would, on ``Grid.for_molecule(spacing=0.1, margin=4.0)``.
* ``periodic``: a skewed 10 Angstrom cell at 0.1 Angstrom spacing holding 300 Gaussians.

A "Gaussian-point evaluation" is one grid point of one Gaussian's index box: their number
is the sum of the box volumes (``index_boxes(...).dims.prod(-1).sum()``), the points every
evaluator visits, whether or not they pass the n_sigma cut-off.

Run: ``python benchmarks/grid_eval.py [--repeat 3] [--backend all] [--case all] [--dtype float32]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ase_electra.evaluate import evaluate
from ase_electra.evaluate._boxes import index_boxes
from ase_electra.gaussians import DEFAULT_N_SIGMA, GaussianMixture
from ase_electra.grid import Grid

BACKENDS = ("torch-cpu", "torch-cuda", "cupy")
CASES = ("qm9", "periodic")
DTYPES = {"float32": torch.float32, "float64": torch.float64}

#: Gaussians per atom (heavy, hydrogen): 9 * 150 + 9 * 72 = 1,998 in the qm9 case.
GAUSSIANS_PER_ATOM = (150, 72)
#: Axis widths of the Gaussians, log-uniform between these, Angstrom.
WIDTHS = {"heavy": (0.05, 1.0), "hydrogen": (0.2, 1.0), "periodic": (0.05, 1.0)}
#: Largest log-ratio between a Gaussian's axis widths and its mean width.
ANISOTROPY = 0.2
SPACING = 0.1  # Angstrom
MARGIN = 4.0  # Angstrom
PERIODIC_CELL = np.array([[10.0, 0.0, 0.0], [2.5, 9.7, 0.0], [1.5, 2.0, 9.6]])  # Angstrom
PERIODIC_GAUSSIANS = 300


@dataclass(frozen=True)
class Workload:
    name: str
    mixture: GaussianMixture  # float64, CPU
    grid: Grid
    evaluations: int  # sum of box volumes


def _gaussians(rng: np.random.Generator, centres: np.ndarray, widths: tuple[float, float]) -> np.ndarray:
    """Random lower-triangular scale factors (K, 3, 3), Angstrom, of slightly anisotropic Gaussians.

    Each Gaussian's width is log-uniform in ``widths``; its three axes differ from it by
    up to ANISOTROPY either way, and small off-diagonal terms tilt it.
    """
    k = len(centres)
    width = np.exp(rng.uniform(np.log(widths[0]), np.log(widths[1]), (k, 1)))  # (K, 1)
    sigma = width * np.exp(rng.uniform(-ANISOTROPY, ANISOTROPY, (k, 3)))  # (K, 3)
    L = np.zeros((k, 3, 3))
    L[:, [0, 1, 2], [0, 1, 2]] = sigma
    row, col = np.tril_indices(3, -1)
    L[:, row, col] = rng.normal(0.0, 0.1, (k, 3)) * np.sqrt(sigma[:, row] * sigma[:, col])
    return L


def _qm9_molecule(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Positions (18, 3), Angstrom, and heavy-atom mask of a made-up QM9-sized molecule."""
    heavy = [np.zeros(3)]
    while len(heavy) < 9:  # self-avoiding random walk with 1.5 A bonds
        step = rng.normal(size=3)
        candidate = heavy[rng.integers(len(heavy))] + 1.5 * step / np.linalg.norm(step)
        if min(np.linalg.norm(candidate - h) for h in heavy) > 1.4:
            heavy.append(candidate)
    hydrogens = []
    while len(hydrogens) < 9:
        step = rng.normal(size=3)
        candidate = heavy[rng.integers(len(heavy))] + 1.09 * step / np.linalg.norm(step)
        if min(np.linalg.norm(candidate - a) for a in heavy + hydrogens) > 1.0:
            hydrogens.append(candidate)
    positions = np.array(heavy + hydrogens)
    return positions, np.arange(len(positions)) < len(heavy)


def _workload(name: str, rng: np.random.Generator) -> Workload:
    if name == "qm9":
        positions, is_heavy = _qm9_molecule(rng)
        centres, scales, weights = [], [], []
        for position, heavy in zip(positions, is_heavy):
            count = GAUSSIANS_PER_ATOM[0 if heavy else 1]
            centres.append(position + rng.normal(0.0, 0.3, (count, 3)))
            scales.append(_gaussians(rng, centres[-1], WIDTHS["heavy" if heavy else "hydrogen"]))
            weights.append(np.full(count, (7.0 if heavy else 1.0) / count))  # electrons
        grid = Grid.for_molecule(positions, spacing=SPACING, margin=MARGIN)
        arrays = (np.concatenate(weights), np.concatenate(centres), np.concatenate(scales))
    elif name == "periodic":
        centres = rng.uniform(0.0, 1.0, (PERIODIC_GAUSSIANS, 3)) @ PERIODIC_CELL
        scales = _gaussians(rng, centres, WIDTHS["periodic"])
        grid = Grid.for_cell(PERIODIC_CELL, spacing=SPACING)
        arrays = (rng.uniform(0.1, 2.0, PERIODIC_GAUSSIANS), centres, scales)
    else:
        raise ValueError(f"case: expected one of {CASES}, got {name!r}")
    mixture = GaussianMixture(*(torch.tensor(a) for a in arrays))
    evaluations = int(index_boxes(mixture, grid, DEFAULT_N_SIGMA).dims.prod(-1).sum())
    return Workload(name, mixture, grid, evaluations)


def _available(backend: str) -> str | None:
    """None if ``backend`` can run here, else why not."""
    if backend == "torch-cpu":
        return None
    if not torch.cuda.is_available():
        return "no CUDA device"
    if backend == "cupy":
        try:
            from ase_electra.evaluate import _cupy  # noqa: F401
        except ImportError as err:
            return str(err)
    return None


def _time(run: Callable[[], torch.Tensor], repeat: int, cuda: bool) -> tuple[float | None, float, torch.Tensor]:
    """(warm-up seconds or None, median seconds of ``repeat`` timed calls, last result).

    CUDA backends get one untimed warm-up call (CuPy compiles its kernel there); the CPU
    path has nothing to warm up.
    """
    times = []
    for _ in range(repeat + (1 if cuda else 0)):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = run()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    warmup = times.pop(0) if cuda else None
    return warmup, statistics.median(times), result


def run(cases: list[str], backends: list[str], repeat: int, dtype: torch.dtype, seed: int = 0) -> None:
    """Time every backend on every case and print one table row each."""
    rng = np.random.default_rng(seed)
    print(
        "Gaussian-point evaluations = sum over Gaussians of the index-box volume (boxes.dims.prod), "
        f"the points each evaluator visits; n_sigma = {DEFAULT_N_SIGMA}, {dtype}, median of {repeat} "
        "timed runs; GPU backends first run once untimed (warm-up s, CuPy compilation included)."
    )
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, CUDA: {torch.cuda.is_available()}")
    header = f"{'case':9} {'gaussians':>9} {'grid':>16} {'evaluations':>12} {'backend':10} "
    header += f"{'warm-up s':>9} {'s/molecule':>10} {'evals/s':>9} {'max |diff|/max':>14}"
    print(header)
    for name in cases:
        work = _workload(name, rng)
        reference = None
        for backend in backends:
            why_not = _available(backend)
            shape = "x".join(map(str, work.grid.shape))
            row = f"{name:9} {work.mixture.n_gaussians:9d} {shape:>16} {work.evaluations:12.3e} {backend:10} "
            if why_not is not None:
                print(row + f"skipped: {why_not}")
                continue
            device = "cpu" if backend == "torch-cpu" else "cuda"
            mixture = work.mixture.to(device=device, dtype=dtype)
            kind = "cupy" if backend == "cupy" else "torch"
            warmup, seconds, values = _time(
                lambda: evaluate(mixture, work.grid, backend=kind), repeat, device == "cuda"
            )
            values = values.double().cpu()
            if reference is None:
                reference, diff = values, "reference"
            else:
                diff = f"{((values - reference).abs().max() / reference.abs().max()).item():.1e}"
            warm = "-" if warmup is None else f"{warmup:.3f}"
            print(row + f"{warm:>9} {seconds:10.3f} {work.evaluations / seconds:9.2e} {diff:>14}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per backend and case")
    parser.add_argument("--backend", choices=("all", *BACKENDS), default="all")
    parser.add_argument("--case", choices=("all", *CASES), default="all")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="float32")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat: expected >= 1, got {args.repeat}")
    backends = list(BACKENDS) if args.backend == "all" else [args.backend]
    cases = list(CASES) if args.case == "all" else [args.case]
    run(cases, backends, args.repeat, DTYPES[args.dtype], args.seed)


if __name__ == "__main__":
    sys.exit(main())
