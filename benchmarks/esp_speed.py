"""The electrostatic potential's targets side by side: cost against the density cube, accuracy, periodic checks.

    python benchmarks/esp_speed.py                      # 10 validation QM9 molecules, shipped model
    python benchmarks/esp_speed.py --limit 3 --threads 2
    PYTHONPATH=/path/to/old/checkout python benchmarks/esp_speed.py --limit 1 --stages esp --no-periodic

Molecules: the first ``--limit`` validation records of the shared QM9 data (``--data``;
the example molecule qm9_005128 when the folder is missing), predicted by ``--model``.
Per molecule, as ``electra-density molecule.xyz --esp`` and the calculator run them:

* ``density cube``: the density on the 0.1 Angstrom box (margin 4 A) and its cube file
  (``predict_densities`` + ``write_density``, model call included);
* ``esp``: the potential on the ``--esp-spacing`` box (``potential_on_grid``) and its cube
  (``write_potential_cube``), model call excluded (electra-density predicts once);
* ``calculator``: ``potential_on_grid`` on the calculator's default grid (0.1 A box), the
  work of ``ElectraCalculator.get_electrostatic_potential()``;
* ``accuracy``: the potential on the esp grid against the analytic per-Gaussian sum
  (``electrostatic_potential``) at up to ``--points`` grid points on the van der Waals
  shells (1.4 to 2.0 times ``ase.data.vdw_radii`` from the nearest atom), RMSE and max in
  kcal/mol per unit charge.

Seconds are wall-clock and CPU (``time.process_time``, all threads of the process) per
molecule, mean over the molecules. ``--threads`` sets torch's and numba's threads.

Periodic (promolecule, which covers Na, Cl and Al): the potential of cubic rocksalt NaCl
(a = 5.64 A) on a 0.25 A grid against a brute-force Ewald sum written here (real-space
images and plane waves, its own splitting width; max relative difference at 20 grid
points), and the planar average of fcc111('Al', (2, 2, 4), vacuum=7.5) with pbc (T, T, F)
on a 0.2 A grid: its peak-to-peak over the planes more than 5 A from every atomic plane
(the 1 meV target) and its vacuum levels.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from ase.data import vdw_radii
from ase.io import read
from ase.units import kcal, mol
from scipy.special import erf

from ase_electra.grid import Grid
from ase_electra.io import write_density
from ase_electra.models import load_model
from ase_electra.predict import grid_for, predict_densities
from ase_electra.properties import electrostatic_potential, potential_on_grid, write_potential_cube

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "data" / "qm9_005128.xyz"
KCAL_PER_VOLT = mol / kcal  # kcal/mol per eV


def molecules(data: Path, limit: int) -> list:
    """The first ``limit`` validation molecules of ``data``, or the example molecule."""
    if not data.is_dir():
        print(f"{data}: missing; using {EXAMPLE.name}")
        return [read(EXAMPLE)]
    from ase_electra.reference import list_records, load_record

    return [load_record(path).atoms for path in list_records(data, split="validation")[:limit]]


def timed(fn):
    """(result, wall seconds, CPU seconds) of ``fn()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def shell_points(atoms, grid: Grid, n: int, rng: np.random.Generator) -> np.ndarray:
    """Flat indices of up to ``n`` grid points 1.4 to 2.0 van der Waals radii from the nearest atom."""
    points = grid.points()
    ratio = np.full(len(points), np.inf)
    for position, radius in zip(atoms.positions, vdw_radii[atoms.numbers]):
        ratio = np.minimum(ratio, np.linalg.norm(points - position, axis=1) / radius)
    shell = np.nonzero((ratio >= 1.4) & (ratio <= 2.0))[0]
    return rng.choice(shell, min(n, len(shell)), replace=False)


