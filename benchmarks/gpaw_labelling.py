"""Cost of GPAW crystal labels at the default settings, and their grid sums against the electron count.

    OMP_NUM_THREADS=1 python benchmarks/gpaw_labelling.py [--spacing 0.1] [--out DIR]

Labels Si (diamond), NaCl (rocksalt) and Al (fcc) primitive cells with
:func:`ase_electra.reference.label_crystal` at its defaults (PBE, 800 eV, 4 k-points per
1/Angstrom Gamma-centred, Fermi-Dirac 0.1 eV, samples on ``Grid.for_cell(cell, 0.1)``),
each translated by a fixed fraction of a voxel so that no nucleus sits on a grid point.
Prints per crystal the k-point grid, the sample grid, SCF wall-clock seconds and
iterations, the wall-clock and CPU seconds of the whole label (import excluded; on a
machine shared with other work, CPU seconds of this single-threaded process are the
figure to quote), the samples' grid sum
(``density.sum() * voxel_volume``), the missing charge and their total against the
electron count. With ``--out`` the records are kept there.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from ase.build import bulk

from ase_electra.reference import label_crystal, save_record

CRYSTALS = {
    "Si": lambda: bulk("Si", "diamond", 5.43),
    "NaCl": lambda: bulk("NaCl", "rocksalt", 5.64),
    "Al": lambda: bulk("Al", "fcc", 4.05),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spacing", type=float, default=0.1, help="sample grid spacing, Angstrom")
    parser.add_argument("--out", type=Path, help="folder to keep the records in")
    args = parser.parse_args()
    print(f"{'crystal':<8} {'k-points':<9} {'grid':<12} {'SCF s':>7} {'iter':>4} {'label s':>8} {'CPU s':>7} "
          f"{'samples e':>10} {'missing e':>10} {'total e':>10} {'N':>4}")
    for name, build in CRYSTALS.items():
        atoms = build()
        atoms.positions += np.array([0.37, 0.29, 0.43]) * args.spacing  # nuclei off the grid points
        start, cpu = time.perf_counter(), time.process_time()
        record = label_crystal(atoms, spacing=args.spacing, name=name)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        samples = float(record.density.astype(np.float64).sum() * record.grid.voxel_volume)
        missing = float(record.missing_charge.sum())
        print(f"{name:<8} {'x'.join(map(str, record.kpts)):<9} {'x'.join(map(str, record.density.shape)):<12} "
              f"{record.scf_seconds:7.1f} {record.scf_cycles:4d} {seconds:8.1f} {cpu:7.1f} {samples:10.4f} {missing:10.4f} "
              f"{samples + missing:10.6f} {record.n_electrons:4d}", flush=True)
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            save_record(args.out / f"{name}.npz", record)


if __name__ == "__main__":
    main()
