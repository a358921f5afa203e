"""Full-grid NMAE and dipole error of a model on the validation molecules of the shared reference data,
or on any folders of reference records, crystals included.

    python benchmarks/validation_nmae.py --model promolecule
    python benchmarks/validation_nmae.py --model default --split train --limit 20   # its own training data
    python benchmarks/validation_nmae.py --model default --data ood-records/ --split any
    python benchmarks/validation_nmae.py --model default --by-distance   # where the error lies
    python benchmarks/validation_nmae.py --model default --data heteroatoms/val --split any --by-element --by-kind
    python benchmarks/validation_nmae.py --model default --data crystals/records/val --split any --by-family

Validation = QM9 indices ending in 8 (``--split train``: 0-7; ``any``: every record, QM9 or
not). Each molecule is compared on a box grid (0.1 A spacing, 4 A margin by default) with
its exact PySCF density; reference grids are cached on disk (first run: seconds per
molecule). Prints one line per molecule, the mean and median NMAE in percent, the mean
dipole error (the mixture's analytic dipole against the exact one of the MO
coefficients, Debye), and the prediction time per molecule. ``--by-distance`` adds the mean
share of the NMAE from each band of distance to the nearest nucleus
(:func:`ase_electra.scoring.nmae_by_distance`). ``--by-element`` adds, for every element, the
mean NMAE and dipole error of the molecules holding it and the relative error of the density at
its nuclei (mean and range; a grid point on a nucleus counts that value). Molecules with an element the model
lacks are counted as refused, not scored. Crystals (periodic records, on their own cell grids)
have no dipole; for them the NMAE beyond 0.5 A of every nucleus (nearest periodic image,
:func:`ase_electra.scoring.nmae_beyond`) is printed beside the full-grid NMAE, and
``--by-family`` groups them by prototype (the second field of names such as
``NaCl_rocksalt_v100``, as ``benchmarks/crystal_structures.py`` writes them).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from ase.data import chemical_symbols

from ase_electra.datasets import GridCache, find_samples
from ase_electra.density import Density
from ase_electra.models import load_model
from ase_electra.evaluate import evaluate, evaluate_points
from ase_electra.properties.multipoles import DEBYE
from ase_electra.scoring import distance_bands, nmae, nmae_beyond, nmae_by_distance
from ase_electra.train import dipole_error, grid_nmae

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="promolecule", help="'promolecule' or a trained model folder")
    parser.add_argument("--data", type=Path, nargs="+", default=[ROOT.parent / "shared" / "datasets" / "qm9-pbe-def2svp"])
    parser.add_argument("--split", choices=("validation", "train", "any"), default="validation")
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache" / "reference-grids")
    parser.add_argument("--spacing", type=float, default=0.1, help="grid spacing, Angstrom")
    parser.add_argument("--margin", type=float, default=4.0, help="vacuum around the molecule, Angstrom")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N molecules")
    parser.add_argument("--by-distance", action="store_true", help="NMAE shares by distance to the nearest nucleus")
    parser.add_argument("--by-element", action="store_true", help="mean NMAE and dipole error per element")
    parser.add_argument("--by-family", action="store_true", help="crystals: mean NMAEs per prototype")
    parser.add_argument("--by-kind", action="store_true",
                        help="molecules: mean NMAE and dipole error per name prefix (small_, sub_, common_, qm9_)")
    args = parser.parse_args()

    samples = [s for folder in args.data for s in find_samples(folder, args.spacing, args.margin)]
    samples = [s for s in samples if args.split == "any" or s.split == args.split][: args.limit]
    model = load_model(args.model)
    cache = GridCache(args.cache)
    scores, seconds, shares, scored, refused, dipoles, far, nuclei = [], [], [], [], [], {}, {}, {}
    print(f"model {args.model}: {len(samples)} structures ({args.split}), grid {args.spacing} A, margin {args.margin} A")
    known = [s for s in samples if set(s.atoms.numbers.tolist()) <= model.elements]
    if not known:
        raise SystemExit(f"model {args.model} lacks an element of every one of the {len(samples)} molecules")
    with torch.no_grad():  # untimed warm-up: numba loads (or compiles) its kernels on the first call
        grid_nmae(model.predict([known[0].atoms]), known[0], cache.values(known[0]))
    for sample in samples:
        lacking = sorted(set(sample.atoms.numbers.tolist()) - model.elements)
        if lacking:
            refused.append(sample)
            print(f"{sample.name}  refused: the model lacks {' '.join(chemical_symbols[z] for z in lacking)}")
            continue
        scored.append(sample)
        reference = cache.values(sample)
        start = time.perf_counter()
        with torch.no_grad():
            mixture = model.predict([sample.atoms])
            pred = evaluate(mixture, sample.grid).numpy()
        score = nmae(Density(sample.atoms, sample.grid, pred), Density(sample.atoms, sample.grid, reference))
        seconds.append(time.perf_counter() - start)
        scores.append(score)
        if args.by_distance:
            shares.append(nmae_by_distance(pred, reference, sample.grid, sample.atoms.positions))
        if any(sample.grid.pbc):
            far[sample.name] = nmae_beyond(pred, reference, sample.grid, sample.atoms.positions)
            print(f"{sample.name}  atoms {len(sample.atoms):3d}  NMAE {100 * score:7.3f} %  beyond 0.5 A "
                  f"{100 * far[sample.name]:7.3f} %  {seconds[-1]:6.2f} s")
            continue
        dipoles[sample.name] = dipole_error(mixture, sample, sample.reference_dipole()).item() / DEBYE
        if args.by_element:  # the density at the nuclei, where a grid point on a nucleus weighs most
            with torch.no_grad():
                at_nuclei = evaluate_points(mixture, sample.atoms.positions).numpy()
            exact = sample.reference_nuclei().reshape(len(sample.atoms), -1)[:, 0]  # near_nuclei: the nucleus first
            nuclei[sample.name] = at_nuclei / exact - 1.0
        print(f"{sample.name}  atoms {len(sample.atoms):3d}  NMAE {100 * score:7.3f} %  dipole error "
              f"{dipoles[sample.name]:6.3f} D  {seconds[-1]:6.2f} s")
    if refused:
        print(f"refused {len(refused)} of {len(samples)} molecules")
    dipole = f"mean dipole error {statistics.mean(dipoles.values()):.3f} D" if dipoles else "no molecules"
    beyond = f"; crystals beyond 0.5 A {100 * statistics.mean(far.values()):.3f} %" if far else ""
    print(
        f"mean NMAE {100 * statistics.mean(scores):.3f} %, median {100 * statistics.median(scores):.3f} %, "
        f"max {100 * max(scores):.3f} %; {dipole}{beyond}; predict + grid evaluation "
        f"{statistics.mean(seconds):.2f} s per structure (torch {torch.__version__}, {torch.get_num_threads()} threads)"
    )
    def dipole_column(rows: list[int]) -> str:
        """Mean dipole error (D) of the scored molecules at ``rows``, or "-" if none has one."""
        holding = [dipoles[scored[i].name] for i in rows if scored[i].name in dipoles]
        return f"{np.mean(holding):6.3f} D" if holding else "     -"

    if args.by_element:
        print("per element (structures holding it): count, mean NMAE, mean dipole error of its molecules; "
              "mean and range of (rho_pred / rho_ref - 1) at its nuclei")
        for z in sorted({int(z) for s in scored for z in s.atoms.numbers}):
            rows = [i for i, s in enumerate(scored) if z in s.atoms.numbers]
            at = np.concatenate([nuclei[s.name][s.atoms.numbers == z] for s in scored if s.name in nuclei] + [[]])
            peaks = f"  {100 * at.mean():+7.2f} % ({100 * at.min():+.2f} to {100 * at.max():+.2f})" if len(at) else ""
            print(f"  {chemical_symbols[z]:>2}  {len(rows):4d}  {100 * np.mean([scores[i] for i in rows]):7.3f} %  "
                  + dipole_column(rows) + peaks)
    if args.by_kind:
        print("per kind (name before the first _): count, mean NMAE, worst NMAE, mean dipole error")
        kind = [s.name.split("_")[0] for s in scored]
        for name in sorted(set(kind)):
            rows = [i for i, k in enumerate(kind) if k == name]
            print(f"  {name:<8} {len(rows):4d}  {100 * np.mean([scores[i] for i in rows]):7.3f} %  "
                  f"{100 * max(scores[i] for i in rows):7.3f} %  " + dipole_column(rows))
    if args.by_family:
        print("per family (crystals): count, mean NMAE, mean NMAE beyond 0.5 A of the nuclei")
        family = {s.name: s.name.split("_")[1] if "_" in s.name else s.name for s in scored if s.name in far}
        for name in sorted(set(family.values())):
            rows = [i for i, s in enumerate(scored) if family.get(s.name) == name]
            print(f"  {name:<14} {len(rows):4d}  {100 * np.mean([scores[i] for i in rows]):7.3f} %  "
                  f"{100 * np.mean([far[scored[i].name] for i in rows]):7.3f} %")
    if shares:
        mean = np.mean(shares, axis=0)
        print("NMAE by distance to the nearest nucleus (A), mean share in points: "
              + "; ".join(f"{b}: {100 * v:.3f}" for b, v in zip(distance_bands(), mean)))


if __name__ == "__main__":
    main()