def ewald_sum(weights, centres, sigmas, cell, points, eta=0.6, images=5, modes=12):
    """Potential (e/Angstrom) of isotropic Gaussian charges in a neutral periodic cell, mean zero, by Ewald sums."""
    volume = abs(np.linalg.det(cell))
    out = np.zeros(len(points))
    wide = np.sqrt(sigmas**2 + eta**2)
    r = range(-images, images + 1)
    shifts = np.array([[i, j, k] for i in r for j in r for k in r]) @ cell
    for q, mu, s, w in zip(weights, centres, sigmas, wide):
        d = np.linalg.norm(points[:, None, :] - mu - shifts[None], axis=-1)
        out += q * ((erf(d / (math.sqrt(2) * s)) - erf(d / (math.sqrt(2) * w))) / d).sum(1)
    m = range(-modes, modes + 1)
    g = np.array([[i, j, k] for i in m for j in m for k in m if (i, j, k) != (0, 0, 0)]) @ (2 * np.pi * np.linalg.inv(cell).T)
    g2 = (g * g).sum(1)
    for q, mu, w in zip(weights, centres, wide):
        out += 4 * np.pi / volume * q * (np.exp(-g2 * w * w / 2) / g2 * np.cos((points - mu) @ g.T)).sum(1)
    return out


