"""Reciprocal-space density on periodic grids: how exact it is, and where it beats the real-space path.

    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python benchmarks/reciprocal_density.py [--calibrate] [--quick]

One thread throughout (``torch.set_num_threads(1)``). Seconds are the best of ``--repeats``
runs, so a machine shared with other work (training, labelling) inflates them less; they
still move by tens of percent between runs there.

1. Width criterion: one Gaussian at 20 random centres in a 2 Angstrom periodic cube of
   20^3 points, isotropic, 1 to 3 voxels wide. The largest error of its reciprocal-space
   values against the exact periodic sum (brute force over images), relative to its
   peak, with its coefficient ellipsoid clipped to the Nyquist box where it does not fit
   (what point samples of a narrower Gaussian would alias into): the reason only
   Gaussians at least 2 voxels wide (``fits_grid``) go to reciprocal space.
2. Crossover: K isotropic Gaussians of one width at random centres in cubic cells,
   0.1 Angstrom spacing: seconds with ``space="real"`` (numba) and ``space="reciprocal"``
   (numba coefficients + one inverse FFT), and what ``space="auto"`` chose.
3. Structures: Si, NaCl, Al supercells with the promolecule and ethanol in periodic
   boxes with the shipped default model, on their cell grids (0.1 Angstrom): seconds
   real / auto, how many Gaussians auto summed in reciprocal space, and the largest
   difference between the paths relative to the grid's largest value (a core's peak)
   and to the largest value of the reciprocal part alone: at the defaults (n_sigma = 5,
   tolerance 1e-9: the real path's cut-off) and with both paths cut off at n_sigma = 8,
   tolerance 0 (what is left is the reciprocal path's own error); the differences in
   float64 (the default model predicts float32, whose rounding, 6e-8 of the largest
   value, would hide them).

``--calibrate`` fits the per-line, per-point, per-mode, per-call and FFT costs of ``_COSTS``
in ``ase_electra/evaluate/reciprocal.py`` by least squares over timed runs, for numba and torch.
"""

from __future__ import annotations

import argparse
import itertools
import math
import time

import numpy as np
import torch
from ase.build import bulk, molecule

from ase_electra import GaussianMixture, Grid
from ase_electra.evaluate import evaluate
from ase_electra.evaluate import reciprocal as rs
from ase_electra.evaluate._boxes import index_boxes
from ase_electra.models import load_model


def best_of(f, repeats: int) -> float:
    """Shortest wall time of ``repeats`` calls of ``f``, seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return min(times)


def isotropic(k: int, length: float, sigma: float, seed: int = 0) -> GaussianMixture:
    """K unit Gaussians of width ``sigma`` (Angstrom) at random centres in a cube of ``length``."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(k, 3, generator=g, dtype=torch.float64) * length
    return GaussianMixture(torch.ones(k, dtype=torch.float64), centres,
                           sigma * torch.eye(3, dtype=torch.float64).repeat(k, 1, 1))  # fmt: skip


# ---------------------------------------------------------------------- 1. width
def exact_periodic(m: GaussianMixture, grid: Grid) -> np.ndarray:
    """Brute-force periodic sum on the grid (images within 8 standard deviations)."""
    points = grid.points()
    w, mu, cov = (t.numpy() for t in (m.weights, m.centres, m.covariances))
    inv, det = np.linalg.inv(cov), np.linalg.det(cov)
    out = np.zeros(len(points))
    reach = int(math.ceil(8 * math.sqrt(cov[:, 0, 0].max()) / grid.cell[0, 0])) + 1
    for n in itertools.product(range(-reach, reach + 1), repeat=3):
        d = points[:, None, :] - (mu + np.array(n) @ grid.cell)[None]
        q = np.einsum("pki,kij,pkj->pk", d, inv, d)
        out += (w * np.exp(-0.5 * q) / np.sqrt((2 * np.pi) ** 3 * det)).sum(1)
    return out.reshape(grid.shape)


