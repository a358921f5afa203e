"""Structures for the out-of-distribution check of a density model: MD-style frames of QM9
molecules no one here trained or tuned on, and molecules larger than QM9.

    python benchmarks/ood_structures.py --qm9-csv qm9pack/data/qm9_part1.csv -o ood/
    electra-label ood/*.xyz -o ood-records/ --conv-tol 1e-8
    python benchmarks/validation_nmae.py --model default --data ood-records/ --split any

Writes ``<out>/qm9md_<index>.xyz`` (``--frames`` frames each: every coordinate of the QM9
geometry moved by seeded normal noise of ``--rattle`` Angstrom, as in the shared
``qm9-rattled`` data) for ``--molecules`` QM9 molecules read from a CSV file of the PyPI
package ``qm9pack``: indices ending in 8 (the validation split; test indices, ending in 9,
are never taken) with at least ``--min-heavy`` heavy atoms, skipping any index whose
record is in the shared data folders. And ``naphthalene.xyz``, ``anthracene.xyz`` and
``biphenyl.xyz`` (the larger molecules of ``scf_cycles.py``).
"""

from __future__ import annotations

import argparse
import ast
import csv
import sys
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import molecule
from ase.io import write

from scf_cycles import acene

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"


def known_indices() -> set[int]:
    """QM9 indices that have a record in the shared data folders (trained or validated on)."""
    return {int(p.stem.split("_")[1]) for p in SHARED.glob("*/*.npz")}


def qm9_molecules(csv_path: Path, count: int, min_heavy: int) -> list[tuple[int, Atoms]]:
    """The first ``count`` validation-split QM9 molecules of ``csv_path`` not in the shared data."""
    csv.field_size_limit(sys.maxsize)
    known, out = known_indices(), []
    with open(csv_path, newline="") as fh:
        for row in csv.DictReader(fh):
            index = int(row["Index"])
            symbols = ast.literal_eval(row["Elements"])
            if index % 10 != 8 or index in known or sum(s != "H" for s in symbols) < min_heavy:
                continue
            out.append((index, Atoms(symbols, positions=ast.literal_eval(row["XYZ_Ang"]))))
            if len(out) == count:
                break
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--qm9-csv", type=Path, required=True, help="a qm9pack data CSV (qm9pack/data/qm9_part1.csv)")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--molecules", type=int, default=10)
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--rattle", type=float, default=0.05, help="noise per coordinate, Angstrom")
    parser.add_argument("--min-heavy", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    for index, atoms in qm9_molecules(args.qm9_csv, args.molecules, args.min_heavy):
        frames = []
        for _ in range(args.frames):
            frame = atoms.copy()
            frame.positions += rng.normal(scale=args.rattle, size=frame.positions.shape)
            frames.append(frame)
        write(args.output / f"qm9md_{index:06d}.xyz", frames)
        print(f"qm9md_{index:06d}.xyz: {atoms.get_chemical_formula()}, {args.frames} frames")
    for name, atoms in (("naphthalene", acene(2)), ("anthracene", acene(3)), ("biphenyl", molecule("biphenyl"))):
        write(args.output / f"{name}.xyz", atoms)
        print(f"{name}.xyz: {atoms.get_chemical_formula()}")


if __name__ == "__main__":
    main()
