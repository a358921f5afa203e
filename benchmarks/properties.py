"""Charges, dipole, quadrupole and ESP of the models against the exact reference densities.

    python benchmarks/properties.py                      # default and promolecule, 20 molecules
    python benchmarks/properties.py --models default --limit 5
    python benchmarks/properties.py --models default --data heteroatoms/val --split any --limit 0

For the validation molecules of the shared data (QM9 indices ending in 8; never 9; ``--split
any``: every record of ``--data``), the
exact PySCF PBE/def2-SVP density of each record gives the reference properties:

* Hirshfeld charges with the same free-atom references (the promolecule table),
  integrated on PySCF's Becke grid (``--grid-level``, default 4) applied to the exact
  density (``ReferenceRecord.density_at``);
* dipole and traceless (Buckingham) quadrupole from the density matrix 2 C C^T and
  PySCF's ``int1e_r`` / ``int1e_rr`` integrals, about the centre of nuclear charge;
* the electrostatic potential from PySCF's ``int1e_grids`` integrals (electrons) plus the
  point nuclei, on molecular-surface points: shells at 1.4, 1.6, 1.8 and 2.0 times the
  van der Waals radii (``ase.data.vdw_radii``, as Merz-Kollman ESP fitting uses),
  ``--density`` points per Angstrom^2, dropping points inside another atom's shell;
* the same potential at the points of the 0.2 Angstrom box (margin 4 A) that
  ``electra-density --esp`` writes lying on those shells (1.4 to 2.0 van der Waals radii
  from the nearest atom; as many, drawn at random, as there are surface points), for the
  grid path (:func:`~ase_electra.properties.potential_on_grid`, the Ewald split).

The model's properties come from :mod:`ase_electra.properties` (Hirshfeld on the
Gaussians' own grids, analytic moments, analytic potential at the surface points, the
Ewald-split grid potential at the box's shell points). Prints per molecule and the
summary: charge MAE (e, over all atoms), dipole error |p_model - p_ref| (debye),
quadrupole error (Frobenius norm of the difference, debye Angstrom), ESP RMSE over the
surface points and over the box's shell points (kcal/mol per unit charge), each as a mean
over the molecules, and the largest RMSE between the grid potential and the analytic one
at the shell points.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from ase.data import vdw_radii
from ase.units import Hartree, kcal, mol

from ase_electra.grid import Grid
from ase_electra.models import load_model
from ase_electra.properties import (
    DEBYE,
    dipole_moment,
    electrostatic_potential,
    hirshfeld_charges,
    hirshfeld_charges_of,
    potential_on_grid,
    quadrupole_moment,
)
from ase_electra.reference import BOHR, list_records, load_record

ROOT = Path(__file__).resolve().parents[1]
SHELLS = (1.4, 1.6, 1.8, 2.0)
KCAL_PER_VOLT = 1.0 / (kcal / mol)  # kcal/mol per eV (per unit charge)


def surface_points(numbers: np.ndarray, positions: np.ndarray, density: float) -> np.ndarray:
    """Merz-Kollman-style points (P, 3) Angstrom on scaled van der Waals shells."""
    radii = vdw_radii[numbers]
    out = []
    for scale in SHELLS:
        for centre, radius in zip(positions, scale * radii):
            n = max(8, int(np.ceil(4.0 * np.pi * radius**2 * density)))
            k = np.arange(n) + 0.5
            z = 1.0 - 2.0 * k / n
            phi = np.pi * (1.0 + 5**0.5) * k  # Fibonacci sphere
            ring = np.sqrt(1.0 - z * z)
            pts = centre + radius * np.stack([ring * np.cos(phi), ring * np.sin(phi), z], axis=1)
            inside = (np.linalg.norm(pts[:, None] - positions[None], axis=-1) < scale * radii - 1e-9).any(axis=1)
            out.append(pts[~inside])
    return np.concatenate(out)


def shell_grid_points(numbers: np.ndarray, positions: np.ndarray, n: int, rng: np.random.Generator
                      ) -> tuple[Grid, np.ndarray]:
    """electra-density's 0.2 A box (margin 4 A) and ``n`` of its flat indices 1.4 to 2.0 vdW radii from the atoms."""
    grid = Grid.for_molecule(positions, 0.2, 4.0)
    points = grid.points()
    ratio = np.full(len(points), np.inf)
    for position, radius in zip(positions, vdw_radii[numbers]):
        ratio = np.minimum(ratio, np.linalg.norm(points - position, axis=1) / radius)
    shell = np.nonzero((ratio >= SHELLS[0]) & (ratio <= SHELLS[-1]))[0]
    return grid, np.sort(rng.choice(shell, min(n, len(shell)), replace=False))


def reference_properties(record, origin: np.ndarray, points: np.ndarray, grid_level: int) -> dict:
    """Exact Hirshfeld charges (e), dipole (e A), quadrupole (e A^2) and ESP at points (volts)."""
    from pyscf.dft import gen_grid

    mole = record.mole()
    coeff = record.mo_coeff_occ.astype(np.float64)
    dm = 2.0 * coeff @ coeff.T  # (n, n)
    grids = gen_grid.Grids(mole)
    grids.level = grid_level
    grids.build()
    coords, weights = grids.coords * BOHR, grids.weights * BOHR**3  # Angstrom, Angstrom^3
    charges = hirshfeld_charges_of(record.density_at, record.numbers, record.positions, coords, weights)
    electrons = float(weights @ record.density_at(coords))
    r = record.positions - origin
    z = record.numbers.astype(np.float64)
    with mole.with_common_orig(origin / BOHR):
        first = np.einsum("xij,ji->x", mole.intor("int1e_r"), dm) * BOHR  # e A of electrons
        second = np.einsum("xij,ji->x", mole.intor("int1e_rr"), dm).reshape(3, 3) * BOHR**2
    dipole = z @ r - first
    moment = np.einsum("i,ia,ib->ab", z, r, r) - second
    quadrupole = 0.5 * (3.0 * moment - np.trace(moment) * np.eye(3))
    esp = np.empty(len(points))
    for s in range(0, len(points), 256):
        chunk = points[s:s + 256]
        ints = mole.intor("int1e_grids", grids=chunk / BOHR)  # (g, n, n), 1/bohr
        electronic = np.einsum("gij,ij->g", ints, dm)  # Hartree per unit charge
        nuclear = (z / (np.linalg.norm(chunk[:, None] - record.positions[None], axis=-1) / BOHR)).sum(1)
        esp[s:s + 256] = (nuclear - electronic) * Hartree  # volts
    return {"charges": charges, "dipole": dipole, "quadrupole": quadrupole, "esp": esp, "electrons": electrons}


