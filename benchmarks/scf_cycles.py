"""SCF cycles and time of PySCF started from predicted densities, against PySCF's own guesses.

    python benchmarks/scf_cycles.py --models promolecule default --runs scf_runs.jsonl   # hours on one core
    python benchmarks/scf_cycles.py --models default --methods harris projection --limit 5 --no-large
    python benchmarks/scf_cycles.py --models default --guess-grid-level -1 --guesses --limit 8 --no-large
    python benchmarks/scf_cycles.py --models default --runs scf_runs.jsonl --shard 1/2 &   # two processes,
    python benchmarks/scf_cycles.py --models default --runs scf_runs.jsonl --shard 2/2     # one file

With ``--runs FILE`` every finished SCF run is appended to FILE as one JSON line and runs
already there are not repeated, so an interrupted benchmark continues, shards share a file,
and rerunning the full command prints the tables of everything in it.

Molecules: the validation records of the shared data (QM9 index ending in 8; geometries
from the records), then molecules larger than QM9 (naphthalene and anthracene built here
with ideal 1.40 A / 1.09 A bonds, biphenyl from ``ase.build.molecule``). Each one runs
PySCF density-fitted RKS (PBE/def2-SVP, conv_tol 1e-9 as in the reference data) from
every guess: each model's prediction (``ase_electra.scf``, each of ``--methods``), then 'minao'
(PySCF's default), 'atom' and 'huckel'. Reports per guess the mean and median SCF cycles,
wall and CPU seconds (prediction and guess included, model loading not), and the NMAE of
the guess density on the DFT grid; every converged energy must match minao's to 1e-6 Ha.
The last two columns read each run's cycle history: the cycles PySCF would have counted with
conv_tol 1e-6 (the trajectory does not depend on the threshold until it stops).
CPU seconds (all threads of the process) are steadier than wall seconds on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import molecule

from ase_electra.models import load_model
from ase_electra.reference import list_records, load_record
from ase_electra.scf import GUESS_GRID_LEVEL, GUESS_METHODS, PYSCF_GUESSES, GuessRun, run_scf

ROOT = Path(__file__).resolve().parents[1]
ENERGY_TOLERANCE = 1e-6  # Hartree
LOOSE_TOL = 1e-6  # Hartree: the cycles each run needed to pass this looser PySCF threshold are reported too


def acene(rings: int) -> Atoms:
    """Linear acene (naphthalene for 2 rings) with C-C 1.40 A and C-H 1.09 A, in the xy plane."""
    r = 1.40
    carbons: list[np.ndarray] = []
    for ring in range(rings):
        centre = np.array([ring * np.sqrt(3) * r, 0.0, 0.0])
        for angle in np.radians(np.arange(30, 360, 60)):
            p = centre + r * np.array([np.cos(angle), np.sin(angle), 0.0])
            if all(np.linalg.norm(p - c) > 0.1 for c in carbons):
                carbons.append(p)
    carbons_a = np.array(carbons)
    hydrogens = []
    for c in carbons_a:
        neighbours = carbons_a[np.linalg.norm(carbons_a - c, axis=1) < 1.5 * r]  # itself included
        if len(neighbours) == 3:  # two carbon neighbours: one C-H bond pointing outwards
            out = c - neighbours.mean(0)
            hydrogens.append(c + 1.09 * out / np.linalg.norm(out))
    return Atoms(f"C{len(carbons_a)}H{len(hydrogens)}", positions=np.vstack([carbons_a, hydrogens]))


def structures(data: Path, limit: int | None, large: bool) -> list[tuple[str, Atoms]]:
    """(set, atoms) pairs: validation records first, then the larger molecules."""
    out = []
    for path in list_records(data, split="validation")[:limit]:
        atoms = load_record(path).atoms
        atoms.info["name"] = path.stem
        out.append(("validation", atoms))
    if large:
        for name, atoms in (("naphthalene", acene(2)), ("anthracene", acene(3)), ("biphenyl", molecule("biphenyl"))):
            atoms.info["name"] = name
            out.append(("large", atoms))
    return out


def summarise(runs: list[GuessRun], baseline: str = "minao") -> list[dict]:
    """Per guess: counts, mean/median cycles and seconds, mean NMAE, cycle ratio to the baseline."""
    base = {r.structure: r for r in runs if r.guess == baseline}
    rows = []
    for guess in dict.fromkeys(r.guess for r in runs):
        mine = [r for r in runs if r.guess == guess]
        cycles = [r.cycles for r in mine]
        ratio = [r.cycles / base[r.structure].cycles for r in mine if r.structure in base]
        # Runs recorded before histories were kept have none: the loose columns then say '-'.
        loose = [r.cycles_to(LOOSE_TOL) for r in mine] if all(r.history for r in mine) else []
        loose_ratio = [r.cycles_to(LOOSE_TOL) / base[r.structure].cycles_to(LOOSE_TOL) for r in mine
                       if r.structure in base and r.history and base[r.structure].history]
        rows.append({
            "guess": guess,
            "molecules": len(mine),
            "converged": sum(r.converged for r in mine),
            "energy_mismatches": sum(
                r.structure in base and abs(r.energy - base[r.structure].energy) > ENERGY_TOLERANCE for r in mine
            ),
            "mean_cycles": statistics.mean(cycles),
            "median_cycles": statistics.median(cycles),
            "mean_wall_s": statistics.mean(r.wall_seconds for r in mine),
            "median_wall_s": statistics.median(r.wall_seconds for r in mine),
            "mean_cpu_s": statistics.mean(r.cpu_seconds for r in mine),
            "mean_guess_nmae": statistics.mean(r.guess_nmae for r in mine),
            "mean_model_nmae": None if mine[0].model_nmae is None else statistics.mean(r.model_nmae for r in mine),
            "mean_cycles_vs_minao": statistics.mean(ratio) if ratio else None,
            "mean_loose_cycles": statistics.mean(loose) if loose else None,
            "mean_loose_cycles_vs_minao": statistics.mean(loose_ratio) if loose and loose_ratio else None,
        })
    return rows


def percent(ratio: float | None) -> str:
    return "-" if ratio is None else f"{100 * (ratio - 1):+.0f}%"


def table(title: str, rows: list[dict]) -> str:
    lines = [title, f"{'guess':<18} {'n':>3} {'cycles mean':>11} {'median':>6} {'vs minao':>8} {'wall s mean':>11} "
                    f"{'median':>7} {'cpu s mean':>10} {'NMAE guess %':>12} {'model %':>7} {'E mismatch':>10} "
                    f"{f'at {LOOSE_TOL:g}':>8} {'vs minao':>8}"]
    for r in rows:
        model = "-" if r["mean_model_nmae"] is None else f"{100 * r['mean_model_nmae']:.2f}"
        loose = "-" if r["mean_loose_cycles"] is None else f"{r['mean_loose_cycles']:.2f}"
        lines.append(
            f"{r['guess']:<18} {r['molecules']:>3} {r['mean_cycles']:11.2f} {r['median_cycles']:6.1f} "
            f"{percent(r['mean_cycles_vs_minao']):>8} {r['mean_wall_s']:11.1f} {r['median_wall_s']:7.1f} "
            f"{r['mean_cpu_s']:10.1f} {100 * r['mean_guess_nmae']:12.2f} {model:>7} {r['energy_mismatches']:>10} "
            f"{loose:>8} {percent(r['mean_loose_cycles_vs_minao']):>8}"
        )
    return "\n".join(lines)


def shard(text: str) -> tuple[int, int]:
    """'I/N' -> (I - 1, N): this process takes every N-th molecule from the I-th."""
    i, n = (int(x) for x in text.split("/"))
    if not 1 <= i <= n:
        raise argparse.ArgumentTypeError(f"expected I/N with 1 <= I <= N, got {text!r}")
    return i - 1, n


def load_runs(path: Path | None) -> dict[tuple[str, str], GuessRun]:
    """Runs recorded in a JSON-lines file, by (structure, guess)."""
    if path is None or not path.exists():
        return {}
    runs = [GuessRun(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
    return {(r.structure, r.guess): r for r in runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["promolecule"],
                        help="models to predict with: 'promolecule', 'default' and/or trained model folders")
    parser.add_argument("--methods", nargs="+", choices=GUESS_METHODS, default=["harris"],
                        help="predicted-guess methods; guesses are labelled 'model' (harris) or 'model/method'")
    parser.add_argument("--guess-grid-level", type=int, default=GUESS_GRID_LEVEL,
                        help=f"grid level of the harris guess's V_xc (default {GUESS_GRID_LEVEL}; -1: the SCF's own "
                             "grid); other than the default, labels get '@gridN'")
    parser.add_argument("--guesses", nargs="*", choices=PYSCF_GUESSES, default=list(PYSCF_GUESSES),
                        help="PySCF guesses to compare with (minao is the energy reference)")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets" / "qm9-pbe-def2svp")
    parser.add_argument("--limit", type=int, default=None, help="only the first N validation molecules")
    parser.add_argument("--no-large", dest="large", action="store_false", help="skip the molecules larger than QM9")
    parser.add_argument("--runs", type=Path, default=None, help="JSON-lines file of finished runs (read, appended)")
    parser.add_argument("--shard", type=shard, default=(0, 1), help="I/N: run only molecules I, I+N, ... (1-based)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    args = parser.parse_args()

    models = {spec: load_model(spec) for spec in args.models}
    level = None if args.guess_grid_level < 0 else args.guess_grid_level
    grid_tag = "" if level == GUESS_GRID_LEVEL else f"@grid{'scf' if level is None else level}"
    predicted = [(spec + ("" if method == "harris" else f"/{method}") + (grid_tag if method == "harris" else ""),
                  spec, method) for spec in args.models for method in args.methods]
    guesses = list(dict.fromkeys(["minao", *args.guesses]))
    jobs = structures(args.data, args.limit, args.large)
    settings = dict(xc="pbe", basis="def2-svp", conv_tol=1e-9)
    done = load_runs(args.runs)
    log = sys.stderr if args.json else sys.stdout
    first, step = args.shard
    print(f"{len(jobs[first::step])} of {len(jobs)} molecules; guesses: "
          f"{', '.join([label for label, _, _ in predicted] + guesses)}", file=log)
    for _, atoms in jobs[first::step]:
        name = atoms.info["name"]
        todo = [(label, "predicted", models[spec], method) for label, spec, method in predicted]
        todo += [(guess, guess, None, "harris") for guess in guesses]
        mine = []
        for label, guess, model, method in todo:
            run = done.get((name, label))
            if run is None:
                run = run_scf(atoms, guess, model=model, label=label, method=method, grid_level=level, **settings)
                if args.runs is not None:
                    with args.runs.open("a") as f:
                        f.write(json.dumps(run.as_dict()) + "\n")
                done[(name, label)] = run
            mine.append(run)
        minao = next(r for r in mine if r.guess == "minao")
        cells = [f"{r.guess} {r.cycles}{'' if r.converged else '!'} ({r.wall_seconds:.0f} s"
                 f"{'' if abs(r.energy - minao.energy) <= ENERGY_TOLERANCE else ', E differs'})" for r in mine]
        print(f"{name:<12} {len(atoms):3d} atoms  " + "  ".join(cells), file=log, flush=True)
    if step > 1:
        return  # shards print no tables: rerun without --shard to summarise the shared --runs file
    done = load_runs(args.runs) | done
    names = {atoms.info["name"] for _, atoms in jobs}
    labels = list(dict.fromkeys([label for label, _, _ in predicted]
                                + [guess for name, guess in done if name in names and guess not in guesses]
                                + guesses))  # every guess the --runs file holds for these molecules
    runs: dict[str, list[GuessRun]] = {}
    for group, atoms in jobs:
        runs.setdefault(group, []).extend(
            done[(atoms.info["name"], label)] for label in labels if (atoms.info["name"], label) in done)
    summaries = {group: summarise(r) for group, r in runs.items() if r}
    if args.json:
        print(json.dumps({"settings": settings | {"methods": args.methods, "models": args.models},
                          "summary": summaries,
                          "runs": {g: [r.as_dict() for r in rs] for g, rs in runs.items()}}, indent=2))
        return
    for group, rows in summaries.items():
        print()
        print(table(f"{group} molecules ({rows[0]['molecules']}); energy check: |E - E(minao)| <= "
                    f"{ENERGY_TOLERANCE:g} Ha", rows))


if __name__ == "__main__":
    main()
