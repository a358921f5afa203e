"""Throughput of the grid evaluators: torch and the compiled numba kernels on the CPU and,
with a GPU, torch CUDA and CuPy, side by side in one run.

Three workloads:

* ``qm9``: a QM9-sized molecule (9 heavy atoms, 9 hydrogens, made up by a seeded random
  walk) carrying about 2,000 Gaussians whose widths run from 0.05 to 1 Angstrom, as an
  all-electron core/valence mixture would, on ``Grid.for_molecule(spacing=0.1, margin=4.0)``.
* ``qm9-5k``: the same kind of molecule with about 5,000 Gaussians.
* ``periodic``: a skewed 10 Angstrom cell at 0.1 Angstrom spacing holding 300 Gaussians.

A "Gaussian-point evaluation" is one grid point of one Gaussian's 5-sigma index box: their
number is the sum of the box volumes (``index_boxes(..., n_sigma=5, tolerance=0).dims``),
the same count for every back-end, whatever each one skips (the compiled kernels visit only
the points inside each ellipsoid, and the value cut-off shrinks faint Gaussians' boxes).
``numba-1t`` and ``numba-2t`` run the compiled kernels on one and two numba threads; the
torch CPU path runs on ``torch.get_num_threads()`` threads (set ``OMP_NUM_THREADS=1`` for
one). The last columns give each back-end's speed relative to torch CPU and, for
``numba-2t``, relative to ``numba-1t``.

Run: ``python benchmarks/grid_eval.py [--repeat 3] [--backend all] [--case all] [--dtype float32]``
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ase_electra.evaluate import evaluate
from ase_electra.evaluate._boxes import index_boxes
from ase_electra.gaussians import DEFAULT_N_SIGMA, DEFAULT_TOLERANCE, GaussianMixture
from ase_electra.grid import Grid

BACKENDS = ("torch-cpu", "numba-1t", "numba-2t", "torch-cuda", "cupy")
CASES = ("qm9", "qm9-5k", "periodic")
DTYPES = {"float32": torch.float32, "float64": torch.float64}

#: Gaussians per atom (heavy, hydrogen): 9 * 150 + 9 * 72 = 1,998 in the qm9 case and
#: 9 * 375 + 9 * 181 = 5,004 in qm9-5k.
GAUSSIANS_PER_ATOM = {"qm9": (150, 72), "qm9-5k": (375, 181)}
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
    if name in GAUSSIANS_PER_ATOM:
        positions, is_heavy = _qm9_molecule(rng)
        centres, scales, weights = [], [], []
        for position, heavy in zip(positions, is_heavy):
            count = GAUSSIANS_PER_ATOM[name][0 if heavy else 1]
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
    evaluations = int(index_boxes(mixture, grid, 5.0, 0.0).dims.prod(-1).sum())
    return Workload(name, mixture, grid, evaluations)


def _available(backend: str) -> str | None:
    """None if ``backend`` can run here, else why not."""
    if backend == "torch-cpu":
        return None
    if backend.startswith("numba"):
        if importlib.util.find_spec("numba") is None:
            return "numba not installed"
        import numba

        threads = int(backend.removeprefix("numba-").removesuffix("t"))
        return None if numba.config.NUMBA_NUM_THREADS >= threads else f"numba has {numba.config.NUMBA_NUM_THREADS} threads"
    if not torch.cuda.is_available():
        return "no CUDA device"
    if backend == "cupy":
        try:
            from ase_electra.evaluate import _cupy  # noqa: F401
        except ImportError as err:
            return str(err)
    return None


def _time(runs: dict[str, Callable[[], torch.Tensor]], repeat: int) -> dict[str, tuple[float | None, float, torch.Tensor]]:
    """Per back-end: (warm-up seconds or None, fastest of ``repeat`` timed calls, last result).

    The back-ends take turns, one call each per round, so a slow spell of the machine falls
    on all of them rather than on whichever ran then (single-thread runs here vary by up to
    30 % from one minute to the next). The fastest, not the median: on a shared machine the
    other runs measure the neighbours. Compiled back-ends get one untimed warm-up call (numba
    loads or compiles its kernels, CuPy compiles its kernel there); torch has nothing to warm up.
    """

    def timed(backend: str) -> tuple[float, torch.Tensor]:
        cuda = backend in ("torch-cuda", "cupy")
        with _numba_threads(backend):
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            result = runs[backend]()
            if cuda:
                torch.cuda.synchronize()
        return time.perf_counter() - start, result

    warmups = {b: timed(b)[0] if b != "torch-cpu" else None for b in runs}
    best: dict[str, float] = {}
    last: dict[str, torch.Tensor] = {}
    for _ in range(repeat):
        for backend in runs:
            seconds, last[backend] = timed(backend)
            best[backend] = min(best.get(backend, math.inf), seconds)
    return {b: (warmups[b], best[b], last[b]) for b in runs}


def run(cases: list[str], backends: list[str], repeat: int, dtype: torch.dtype, tolerance: float, seed: int = 0) -> None:
    """Time every backend on every case and print one table row each."""
    rng = np.random.default_rng(seed)
    print(
        "Gaussian-point evaluations = sum over Gaussians of the 5-sigma index-box volume, the same "
        f"count for every back-end; n_sigma = {DEFAULT_N_SIGMA}, tolerance = {tolerance:g} e/A^3, {dtype}, "
        f"fastest of {repeat} timed rounds (back-ends take turns); compiled back-ends first run once untimed (warm-up s)."
    )
    print(f"torch {torch.__version__}, {torch.get_num_threads()} torch CPU threads, CUDA: {torch.cuda.is_available()}")
    header = f"{'case':9} {'gaussians':>9} {'grid':>14} {'evaluations':>11} {'backend':10} "
    header += f"{'warm-up s':>9} {'s/molecule':>10} {'evals/s':>9} {'max |diff|/max':>14} {'vs torch':>8} {'vs 1t':>6}"
    print(header)
    for name in cases:
        work = _workload(name, rng)
        shape = "x".join(map(str, work.grid.shape))
        runs = {}
        for backend in backends:
            why_not = _available(backend)
            if why_not is not None:
                print(f"{name:9} {work.mixture.n_gaussians:9d} {shape:>14} {work.evaluations:11.3e} {backend:10} "
                      f"skipped: {why_not}")
                continue
            device = "cuda" if backend in ("torch-cuda", "cupy") else "cpu"
            mixture = work.mixture.to(device=device, dtype=dtype)
            kind = backend.split("-")[0]
            runs[backend] = functools.partial(evaluate, mixture, work.grid, backend=kind, tolerance=tolerance)
        reference, seconds_of = None, {}
        for backend, (warmup, seconds, values) in _time(runs, repeat).items():
            row = f"{name:9} {work.mixture.n_gaussians:9d} {shape:>14} {work.evaluations:11.3e} {backend:10} "
            seconds_of[backend] = seconds
            values = values.double().cpu()
            if reference is None:
                reference, diff = values, "reference"
            else:
                diff = f"{((values - reference).abs().max() / reference.abs().max()).item():.1e}"
            warm = "-" if warmup is None else f"{warmup:.3f}"
            vs_torch = f"{seconds_of['torch-cpu'] / seconds:.1f}x" if "torch-cpu" in seconds_of else "-"
            vs_one = f"{seconds_of['numba-1t'] / seconds:.2f}x" if backend == "numba-2t" and "numba-1t" in seconds_of else ""
            print(row + f"{warm:>9} {seconds:10.3f} {work.evaluations / seconds:9.2e} {diff:>14} {vs_torch:>8} {vs_one:>6}")


@contextlib.contextmanager
def _numba_threads(backend: str):
    """Run a ``numba-<n>t`` back-end on n numba threads; other back-ends as they are."""
    if not backend.startswith("numba"):
        yield
        return
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(int(backend.removeprefix("numba-").removesuffix("t")))
    try:
        yield
    finally:
        numba.set_num_threads(before)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per backend and case")
    parser.add_argument("--backend", choices=("all", *BACKENDS), default="all")
    parser.add_argument("--case", choices=("all", *CASES), default="all")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="float32")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help="value cut-off of each Gaussian, e/Angstrom^3 (0: n_sigma only)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat: expected >= 1, got {args.repeat}")
    backends = list(BACKENDS) if args.backend == "all" else [args.backend]
    cases = list(CASES) if args.case == "all" else [args.case]
    run(cases, backends, args.repeat, DTYPES[args.dtype], args.tolerance, args.seed)


if __name__ == "__main__":
    sys.exit(main())
