"""Seconds and peak memory of Hirshfeld charges (``hirshfeld_charges``) for molecules of growing size.

    python benchmarks/hirshfeld_speed.py                              # ethanol, C10H22, C15H32, C30H62
    python benchmarks/hirshfeld_speed.py --molecules ethanol C10H22 --save before.npz
    python benchmarks/hirshfeld_speed.py --against before.npz         # largest |q - q_saved|, e

Molecules: ethanol (``ase.build.molecule``) and all-trans n-alkanes CnH2n+2 built as a
zig-zag chain (C-C 1.54 A, C-H 1.09 A, tetrahedral angles). The density is the shipped
model's mixture (``--model``); only the ``hirshfeld_charges`` call is timed, best of
``--repeat``, in wall-clock seconds and CPU seconds (summed over threads: on a shared
machine, CPU seconds over threads is about what a quiet one takes), with ``--threads``
threads for torch and numba alike. The compiled kernels come from numba's on-disk cache:
run once before timing (the first compilation takes about a minute). Each molecule runs
in a fresh process: its peak memory is the rise of that
process's peak resident set (VmHWM, reset just before the call through
``/proc/self/clear_refs``) over its resident set before the call, MB.

``--save`` writes every molecule's charges to an ``.npz``; ``--against`` compares with such a
file (written by another version of the code, e.g. before a change) and prints the largest
difference per molecule.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import molecule

CC, CH = 1.54, 1.09  # bond lengths, Angstrom
HALF_ANGLE = np.radians(109.47) / 2


def alkane(n: int) -> Atoms:
    """All-trans CnH2n+2: carbons zig-zag in the xy plane along x, two H per carbon above and below it."""
    step = np.array([CC * np.sin(HALF_ANGLE), CC * np.cos(HALF_ANGLE)])  # (2,) x advance, y zig
    carbons = np.array([[i * step[0], (i % 2) * step[1], 0.0] for i in range(n)])
    out = np.array([0.0, -1.0, 0.0])  # bisector away from the chain, for even carbons
    positions, symbols = list(carbons), ["C"] * n
    for i, c in enumerate(carbons):
        away = out if i % 2 == 0 else -out
        for z in (1.0, -1.0):
            positions.append(c + CH * (np.cos(HALF_ANGLE) * away + np.sin(HALF_ANGLE) * np.array([0, 0, z])))
            symbols.append("H")
    for end, sign in ((0, -1.0), (n - 1, 1.0)):  # the terminal H continues the zig-zag
        away = out if end % 2 == 0 else -out
        positions.append(carbons[end] + CH * (np.sin(HALF_ANGLE) * np.array([sign, 0, 0]) - np.cos(HALF_ANGLE) * away))
        symbols.append("H")
    return Atoms(symbols, positions=positions)


def structure(name: str) -> Atoms:
    """'ethanol' or 'C<n>H<2n+2>'."""
    if name == "ethanol":
        return molecule("CH3CH2OH")
    match = re.fullmatch(r"C(\d+)H(\d+)", name)
    if not match or int(match[2]) != 2 * int(match[1]) + 2:
        raise ValueError(f"molecule: expected 'ethanol' or an alkane CnH2n+2, got {name!r}")
    return alkane(int(match[1]))


def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise OSError(f"/proc/self/status: no {field}")


def measure(name: str, model_name: str, threads: int, repeat: int) -> dict:
    """Run in a fresh process: best time (s), peak memory rise (MB) and the charges (e) of one molecule."""
    import numba
    import torch

    from ase_electra.models import load_model
    from ase_electra.properties import hirshfeld_charges

    torch.set_num_threads(threads)
    numba.set_num_threads(threads)
    atoms = structure(name)
    with torch.no_grad():
        mixture = load_model(model_name).predict([atoms])
    best, cpu, charges, peak = np.inf, np.inf, None, 0.0
    for _ in range(repeat):
        before = _rss_mb("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        start, start_cpu = time.perf_counter(), time.process_time()
        charges = hirshfeld_charges(mixture, atoms.numbers, atoms.positions)
        best = min(best, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
        peak = max(peak, _rss_mb("VmHWM") - before)
    return {"name": name, "atoms": len(atoms), "gaussians": mixture.n_gaussians, "seconds": best, "cpu": cpu,
            "peak_mb": peak, "charges": charges}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--molecules", nargs="+", default=["ethanol", "C10H22", "C15H32", "C30H62"])
    parser.add_argument("--model", default="default", help="'default', 'promolecule' or a model folder")
    parser.add_argument("--threads", type=int, default=2, help="torch and numba threads")
    parser.add_argument("--repeat", type=int, default=1, help="calls per molecule; the fastest counts")
    parser.add_argument("--save", type=Path, help="write the charges to this .npz")
    parser.add_argument("--against", type=Path, help="compare with charges saved by --save")
    args = parser.parse_args(argv)
    for name in args.molecules:
        structure(name)  # refuse a bad name before any work
    saved = dict(np.load(args.against)) if args.against else {}

    import torch

    print(f"model {args.model}; {args.threads} threads (torch and numba); torch {torch.__version__}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'molecule':9} {'atoms':>5} {'Gaussians':>9} {'seconds':>8} {'CPU s':>8} {'peak MB':>8} {'sum q':>9} "
          f"{'max |dq|':>9}")
    results = {}
    with ProcessPoolExecutor(1, mp_context=get_context("spawn"), max_tasks_per_child=1) as pool:
        for name in args.molecules:
            r = pool.submit(measure, name, args.model, args.threads, args.repeat).result()
            results[name] = r["charges"]
            diff = f"{np.abs(r['charges'] - saved[name]).max():9.1e}" if name in saved else f"{'-':>9}"
            print(f"{name:9} {r['atoms']:5d} {r['gaussians']:9d} {r['seconds']:8.2f} {r['cpu']:8.2f} "
                  f"{r['peak_mb']:8.0f} {r['charges'].sum():9.1e} {diff}", flush=True)
    if args.save:
        np.savez(args.save, **results)


if __name__ == "__main__":
    main()