def clipped_values(m: GaussianMixture, grid: Grid) -> np.ndarray:
    """Reciprocal values with each coefficient ellipsoid clipped to the grid's Nyquist box."""
    boxes = rs.mode_boxes(m, grid)
    nyquist = torch.tensor([(n - 1) // 2 for n in grid.shape])
    clipped = rs.ModeBoxes(boxes.metric, boxes.frac, boxes.pref, torch.minimum(boxes.extents, nyquist), boxes.radius)
    top = clipped.extents.amax(0).tolist()
    box = rs._torch_coefficients(clipped, top, 1 << 21).reshape(2 * top[0] + 1, 2 * top[1] + 1, top[2] + 1)
    return rs._inverse(box, grid.shape).numpy()


def width_table() -> None:
    print("1. error of reciprocal values vs the exact periodic sum, relative to the peak (20 random centres, "
          "2 A cube, 20^3 points)")
    grid = Grid(np.eye(3) * 2.0, (20, 20, 20), pbc=(True, True, True))
    rng = np.random.default_rng(0)
    print("  sigma/voxel  fits_grid  max error")
    for voxels in (1.0, 1.25, 1.5, 1.75, 2.0, 2.02, 2.5, 3.0):
        sigma = voxels * 0.1
        worst = 0.0
        for centre in rng.random((20, 3)) * 2.0:
            m = GaussianMixture(torch.ones(1, dtype=torch.float64), torch.tensor(centre)[None],
                                sigma * torch.eye(3, dtype=torch.float64)[None])  # fmt: skip
            exact = exact_periodic(m, grid)
            peak = 1.0 / (2 * np.pi * sigma**2) ** 1.5
            worst = max(worst, float(np.abs(clipped_values(m, grid) - exact).max()) / peak)
        fits = bool(rs.fits_grid(m, grid).all())
        print(f"  {voxels:11.2f}  {str(fits):9}  {worst:.1e}", flush=True)


# ---------------------------------------------------------------------- 2. crossover
def crossover_table(repeats: int, quick: bool) -> None:
    print("2. K isotropic Gaussians of width sigma in a cubic cell of side L, 0.1 A spacing, numba, 1 thread: "
          "seconds real | reciprocal (auto's choice)")
    lengths = (5.0, 10.0) if quick else (5.0, 10.0, 20.0)
    sigmas = (0.3, 0.5, 0.8, 1.2)
    for k in (8, 128):
        print(f"  K = {k}")
        print("  L (A)  points     " + "".join(f"sigma {s:<4} A                " for s in sigmas))
        for length in lengths:
            grid = Grid.for_cell(np.eye(3) * length, 0.1)
            cells = []
            for sigma in sigmas:
                m = isotropic(k, length, sigma)
                real = best_of(lambda: evaluate(m, grid, space="real"), repeats)
                recip = best_of(lambda: evaluate(m, grid, space="reciprocal"), repeats)
                chose = int(rs.reciprocal_share(m, grid, "numba", "auto", 5.0, 1e-9, 1 << 31).sum())
                cells.append(f"{real:7.3f} | {recip:7.3f} ({chose:3}/{k})  ")
            print(f"  {length:5.0f}  {grid.n_points:9,}  " + "".join(cells), flush=True)


# ---------------------------------------------------------------------- 3. structures
def structures(quick: bool) -> list[tuple[str, object, str]]:
    """(label, Atoms, model name) of the table's structures."""
    crystals = {"Si": bulk("Si", "diamond", 5.43, cubic=True), "NaCl": bulk("NaCl", "rocksalt", 5.64, cubic=True),
                "Al": bulk("Al", "fcc", 4.05, cubic=True)}
    out = [("Al prim", bulk("Al", "fcc", 4.05), "promolecule")]
    for n in ((1, 2) if quick else (1, 2, 3)):
        out += [(f"{name} {n}x{n}x{n}", atoms.repeat(n), "promolecule") for name, atoms in crystals.items()]
    for box in ((10.0,) if quick else (8.0, 10.0, 14.0)):
        ethanol = molecule("CH3CH2OH")
        ethanol.cell = np.eye(3) * box
        ethanol.center()
        ethanol.pbc = True
        out.append((f"ethanol {box:.0f} A box", ethanol, "default"))
    return out


def structure_table(repeats: int, quick: bool) -> None:
    print("3. structures on their cell grids (0.1 A), numba, 1 thread: seconds real | auto, Gaussians auto sums in "
          "reciprocal space, max |auto - real| relative to the grid's largest value and to the largest value of the "
          "reciprocal part, at the default cut-off and with both cut off at n_sigma = 8, tolerance 0")
    print("  structure           V (A^3)  points         K  recip  real (s)  auto (s)  speed-up  "
          "diff/max  diff/max recip  (n_sigma 8)")
    models = {}
    for label, atoms, name in structures(quick):
        model = models.setdefault(name, load_model(name))
        with torch.no_grad():
            m = model.predict([atoms]).structure(0)
        grid = Grid.for_cell(atoms.cell.array, 0.1)
        t_real = best_of(lambda: evaluate(m, grid, space="real"), repeats)
        t_auto = best_of(lambda: evaluate(m, grid, space="auto"), repeats)
        share = rs.reciprocal_share(m, grid, "numba", "auto", 5.0, 1e-9, 1 << 31)
        line = (f"  {label:18} {atoms.cell.volume:8.0f}  {grid.n_points:10,}  {m.n_gaussians:5}  {int(share.sum()):5}  "
                f"{t_real:8.3f}  {t_auto:8.3f}  {t_real / t_auto:7.2f}x")
        if share.any():
            m = m.to(dtype=torch.float64)  # the default model's float32 output would show its own rounding (6e-8)
            wide = GaussianMixture(m.weights[share], m.centres[share], m.scale_tril[share])
            top = float(rs.evaluate_reciprocal(wide, grid).max())
            diff = evaluate(m, grid, space="auto") - evaluate(m, grid, space="real")
            far = {"n_sigma": 8.0, "tolerance": 0.0}
            diff8 = evaluate(m, grid, space="auto", **far) - evaluate(m, grid, space="real", **far)
            largest = float(evaluate(m, grid, space="real").max())
            line += (f"  {float(diff.abs().max()) / largest:8.1e}  {float(diff.abs().max()) / top:14.1e}  "
                     f"{float(diff8.abs().max()) / top:11.1e}")
        print(line, flush=True)


# ---------------------------------------------------------------------- calibration
def elongated(k: int, length: float, sigma_xy: float, sigma_z: float, seed: int = 0) -> GaussianMixture:
    """K unit Gaussians of widths (sigma_xy, sigma_xy, sigma_z) Angstrom along randomly turned axes,
    at random centres in a cube."""
    m = isotropic(k, length, 1.0, seed)
    turn, _ = torch.linalg.qr(torch.randn(k, 3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    variances = torch.tensor([sigma_xy, sigma_xy, sigma_z], dtype=torch.float64) ** 2
    covariances = turn @ torch.diag(variances) @ turn.transpose(-1, -2)
    return GaussianMixture.from_covariances(m.weights, m.centres, 0.5 * (covariances + covariances.transpose(-1, -2)))


def calibrate(repeats: int) -> None:
    """Non-negative least-squares fits of the costs (seconds), relative residuals weighing small and
    large runs alike: real = line * lines + point * points + fill * N; coefficients = mode_line *
    lines + mode * modes (Gaussians stretched and squeezed along one axis separate lines from
    points); the rest of a reciprocal evaluation (one Gaussian 0.4 or 1.5 Angstrom wide: pruned
    inverse FFT, sum with the real part, bookkeeping) = call + fft * N log2 N (1/2 + 2 (T3 + 1) / N3)
    on cells of 2 to 20 Angstrom."""
    from scipy.optimize import nnls

    from ase_electra.evaluate import _numba
    from ase_electra.evaluate._reciprocal_numba import add_coefficients

    rows: dict[tuple[str, str], list] = {}
    for length, sigma_xy, sigma_z in itertools.product((6.0, 10.0), (0.3, 0.6), (0.25, 0.5, 1.0)):
        grid = Grid.for_cell(np.eye(3) * length, 0.1)
        m = elongated(32, length, sigma_xy, sigma_z)
        dims = index_boxes(m, grid, 5.0, 1e-9).dims.double()
        real_terms = [float((dims[:, 0] * dims[:, 1]).sum()), float((math.pi / 6 * dims.prod(-1)).sum()), grid.n_points]
        boxes = rs.mode_boxes(m, grid)
        e = boxes.extents.double()
        lines = (2 * e[:, 0] + 1) * (2 * e[:, 1] + 1)
        recip_terms = [float(lines.sum()), float((math.pi / 6 * lines * (e[:, 2] + 1)).sum())]
        arrays = [t.numpy() for t in (boxes.metric, boxes.frac, boxes.pref, boxes.extents)]
        top = boxes.extents.amax(0).tolist()
        box = np.zeros((2 * top[0] + 1, 2 * top[1] + 1, top[2] + 1), dtype=np.complex128)
        timed = {
            ("real", "numba"): (real_terms, lambda: _numba.evaluate_grid(m, grid, 5.0, 1e-9)),
            ("real", "torch"): (real_terms, lambda: evaluate(m, grid, backend="torch", space="real")),
            ("modes", "numba"): (recip_terms, lambda: add_coefficients(*arrays, rs.RADIUS**2, box)),
            ("modes", "torch"): (recip_terms, lambda: rs._torch_coefficients(boxes, top, 1 << 21)),
        }
        for key, (terms, f) in timed.items():
            f()
            rows.setdefault(key, []).append((terms, best_of(f, repeats)))
        print(f"  timed L={length} sigma_xy={sigma_xy} sigma_z={sigma_z}", flush=True)
    for length, sigma in itertools.product((2.0, 4.0, 6.0, 8.0, 10.0, 12.8, 15.0, 18.0, 20.0), (0.4, 1.5)):
        grid = Grid.for_cell(np.eye(3) * length, 0.1)
        m = isotropic(1, length, sigma)
        evaluate(m, grid, space="reciprocal")
        seconds = best_of(lambda: evaluate(m, grid, space="reciprocal"), repeats)
        share = 0.5 + 2.0 * (int(rs.mode_boxes(m, grid).extents[0, 2]) + 1) / grid.shape[2]
        rows.setdefault(("inverse", "both"), []).append(([1.0, grid.n_points * math.log2(grid.n_points) * share], seconds))
        print(f"  timed one Gaussian, L={length} sigma={sigma}", flush=True)
    for key, data in rows.items():
        a, t = np.array([x for x, _ in data]), np.array([s for _, s in data])
        fit, _ = nnls(a / t[:, None], np.ones(len(t)))
        worst = np.abs(a @ fit / t - 1).max()
        print(f"  {key}: " + ", ".join(f"{c:.3g}" for c in fit) + f" s  (worst relative misfit {worst:.0%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibrate", action="store_true", help="fit the cost model's constants and stop")
    parser.add_argument("--quick", action="store_true", help="smaller cells and supercells only")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per figure (the best is kept)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.calibrate:
        calibrate(args.repeats)
        return
    width_table()
    crossover_table(args.repeats, args.quick)
    structure_table(args.repeats, args.quick)


if __name__ == "__main__":
    main()