def model_properties(model, atoms, origin: np.ndarray, points: np.ndarray, grid: Grid, shell: np.ndarray) -> dict:
    with torch.no_grad():
        mixture = model.predict([atoms])
    box = grid.points_at(shell)
    return {
        "charges": hirshfeld_charges(mixture, atoms.numbers, atoms.positions),
        "dipole": dipole_moment(mixture, atoms.numbers, atoms.positions, origin),
        "quadrupole": quadrupole_moment(mixture, atoms.numbers, atoms.positions, origin),
        "esp": electrostatic_potential(mixture, atoms.numbers, atoms.positions, points),
        "esp grid": potential_on_grid(mixture, atoms.numbers, atoms.positions, grid).reshape(-1)[shell],
        "esp grid analytic": electrostatic_potential(mixture, atoms.numbers, atoms.positions, box),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["default", "promolecule"])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets" / "qm9-pbe-def2svp")
    parser.add_argument("--split", choices=("validation", "any"), default="validation",
                        help="QM9 indices ending in 8, or every record of --data (e.g. heteroatom molecules)")
    parser.add_argument("--limit", type=int, default=20, help="first N molecules (0: all)")
    parser.add_argument("--grid-level", type=int, default=4, help="PySCF grid level of the reference charges")
    parser.add_argument("--density", type=float, default=1.0, help="surface points per Angstrom^2 per shell")
    args = parser.parse_args()

    paths = list_records(args.data, split=None if args.split == "any" else args.split)
    paths = paths[: args.limit] if args.limit else paths
    models = {name: load_model(name) for name in args.models}
    errors = {name: {"charge": [], "dipole": [], "quadrupole": [], "esp": [], "esp grid": [], "grid - analytic": []}
              for name in models}
    print(f"{len(paths)} molecules ({args.split}), models {', '.join(models)}")
    rng = np.random.default_rng(0)
    for path in paths:
        record = load_record(path)
        atoms = record.atoms
        origin = record.numbers @ record.positions / record.numbers.sum()  # centre of nuclear charge
        points = surface_points(record.numbers, record.positions, args.density)
        grid, shell = shell_grid_points(record.numbers, record.positions, len(points), rng)
        start = time.perf_counter()
        ref = reference_properties(record, origin, np.concatenate([points, grid.points_at(shell)]), args.grid_level)
        ref["esp"], ref["esp grid"] = ref["esp"][: len(points)], ref["esp"][len(points):]
        seconds = time.perf_counter() - start
        line = (f"{record.name} atoms {len(atoms):2d} points {len(points):5d} "
                f"reference int rho - N {ref['electrons'] - record.n_electrons:+.1e} ({seconds:.0f} s)")
        for name, model in models.items():
            start = time.perf_counter()
            got = model_properties(model, atoms, origin, points, grid, shell)
            e = errors[name]
            e["charge"].append(np.abs(got["charges"] - ref["charges"]))
            e["dipole"].append(np.linalg.norm(got["dipole"] - ref["dipole"]) / DEBYE)
            e["quadrupole"].append(np.linalg.norm(got["quadrupole"] - ref["quadrupole"]) / DEBYE)
            for key in ("esp", "esp grid"):
                e[key].append(np.sqrt(np.mean((got[key] - ref[key]) ** 2)) * KCAL_PER_VOLT)
            e["grid - analytic"].append(np.sqrt(np.mean((got["esp grid"] - got["esp grid analytic"]) ** 2))
                                        * KCAL_PER_VOLT)
            line += (f" | {name}: q {e['charge'][-1].mean():.4f} e, p {e['dipole'][-1]:.3f} D, "
                     f"Q {e['quadrupole'][-1]:.3f} D A, ESP {e['esp'][-1]:.2f} kcal/mol, on the box "
                     f"{e['esp grid'][-1]:.2f} (grid - analytic {e['grid - analytic'][-1]:.0e}) "
                     f"({time.perf_counter() - start:.1f} s)")
        print(line, flush=True)
    print("\n| model | charge MAE (e) | dipole error (D) | quadrupole error (D A) | ESP RMSE (kcal/mol) "
          "| ESP RMSE, box shell points (kcal/mol) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, e in errors.items():
        print(f"| {name} | {np.concatenate(e['charge']).mean():.4f} | {statistics.mean(e['dipole']):.3f} | "
              f"{statistics.mean(e['quadrupole']):.3f} | {statistics.mean(e['esp']):.2f} | "
              f"{statistics.mean(e['esp grid']):.2f} |")
    for name, e in errors.items():
        print(f"{name}: grid potential (Ewald split) against the analytic one at the box's shell points: RMSE "
              f"at most {max(e['grid - analytic']):.1e} kcal/mol/e over the molecules")


if __name__ == "__main__":
    main()
