"""Bader charges and grid sums from point- and voxel-sampled grids, against a fine grid.

    NUMBA_NUM_THREADS=1 python benchmarks/bader.py

Needs pybader (``pip install pybader``; not a dependency of the package). For water and
ethanol with the shipped default model and rocksalt NaCl (primitive cell, a = 5.64 A,
translated so no nucleus sits on a grid point) with the promolecule, this evaluates each
density on each ``--coarse`` grid (default 0.1 A) with ``sampling="point"`` and
``"voxel"`` and on the ``--fine`` grid (0.03 A) with ``"point"``, runs pybader's
near-grid Bader analysis on each, and prints every atom's charge (Z minus the electrons
in its basins) with the coarse charges' difference from the fine one, then each grid's
sum times the voxel volume against the mixture's electron count. Molecules get a box
with ``--margin`` of vacuum, which pybader treats as a periodic cell; points below
``VACUUM`` belong to no atom (their charge is printed). Without that, every point of the
exactly-zero vacuum beyond the Gaussians' cut-offs is a maximum of its own, and pybader's
list of maxima, grown by one grid plane at a time, made the 0.03 A water grid take over
20 minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import io
import sys
import time
import types

import numpy as np
from ase import Atoms
from ase.build import bulk, molecule

from ase_electra.models import load_model
from ase_electra.predict import grid_for, in_box_frame, predict_densities

#: Density below which a point is vacuum in the Bader analysis, e/Angstrom^3.
VACUUM = 1e-6

#: Where the rocksalt cell is moved so that neither nucleus lies on a 0.1 or 0.03 A grid point.
NACL_SHIFT = np.array([0.0131, 0.0292, 0.0417])


def import_pybader() -> types.ModuleType:
    """pybader 0.3.12 imports ``pkg_resources``, which setuptools >= 81 no longer ships.

    It only uses ``iter_entry_points`` (on its first run, to cache its JIT functions) and
    imports ``resource_listdir``; where ``pkg_resources`` is missing, a stand-in module
    provides both from ``importlib.metadata``.
    """
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        stand_in = types.ModuleType("pkg_resources")
        stand_in.iter_entry_points = lambda group, name=None: [
            ep for ep in importlib.metadata.entry_points(group=group) if name in (None, ep.name)
        ]
        stand_in.resource_listdir = lambda package, path: []
        sys.modules["pkg_resources"] = stand_in
    import pybader

    return pybader


def bader_charges(atoms: Atoms, grid, values: np.ndarray) -> tuple[np.ndarray, float]:
    """Z minus the electrons pybader assigns to each atom, from ``values`` (e/A^3) on
    ``grid``, and the electrons on vacuum points (below ``VACUUM``)."""
    from pybader.interface import Bader

    info = {"filename": "grid", "prefix": "", "file_type": "ase-electra", "voxel_offset": np.zeros(3)}
    analysis = Bader({"charge": values}, grid.cell.copy(), atoms.get_positions(wrap=True) - grid.origin, info)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        analysis(threads=1, output="none", vacuum_tol=VACUUM)
    return atoms.numbers - analysis.atoms_charge, float(analysis.vacuum_charge)


def structures() -> list[tuple[str, Atoms, str]]:
    """(name, atoms, model name) of each benchmark structure."""
    nacl = bulk("NaCl", "rocksalt", a=5.64)
    nacl.translate(NACL_SHIFT)
    return [("H2O", molecule("H2O"), "default"), ("ethanol", molecule("CH3CH2OH"), "default"),
            ("NaCl", nacl, "promolecule")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--coarse", type=float, nargs="+", default=[0.1], help="grid spacings to test, Angstrom")
    parser.add_argument("--fine", type=float, default=0.03, help="reference grid spacing, Angstrom")
    parser.add_argument("--margin", type=float, default=4.0, help="vacuum around molecules, Angstrom")
    args = parser.parse_args(argv)
    import_pybader()
    runs = [(sampling, spacing) for spacing in args.coarse for sampling in ("point", "voxel")] + [("point", args.fine)]
    for name, atoms, model_name in structures():
        model = load_model(model_name)
        electrons = float(model.predict([atoms]).integral()[0])
        charges, vacuum, sums = [], [], []
        for sampling, spacing in runs:
            moved, grid = in_box_frame(atoms, grid_for(atoms, spacing, args.margin))
            start = time.perf_counter()
            (density,) = predict_densities(model, [moved], [grid], sampling=sampling)
            evaluated = time.perf_counter()
            atom_charges, vacuum_charge = bader_charges(moved, grid, density.values)
            charges.append(atom_charges)
            vacuum.append(vacuum_charge)
            sums.append(density.values.sum() * grid.voxel_volume)
            print(f"{name} {sampling} {spacing:g} A: grid {grid.describe()}, {grid.n_points:,} points, "
                  f"density {evaluated - start:.1f} s, Bader {time.perf_counter() - evaluated:.1f} s", flush=True)
        print(f"\n{name} ({model_name} model, {electrons:.4f} electrons)")
        print_table(atoms.get_chemical_symbols(), [f"{s} {h:g}" for s, h in runs], charges, vacuum, sums, electrons)


def print_table(symbols: list[str], labels: list[str], charges: list[np.ndarray], vacuum: list[float],
                sums: list[float], electrons: float) -> None:
    """Each atom's charge per run and each coarse run's difference from the last (fine) run, e;
    then the largest difference, the vacuum's charge, and each grid's sum."""
    width = max(11, max(map(len, labels)) + 2)
    differences = [c - charges[-1] for c in charges[:-1]]
    print(f"{'charge':8} " + " ".join(f"{label:>{width}}" for label in labels)
          + " " + " ".join(f"{'d ' + label:>{width}}" for label in labels[:-1]))
    for i, symbol in enumerate(symbols):
        print(f"{symbol + str(i):8} " + " ".join(f"{c[i]:{width}.3f}" for c in charges)
              + " " + " ".join(f"{d[i]:+{width}.3f}" for d in differences))
    print(f"{'max |d|':8} " + " " * (width + 1) * len(labels) + " ".join(f"{abs(d).max():{width}.3f}" for d in differences))
    print(f"{'vacuum':8} " + " ".join(f"{-v:{width}.3f}" for v in vacuum))
    print(f"{'grid sum':8} " + " ".join(f"{s:{width}.4f}" for s in sums))
    print(f"{'error %':8} " + " ".join(f"{100 * (s / electrons - 1):+{width}.3f}" for s in sums))
    print(flush=True)

if __name__ == "__main__":
    main()