def periodic_targets() -> None:
    """The crystal and slab targets (needs the Ewald-split code)."""
    from ase.build import bulk, fcc111

    from ase_electra.properties import COULOMB, planar_average, vacuum_levels
    from ase_electra.properties.electrostatics import NUCLEAR_SIGMA
    from ase_electra.properties.ewald import charge_distribution

    model = load_model("promolecule")
    crystal = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    with torch.no_grad():
        mixture = model.predict([crystal]).to(dtype=torch.float64)
    grid = Grid.for_cell(crystal.cell.array, 0.25)
    values, wall, cpu = timed(lambda: potential_on_grid(mixture, crystal.numbers, crystal.positions, grid))
    pick = np.random.default_rng(1).choice(grid.n_points, 20, replace=False)
    charges = charge_distribution(mixture, crystal.numbers, crystal.positions, NUCLEAR_SIGMA)
    reference = COULOMB * ewald_sum(charges.weights.numpy(), charges.centres.numpy(), charges.scale_tril[:, 0, 0].numpy(),
                                    crystal.cell.array, grid.points_at(pick))
    error = np.max(np.abs(values.reshape(-1)[pick] - reference) / np.abs(reference))
    print(f"cubic NaCl, grid {grid.shape}: {wall:.2f} s ({cpu:.2f} s CPU); max relative difference from the Ewald "
          f"sum {error:.1e} at 20 points (target 1e-4)")

    slab = fcc111("Al", (2, 2, 4), vacuum=7.5)
    with torch.no_grad():
        mixture = model.predict([slab]).to(dtype=torch.float64)
    grid = Grid.for_cell(slab.cell.array, 0.2, pbc=(True, True, False))
    values, wall, cpu = timed(lambda: potential_on_grid(mixture, slab.numbers, slab.positions, grid))
    z, average = planar_average(values, grid, 2)
    far = np.abs(z[:, None] - slab.positions[:, 2]).min(1) > 5.0
    below, above = far & (z < slab.positions[:, 2].min()), far & (z > slab.positions[:, 2].max())
    levels = ", ".join(f"{v.side} {v.energy:+.6f} eV (flat to {v.flatness:.1e})" for v in vacuum_levels(
        z, average, slab.positions[:, 2]))
    print(f"Al(111) 2x2x4 slab, vacuum 7.5 A, grid {grid.shape}: {wall:.2f} s ({cpu:.2f} s CPU); planar average "
          f"peak-to-peak beyond 5 A of the atomic planes {1e3 * np.ptp(average[below]):.3f} meV below, "
          f"{1e3 * np.ptp(average[above]):.3f} meV above (target 1 meV); vacuum levels {levels}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets" / "qm9-pbe-def2svp")
    parser.add_argument("--limit", type=int, default=10, help="validation molecules")
    parser.add_argument("--threads", type=int, default=1, help="torch and numba threads")
    parser.add_argument("--esp-spacing", type=float, default=0.2, help="electra-density's --esp-spacing, Angstrom")
    parser.add_argument("--points", type=int, default=2000, help="van der Waals shell points for the accuracy")
    parser.add_argument("--stages", nargs="+", default=["density", "esp", "calculator", "accuracy"],
                        choices=["density", "esp", "calculator", "accuracy"])
    parser.add_argument("--no-periodic", action="store_true", help="skip the crystal and slab targets")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    import numba

    numba.set_num_threads(args.threads)
    model = load_model(args.model)
    frames = molecules(args.data, args.limit)
    rng = np.random.default_rng(0)
    out = Path(tempfile.mkdtemp(prefix="esp_speed-"))
    rows: dict[str, list[tuple[float, float]]] = {}
    errors: list[tuple[float, float]] = []
    with torch.no_grad():
        predict_densities(model, frames[:1], [grid_for(frames[0], 0.2, 4.0)])  # warm-up: numba compilation
        potential_on_grid(model.predict(frames[:1]).to(dtype=torch.float64), frames[0].numbers, frames[0].positions,
                          grid_for(frames[0], 0.5, 4.0))
        for i, atoms in enumerate(frames):
            line = [f"{atoms.get_chemical_formula():10s}"]
            if "density" in args.stages:
                def density():
                    grid = grid_for(atoms, 0.1, 4.0)
                    write_density(out / "frame.cube", predict_densities(model, [atoms], [grid])[0], format="cube")
                _, wall, cpu = timed(density)
                rows.setdefault("density cube (0.1 A, model included)", []).append((wall, cpu))
                line.append(f"density cube {wall:.2f} s")
            mixture = model.predict([atoms]).to(dtype=torch.float64)
            grid = grid_for(atoms, args.esp_spacing, 4.0)
            values = None
            if "esp" in args.stages:
                def esp():
                    volts = potential_on_grid(mixture, atoms.numbers, atoms.positions, grid)
                    write_potential_cube(out / "frame_esp.cube", atoms, grid, volts)
                    return volts
                values, wall, cpu = timed(esp)
                rows.setdefault(f"esp cube ({args.esp_spacing} A)", []).append((wall, cpu))
                line.append(f"esp {wall:.2f} s")
            if "calculator" in args.stages:
                box = Grid.for_atoms(atoms, 0.1, 4.0, use_cell=True)
                _, wall, cpu = timed(lambda: potential_on_grid(mixture, atoms.numbers, atoms.positions, box))
                rows.setdefault("calculator potential (0.1 A)", []).append((wall, cpu))
                line.append(f"calculator {wall:.2f} s")
            if "accuracy" in args.stages:
                if values is None:
                    values = potential_on_grid(mixture, atoms.numbers, atoms.positions, grid)
                pick = shell_points(atoms, grid, args.points, rng)
                exact = electrostatic_potential(mixture, atoms.numbers, atoms.positions, grid.points_at(pick))
                diff = (values.reshape(-1)[pick] - exact) * KCAL_PER_VOLT
                errors.append((float(np.sqrt(np.mean(diff**2))), float(np.abs(diff).max())))
                line.append(f"shell RMSE {errors[-1][0]:.1e} kcal/mol/e")
            print(" | ".join(line), flush=True)
    for path in out.iterdir():
        path.unlink()
    out.rmdir()

    print(f"\n{len(frames)} molecules, model {model.name} ({mixture.n_gaussians} Gaussians for the last), "
          f"{args.threads} thread(s); torch {torch.__version__}")
    print("| stage | wall s per molecule | CPU s per molecule |")
    print("| --- | --- | --- |")
    for name, values in rows.items():
        print(f"| {name} | {statistics.mean(w for w, _ in values):.3f} | {statistics.mean(c for _, c in values):.3f} |")
    if errors:
        print(f"potential on the esp grid against the analytic sum on the van der Waals shells: RMSE "
              f"{statistics.mean(e for e, _ in errors):.1e} kcal/mol/e (mean over molecules; target 1e-4), "
              f"max {max(m for _, m in errors):.1e}")
    if not args.no_periodic:
        periodic_targets()


if __name__ == "__main__":
    main()
