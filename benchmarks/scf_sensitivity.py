"""How SCF cycles depend on the initial guess's error: guesses moved part of the way to the answer.

    python benchmarks/scf_sensitivity.py                       # first validation molecule, shipped model
    python benchmarks/scf_sensitivity.py --molecule qm9_006858 --fractions 1 0.1 0.01

For one molecule of the shared data (PBE/def2-SVP, density fitting, conv_tol 1e-9, as in
``benchmarks/scf_cycles.py``) it converges PySCF from 'minao' to get the converged density
matrix D, then starts PySCF again from D + t (G - D) for each fraction t, with G the 'minao'
guess and the predicted (Harris) guess of ``--model``. t = 1 is the guess itself and t = 0
the answer. Prints the SCF cycles per (guess, t) and the Frobenius norm ||G_t - D||: how much
closer than 'minao' a guess must be to save a given number of cycles. Cycle counts do not
depend on machine load.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ase_electra.models import load_model
from ase_electra.reference import list_records, load_record
from ase_electra.scf import mean_field, predicted_guess

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="'default', 'promolecule' or a trained model folder")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets" / "qm9-pbe-def2svp")
    parser.add_argument("--molecule", default=None, help="record name (default: first validation molecule)")
    parser.add_argument("--fractions", type=float, nargs="+", default=[1, 0.3, 0.1, 0.03, 0.01, 0])
    args = parser.parse_args()

    records = list_records(args.data, split="validation")
    path = records[0] if args.molecule is None else next(p for p in records if p.stem == args.molecule)
    atoms = load_record(path).atoms
    settings = dict(xc="pbe", basis="def2-svp", conv_tol=1e-9)

    reference = mean_field(atoms, **settings)
    reference.kernel()
    answer = reference.make_rdm1()
    guesses = {"minao": reference.get_init_guess(key="minao"),
               args.model: predicted_guess(mean_field(atoms, **settings), load_model(args.model))}
    print(f"{path.stem}: {len(atoms)} atoms, minao converges in {reference.cycles} cycles")
    print(f"{'guess':<12} {'t':>6} {'||G_t - D||':>12} {'cycles':>6}")
    for name, guess in guesses.items():
        for t in args.fractions:
            start = answer + t * (guess - answer)
            mf = mean_field(atoms, **settings)
            mf.kernel(dm0=start)
            flag = "" if abs(mf.e_tot - reference.e_tot) <= 1e-6 else "  (energy differs)"
            print(f"{name:<12} {t:6.2f} {np.linalg.norm(start - answer):12.4f} {mf.cycles:6d}{flag}", flush=True)


if __name__ == "__main__":
    main()
