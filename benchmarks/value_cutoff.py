"""What the value cut-off does to a QM9 density and to the grid time.

    NUMBA_NUM_THREADS=1 python benchmarks/value_cutoff.py

Each Gaussian ends at the smaller of 5 sigma and the radius where its value falls below the
tolerance (e/Angstrom^3; ``ase_electra.evaluate._boxes``). For the shipped model's mixture
of the example molecule (qm9_005128) and the same mixture with every floating Gaussian split
into ten (``frame_speed.split_floating``), on the 0.1 Angstrom grid with 4 Angstrom margin,
this prints per tolerance: the compiled evaluator's time (median of ``--repeat``), the NMAE
between the density with that tolerance and with tolerance 0 (5 sigma only), and the
electrons the cut-off drops (grid sum).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from ase.io import read

from ase_electra.evaluate import evaluate
from ase_electra.gaussians import DEFAULT_TOLERANCE
from ase_electra.models import load_model
from ase_electra.predict import grid_for
from frame_speed import EXAMPLE, split_floating

TOLERANCES = (0.0, 1e-10, 1e-9, 1e-8, 1e-7, 1e-6, 1e-5)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    atoms = read(EXAMPLE)
    grid = grid_for(atoms, 0.1, 4.0)
    shipped = load_model("default").predict([atoms]).to(dtype=torch.float64)
    mixtures = {"shipped": shipped, "split x10": split_floating(shipped, 10, np.random.default_rng(0))}
    print(f"{EXAMPLE.name}, grid {grid.describe()}; default tolerance {DEFAULT_TOLERANCE:g} e/A^3")
    print(f"{'mixture':10} {'gaussians':>9} {'tolerance':>9} {'seconds':>8} {'NMAE change %':>13} {'electrons dropped':>17}")
    for name, mixture in mixtures.items():
        exact = evaluate(mixture, grid, backend="numba", tolerance=0.0)
        for tolerance in TOLERANCES:
            times = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                values = evaluate(mixture, grid, backend="numba", tolerance=tolerance)
                times.append(time.perf_counter() - start)
            change = 100 * ((values - exact).abs().sum() / exact.abs().sum()).item()
            dropped = (exact.sum() - values.sum()).item() * grid.voxel_volume
            print(f"{name:10} {mixture.n_gaussians:9d} {tolerance:9.0e} {statistics.median(times):8.3f} "
                  f"{change:13.2e} {dropped:17.2e}")


if __name__ == "__main__":
    main()
