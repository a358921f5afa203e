"""Accuracy floor of candidate Gaussian ansatzes: direct fits to exact densities, no network.

    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=2 nice -n 10 python benchmarks/ansatz_floor.py
    python benchmarks/ansatz_floor.py --molecules 1 --steps 200 --candidates head signed16
    python benchmarks/ansatz_floor.py --data crystals/records/val --split any --pattern '*_v100' \
        --molecules 20 --steps 1500 --candidates head float32 --width-floor 0.07   # crystals

For each candidate ansatz and each validation molecule (QM9 indices ending in 8, the first
``--molecules`` by name; indices ending in 9 are never read), the free parameters of a
Gaussian mixture are fitted directly to the molecule's exact PySCF density, starting from
the promolecule. The floor of the ansatz is the full-grid NMAE (0.1 A grid, 4 A margin,
as :mod:`benchmarks.validation_nmae` scores models) of the fitted mixture: no network of
that ansatz can score below it on that molecule (up to how well the fit converged: an
unconverged fit overestimates the floor). Beside it the NMAE beyond 0.5 A of every nucleus
(:func:`ase_electra.scoring.nmae_beyond`) is printed, and both scores of the package's
promolecule model for comparison.

Crystals and slabs: ``--split any`` fits the records of any name in ``--data`` (``--pattern``
a glob on their names), periodic records (:class:`ase_electra.reference.PeriodicRecord`,
GPAW all-electron density samples) included. These are fitted and scored on their own cell
grid with their pbc, as the dataset code and ``validation_nmae.py`` use them: the probes are
drawn from the stored samples, the mixture is evaluated with the periodic images of the cell
(``evaluate_points(..., cell=, pbc=)`` in the fit, ``evaluate`` on the periodic grid for the
scores), and the nearest periodic image counts for "beyond 0.5 A". The samples exist at the
grid points only, so there is no shifted-grid score, ``--objective continuous`` is refused,
and there is no dipole. The crystal head (``weights/crystal``: 16 floating Gaussians per
heavy atom, 6 per H, cores as :func:`count_core`) is candidate ``head``, with its width
floor ``--width-floor 0.07``; ``float32`` is the wider 32 / 8. The floating width floor here
bounds the Cholesky diagonal, the head's the covariance (Sigma >= floor^2 Id), and the core
widths are free (the head's stay within a factor [0.5, 1.5]): the free ansatz is a little
looser, so its floor is, if anything, optimistic.

Ansatz, per atom of element Z (table ``ase_electra/models/promolecule.json``):

- core: the ``count_core(Z)`` narrowest promolecule components, on the nucleus, isotropic,
  free width, no floor (as in today's head, ``ase_electra/nn/heads.py``);
- floating: ``n`` Gaussians, free centre and full covariance (Cholesky factor, diagonal
  >= ``--width-floor``), initialised from the valence components by ``assign_slots``,
  centres at the atom plus seeded random offsets;
- ``spherical16``: the head's counts with every floating Gaussian kept on its atom and
  isotropic (free width and weight only): the floor of a learned superposition of spherical
  atoms, which is what a network that never moves or shapes its Gaussians can reach;
- weights "positive": w = N_e softmax(logits) over core and floating Gaussians of the
  molecule (exact electron count, w > 0), as in today's head;
- weights "signed": the positive part above plus ``d`` deformation Gaussians per atom
  (floating, same initialisation) whose weights d_k = s_k - mean_atom(s) sum to zero per
  atom (s starts at 0): the electron count stays exact, the sum may dip below zero and is
  clamped there by every evaluator; the electrons the clamp adds are printed.

Fit: Adam on fresh importance-sampled probes each step (drawn as ``sample_probes`` does:
1/4 uniform over the grid, 3/4 in proportion to rho_ref; the loss is the unbiased probe estimate of
the full-grid NMAE), learning rate with a short warm-up and cosine decay to 1 %, the probe
count doubled for the last quarter of the steps. ``--objective continuous`` draws the probes
from a pool of points spread uniformly over the voxels of the drawn grid points, with the
exact density there (``density_at``): it fits the continuous L1 error and so cannot tune the
mixture to where the scoring grid's points happen to lie (near a nucleus one grid point can
hold a large share of the NMAE). Every fit is scored on the scoring grid and on the same grid
shifted by half a spacing along x, y and z; a large difference means the fit used the grid.
The grid time is ``evaluate(mixture, grid)`` (numba) on the fitted mixture of the first
molecule, best of 3, on one and on two threads (launch with NUMBA_NUM_THREADS >= 2 for the
latter; fitting runs on one thread).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from ase.data import chemical_symbols

from ase_electra.errors import InvalidInputError
from ase_electra.evaluate import evaluate, evaluate_points
from ase_electra.gaussians import GaussianMixture
from ase_electra.grid import Grid
from ase_electra.models.promolecule import PromoleculeModel, atomic_gaussians
from ase_electra.nn.heads import assign_slots, count_core, split_reference
from ase_electra.properties.multipoles import DEBYE
from ase_electra.reference import PeriodicRecord, ReferenceRecord, list_records, load_record, qm9_index, split_of
from ase_electra.scoring import FAR, distance_bands, nmae_beyond, nmae_by_distance

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets" / "qm9-pbe-def2svp"


@dataclass(frozen=True)
class Candidate:
    """Floating (positive) and deformation (signed, zero-sum per atom) Gaussians per atom;
    ``spherical``: the floating Gaussians stay on their atom and isotropic (a learned free atom)."""

    name: str
    floating_heavy: int
    floating_h: int
    deform_heavy: int = 0
    deform_h: int = 0
    spherical: bool = False

    @property
    def weight_model(self) -> str:
        return "signed (zero-sum deformation)" if self.deform_heavy or self.deform_h else "positive (softmax)"


CANDIDATES = {
    c.name: c
    for c in (
        Candidate("head", 16, 6),
        Candidate("spherical16", 16, 6, spherical=True),
        Candidate("float32", 32, 8),
        Candidate("float64", 64, 12),
        Candidate("float128", 128, 16),
        Candidate("signed16", 16, 6, 16, 6),
        Candidate("signed32", 32, 8, 32, 8),
        Candidate("signed64", 64, 12, 64, 12),
    )
}
DEFAULT_CANDIDATES = ("head", "float32", "float64", "float128", "signed16", "signed32", "signed64")


# ---------------------------------------------------------------------- parametrisation
def _inverse_softplus(y: torch.Tensor) -> torch.Tensor:
    return y + torch.log(-torch.expm1(-y))


class FreeMixture(torch.nn.Module):
    """A candidate ansatz for one molecule, every parameter free (no network).

    Legend: N atoms, Kc core, Kf floating, Kd deformation Gaussians.
    """

    def __init__(
        self, numbers: np.ndarray, positions: np.ndarray, cand: Candidate, width_floor: float, seed: int
    ) -> None:
        super().__init__()
        table = atomic_gaussians()
        rng = np.random.default_rng(seed)
        self.width_floor = width_floor
        self.n_electrons = float(np.sum(numbers))
        core_pos, core_w, core_s = [], [], []
        flt_pos, flt_w, flt_s = [], [], []
        def_pos, def_s, def_atom = [], [], []
        for atom, (z, r) in enumerate(zip(numbers.tolist(), positions)):
            ref = table[z]
            nc = count_core(ref, z)
            wc, sc, wv, sv = split_reference(ref, nc)
            heavy = z > 1
            nf = cand.floating_heavy if heavy else cand.floating_h
            nd = cand.deform_heavy if heavy else cand.deform_h
            core_pos += [r] * nc
            core_w += list(wc)
            core_s += list(sc)
            w, s = assign_slots(wv, sv, nf)
            flt_pos += list(r + (0.0 if cand.spherical else 0.25) * s[:, None] * rng.standard_normal((nf, 3)))
            flt_w += list(w)
            flt_s += list(s)
            if nd:
                _, s = assign_slots(wv, sv, nd)
                def_pos += list(r + 0.25 * s[:, None] * rng.standard_normal((nd, 3)))
                def_s += list(s)
                def_atom += [atom] * nd

        def t(values, shape=None) -> torch.Tensor:
            a = torch.as_tensor(np.asarray(values, dtype=np.float64))
            return a.reshape(shape) if shape is not None else a

        self.register_buffer("core_centres", t(core_pos, (-1, 3)))
        self.core_log_sigma = torch.nn.Parameter(torch.log(t(core_s)))
        self.logits = torch.nn.Parameter(torch.log(t(core_w + flt_w)))
        self.flt_centres = torch.nn.Parameter(t(flt_pos, (-1, 3)), requires_grad=not cand.spherical)
        self.flt_diag, self.flt_off = self._tril_params(t(flt_s), isotropic=cand.spherical)
        self.n_deform = len(def_s)
        if self.n_deform:
            self.def_centres = torch.nn.Parameter(t(def_pos, (-1, 3)))
            self.def_diag, self.def_off = self._tril_params(t(def_s))
            self.def_s = torch.nn.Parameter(torch.zeros(self.n_deform, dtype=torch.float64))
            atom = torch.as_tensor(def_atom)
            self.register_buffer("def_atom", atom)
            self.register_buffer("def_count", torch.bincount(atom, minlength=len(numbers)).to(torch.float64))

    def _tril_params(self, sigma: torch.Tensor, isotropic: bool = False
                     ) -> tuple[torch.nn.Parameter, torch.nn.Parameter]:
        """Cholesky diagonal (K, 3), or (K, 1) shared by the axes, and off-diagonal (K, 3) parameters;
        isotropic ones keep the off-diagonal at zero."""
        sigma = sigma.clamp(min=self.width_floor * 1.05)
        diag = _inverse_softplus(sigma - self.width_floor)[:, None].repeat(1, 1 if isotropic else 3)
        off = torch.nn.Parameter(torch.zeros(len(sigma), 3, dtype=torch.float64), requires_grad=not isotropic)
        return torch.nn.Parameter(diag), off

    def _tril(self, diag: torch.Tensor, off: torch.Tensor) -> torch.Tensor:
        k = diag.shape[0]
        L = torch.zeros(k, 3, 3, dtype=diag.dtype)
        d = (self.width_floor + torch.nn.functional.softplus(diag)).expand(k, 3)  # (K, 3) >= floor
        L = L + torch.diag_embed(d)
        rows, cols = torch.tril_indices(3, 3, offset=-1)
        L = L.index_put((torch.arange(k)[:, None], rows[None], cols[None]), off, accumulate=True)
        return L

    def mixture(self) -> GaussianMixture:
        kc = self.core_centres.shape[0]
        weights = self.n_electrons * torch.softmax(self.logits, 0)  # (Kc + Kf,)
        core_L = torch.exp(self.core_log_sigma)[:, None, None] * torch.eye(3, dtype=torch.float64)
        parts_w = [weights[:kc], weights[kc:]]
        parts_mu = [self.core_centres, self.flt_centres]
        parts_L = [core_L, self._tril(self.flt_diag, self.flt_off)]
        if self.n_deform:
            mean = torch.zeros_like(self.def_count).index_add(0, self.def_atom, self.def_s)
            mean = mean / self.def_count.clamp(min=1)
            parts_w.append(self.def_s - mean[self.def_atom])
            parts_mu.append(self.def_centres)
            parts_L.append(self._tril(self.def_diag, self.def_off))
        return GaussianMixture(torch.cat(parts_w), torch.cat(parts_mu), torch.cat(parts_L))

    def param_groups(self, lr: float) -> list[dict]:
        """Adam groups: lengths (A), log-widths and logits, signed weights (electrons)."""
        groups = [
            {"params": [self.flt_centres], "lr": lr},
            {"params": [self.flt_diag, self.flt_off, self.core_log_sigma], "lr": lr},
            {"params": [self.logits], "lr": 2 * lr},
        ]
        if self.n_deform:
            groups += [
                {"params": [self.def_centres], "lr": lr},
                {"params": [self.def_diag, self.def_off], "lr": lr},
                {"params": [self.def_s], "lr": 2 * lr},
            ]
        for g in groups:
            g["base_lr"] = g["lr"]
        return groups


# ---------------------------------------------------------------------- fit and score
def grid_nmae(mixture: GaussianMixture, grid: Grid, ref: np.ndarray, total: float) -> float:
    with torch.no_grad():
        pred = evaluate(mixture, grid).numpy()
    return float(np.abs(pred - ref).sum() / total)


def clamp_electrons(mixture: GaussianMixture, grid: Grid) -> tuple[float, float]:
    """(electrons the clamp adds, grid integral of the clamped density), both on ``grid``.

    The raw sum is evaluated as (positive Gaussians) - (|negative| Gaussians), neither clamped.
    """
    with torch.no_grad():
        clamped = evaluate(mixture, grid).sum().item()
        neg = mixture.weights < 0
        if not neg.any():
            return 0.0, clamped * grid.voxel_volume

        def part(mask: torch.Tensor) -> float:
            sub = GaussianMixture(mixture.weights[mask].abs(), mixture.centres[mask], mixture.scale_tril[mask])
            return evaluate(sub, grid).sum().item()

        raw = part(~neg) - part(neg)
    return (clamped - raw) * grid.voxel_volume, clamped * grid.voxel_volume


class ProbeSampler:
    """:func:`ase_electra.datasets.sample_probes` with the cumulative |rho_ref| computed once.

    Draws n grid points with probability q_i = u / G + (1 - u) |rho_i| / sum |rho|; the
    estimate ``sum(weights * |pred - ref|) / total`` of the full-grid NMAE is unbiased.
    """

    def __init__(self, ref: np.ndarray, grid: Grid, uniform_fraction: float = 0.25) -> None:
        self.grid, self.u = grid, uniform_fraction
        self.flat = np.asarray(ref, dtype=np.float64).reshape(-1)  # (G,)
        self.magnitude = np.abs(self.flat)
        self.cumulative = np.cumsum(self.magnitude)
        self.total = float(self.cumulative[-1])
        self.pool = None

    def _indices(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        g = self.flat.shape[0]
        uniform = rng.random(n) < self.u
        idx = np.where(
            uniform,
            rng.integers(0, g, n),
            np.searchsorted(self.cumulative, rng.random(n) * self.total, side="right").clip(max=g - 1),
        )  # (n,)
        return idx, self.u / g + (1.0 - self.u) * self.magnitude[idx] / self.total

    def off_grid(self, exact, size: int, rng: np.random.Generator) -> None:
        """Draw from a pool of ``size`` points spread uniformly over their voxels instead, with the
        exact reference ``exact(points)`` there: the estimate is then of the continuous
        ``int |pred - ref| / int ref``, blind to where the grid's points lie."""
        idx, q = self._indices(size, rng)
        points = self.grid.points_at(idx) + (rng.random((size, 3)) - 0.5) @ self.grid.voxels
        self.pool = (points, np.asarray(exact(points), dtype=np.float64), q)

    def draw(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
        """(points (n, 3) A, reference (n,), weights (n,)) for ``n`` probes."""
        if self.pool is not None:
            points, values, q = self.pool
            pick = rng.integers(0, len(q), n)
            return points[pick], torch.as_tensor(values[pick]), torch.as_tensor(1.0 / (n * q[pick]))
        idx, q = self._indices(n, rng)
        return self.grid.points_at(idx), torch.as_tensor(self.flat[idx]), torch.as_tensor(1.0 / (n * q))


def fit(
    model: FreeMixture, grid: Grid, ref: np.ndarray, steps: int, probes: int, lr: float, seed: int,
    sampler: ProbeSampler | None = None,
) -> None:
    """Adam on probe estimates of the NMAE (on grid points unless ``sampler`` says otherwise).

    The mixture is evaluated with the periodic images of ``grid``'s cell along its periodic
    axes (none for a molecular grid), as :func:`evaluate` sums them on the scoring grid.
    """
    rng = np.random.default_rng(seed)
    sampler = ProbeSampler(ref, grid) if sampler is None else sampler
    opt = torch.optim.Adam(model.param_groups(lr), betas=(0.9, 0.99))
    warm = max(1, steps // 50)
    cell = torch.as_tensor(np.array(grid.cell))  # (3, 3), A; a copy: the grid's array is read-only
    for step in range(steps):
        frac = step / max(1, steps - 1)
        scale = min(1.0, (step + 1) / warm) * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * scale
        n = probes * (2 if step >= 0.75 * steps else 1)
        points, reference, weights = sampler.draw(n, rng)
        pred = evaluate_points(model.mixture(), points, cell=cell, pbc=grid.pbc)
        loss = (weights * (pred - reference).abs()).sum() / sampler.total
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def dipole_error(mixture: GaussianMixture, rec) -> float:
    """|p_fit - p_ref|, Debye: the fitted mixture's analytic dipole against the record's exact one."""
    nuclei = rec.numbers.astype(np.float64) @ rec.positions
    p_fit = nuclei - mixture.first_moments()[0].double().numpy()
    return float(np.linalg.norm(p_fit - rec.dipole_moment())) / DEBYE


def grid_seconds(mixture: GaussianMixture, grid: Grid, threads: int) -> float:
    import numba

    if threads > numba.config.NUMBA_NUM_THREADS:
        return math.nan
    numba.set_num_threads(threads)
    try:
        with torch.no_grad():
            evaluate(mixture, grid)
            best = math.inf
            for _ in range(3):
                t0 = time.perf_counter()
                evaluate(mixture, grid)
                best = min(best, time.perf_counter() - t0)
    finally:
        numba.set_num_threads(1)
    return best


def _warm_up() -> None:
    """Compile the numba kernels (forward and backward) before anything is timed: short fits of H2,
    in a box and in a periodic cell."""
    positions = np.array([[0.0, 0.0, 0.0], [0.74, 0.0, 0.0]])
    grids = (Grid.for_molecule(positions, spacing=0.2, margin=2.0), Grid.for_cell(3.0 * np.eye(3), spacing=0.2))
    for grid in grids:
        for cand in (CANDIDATES["head"], CANDIDATES["signed16"]):
            model = FreeMixture(np.array([1, 1]), positions, cand, 0.02, 0)
            with torch.no_grad():
                ref = evaluate(model.mixture(), grid).numpy() * 1.1
            fit(model, grid, ref, 4, 256, 0.02, 0)
            evaluate(model.mixture(), grid).sum().backward()


@dataclass(frozen=True, eq=False)
class Target:
    """One record to fit: its scoring grid, the reference there (e/Angstrom^3) and the probe sampler.

    Molecules are scored on a box grid, and also on the same grid shifted by half a spacing
    (``shifted``, ``ref_shifted``); a periodic record on its own cell grid only (its samples
    are known there only), with ``shifted`` None.
    """

    name: str
    record: ReferenceRecord | PeriodicRecord
    grid: Grid
    ref: np.ndarray
    sampler: ProbeSampler
    shifted: Grid | None
    ref_shifted: np.ndarray | None

    @property
    def total(self) -> float:
        """sum |rho_ref| over the scoring grid, e/Angstrom^3."""
        return self.sampler.total


def load_target(path: Path, spacing: float, margin: float, objective: str, pool: int, seed: int) -> Target:
    """The record at ``path`` on the grid :func:`ase_electra.datasets.find_samples` gives it.

    A molecular record: box grid (``spacing``, ``margin``, Angstrom) with its exact density. A
    periodic record (crystal or slab): its cell grid, pbc and stored density samples.

    Raises
    ------
    InvalidInputError
        If ``objective`` is 'continuous' for a periodic record: its density is known at its
        grid points only.
    """
    rec = load_record(path)
    if isinstance(rec, PeriodicRecord):
        if objective == "continuous":
            raise InvalidInputError(
                f"{path.stem}: --objective continuous needs the density between grid points, and a periodic "
                "record holds samples on its cell grid only (use --objective grid)"
            )
        grid, shifted = rec.grid, None
    else:
        grid = Grid.for_molecule(rec.positions, spacing=spacing, margin=margin)
        # the same grid shifted by half a spacing along each axis: a fit that exploits the
        # scoring grid's points (narrow Gaussians between them) scores worse here
        shifted = Grid(grid.cell, grid.shape, grid.origin + 0.5 * spacing, grid.pbc)
    ref = rec.density_on(grid)
    sampler = ProbeSampler(ref, grid)
    if objective == "continuous":
        sampler.off_grid(rec.density_at, pool, np.random.default_rng(seed))
    return Target(path.stem, rec, grid, ref, sampler, shifted, None if shifted is None else rec.density_on(shifted))


def score(mixture: GaussianMixture, target: Target) -> tuple[float, float, np.ndarray]:
    """(full-grid NMAE, NMAE beyond :data:`~ase_electra.scoring.FAR` A of every nucleus, shares by
    distance), fractions, as ``benchmarks/validation_nmae.py`` scores a model (nearest periodic
    image along periodic axes)."""
    with torch.no_grad():
        pred = evaluate(mixture, target.grid).numpy()
    positions = target.record.positions
    return (
        float(np.abs(pred - target.ref).sum() / target.total),
        nmae_beyond(pred, target.ref, target.grid, positions),
        nmae_by_distance(pred, target.ref, target.grid, positions),
    )


def promolecule_score(target: Target) -> tuple[float, float]:
    """(full-grid NMAE, NMAE beyond FAR) of the package's promolecule model: the fits' baseline."""
    atoms = target.record.atoms
    atoms.info["charge"] = target.record.charge
    with torch.no_grad():
        mixture = PromoleculeModel().predict([atoms])
    return score(mixture, target)[:2]


def select_records(folder: Path, split: str, pattern: str, limit: int) -> list[Path]:
    """The first ``limit`` records by name: QM9 validation molecules (index ending in 8) for
    ``split`` 'validation', records of any name for 'any'; stems matching the glob ``pattern``."""
    paths = [p for p in list_records(folder) if p.match(f"{pattern}.npz")]
    if split == "validation":
        paths = [p for p in paths if p.stem.startswith("qm9_") and split_of(qm9_index(p)) == "validation"]
    return paths[:limit]


def per_atom_label(cand: Candidate) -> tuple[str, str]:
    """('core+floating[+deformation]' per heavy atom, 'floating[+deformation]' per H)."""
    heavy = f"core+{cand.floating_heavy}" + (f"+{cand.deform_heavy}" if cand.deform_heavy else "")
    light = f"{cand.floating_h}" + (f"+{cand.deform_h}" if cand.deform_h else "")
    return heavy, light


def core_note(targets: list[Target]) -> str:
    """Core Gaussians per element of the fitted records, e.g. 'C 5, N 5, H 0'."""
    table = atomic_gaussians()
    elements = sorted({int(z) for t in targets for z in t.record.numbers}, key=lambda z: (z == 1, z))
    return ", ".join(f"{chemical_symbols[z]} {count_core(table[z], z)}" for z in elements)


def _percent(values: list[float]) -> str:
    return f"{100 * statistics.mean(values):.3f} %" if values else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--split", choices=("validation", "any"), default="validation",
                        help="QM9 validation molecules (index ending in 8), or records of any name, crystals included")
    parser.add_argument("--pattern", default="*", help="only records whose name matches this glob, e.g. '*_v100'")
    parser.add_argument("--molecules", type=int, default=5, help="first N selected records by name")
    parser.add_argument("--steps", type=int, default=2000, help="Adam steps per fit")
    parser.add_argument("--probes", type=int, default=1024, help="probe points per step (doubled for the last quarter)")
    parser.add_argument("--lr", type=float, default=0.02, help="peak Adam learning rate (A, log-width, 2x for weights)")
    parser.add_argument("--width-floor", type=float, default=0.02, help="Cholesky diagonal floor, Angstrom")
    parser.add_argument("--candidates", nargs="+", default=list(DEFAULT_CANDIDATES), choices=sorted(CANDIDATES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--objective", choices=("grid", "continuous"), default="grid",
        help="probes on the scoring grid's points, or spread over their voxels (exact density there; molecules only)",
    )
    parser.add_argument("--pool", type=int, default=1_000_000, help="off-grid probe pool (--objective continuous)")
    parser.add_argument("--spacing", type=float, default=0.1, help="molecular box grid spacing, Angstrom")
    parser.add_argument("--margin", type=float, default=4.0, help="molecular box grid margin, Angstrom")
    args = parser.parse_args()

    import numba

    numba.set_num_threads(1)
    torch.set_num_threads(1)
    paths = select_records(args.data, args.split, args.pattern, args.molecules)
    if not paths:
        sys.exit(f"no {args.split} records matching '{args.pattern}' in {args.data}")
    print(
        f"ansatz floor: {len(paths)} records ({', '.join(p.stem for p in paths)}); "
        f"{args.steps} Adam steps, {args.probes} probes/step (x2 last quarter), lr {args.lr} cosine, "
        f"objective {args.objective}, width floor {args.width_floor} A, "
        f"molecular grid {args.spacing} A / margin {args.margin} A, periodic records on their cell grids; "
        f"torch {torch.__version__}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}",
        flush=True,
    )
    if args.steps < 2000:
        print(f"NOTE: {args.steps} steps, fewer than the default 2000: floors are less converged", flush=True)
    wall = time.perf_counter()
    _warm_up()
    try:
        targets = [load_target(p, args.spacing, args.margin, args.objective, args.pool, args.seed) for p in paths]
    except InvalidInputError as err:
        sys.exit(str(err))
    promolecule = {}
    for t in targets:
        promolecule[t.name] = promolecule_score(t)
        print(
            f"  {'promol.':9s} {t.name}  {t.grid.describe()}  NMAE {100 * promolecule[t.name][0]:6.3f} %  "
            f"beyond {FAR} A {100 * promolecule[t.name][1]:6.3f} %",
            flush=True,
        )
    rows = []
    for name in args.candidates:
        cand = CANDIDATES[name]
        scores, far, shifted_scores, clamps, seconds, dipoles, shares = [], [], [], [], [], [], []
        timed = None
        for t in targets:
            rec = t.record
            model = FreeMixture(rec.numbers, rec.positions, cand, args.width_floor, args.seed)
            start_nmae = grid_nmae(model.mixture(), t.grid, t.ref, t.total)
            t0 = time.perf_counter()
            fit(model, t.grid, t.ref, args.steps, args.probes, args.lr, args.seed, t.sampler)
            dt = time.perf_counter() - t0
            mixture = model.mixture().detach()
            full, beyond, share = score(mixture, t)
            added, integral = clamp_electrons(mixture, t.grid)
            scores.append(full)
            far.append(beyond)
            shares.append(share)
            clamps.append(added)
            seconds.append(dt)
            extra = ""
            if t.shifted is not None:
                shifted_scores.append(grid_nmae(mixture, t.shifted, t.ref_shifted, float(np.abs(t.ref_shifted).sum())))
                dipoles.append(dipole_error(mixture, rec))
                extra = f"  shifted grid {100 * shifted_scores[-1]:6.3f} %  dipole error {dipoles[-1]:.3f} D"
            if timed is None:
                timed = (t, mixture)
            print(
                f"  {name:9s} {t.name}  K {mixture.n_gaussians:5d}  start {100 * start_nmae:6.3f} %  "
                f"floor {100 * full:6.3f} %  beyond {FAR} A {100 * beyond:6.3f} %{extra}  clamp +{added:.4f} e  "
                f"grid integral {integral:.3f} / {model.n_electrons:.0f} e  fit {dt:6.1f} s",
                flush=True,
            )
        t, mixture = timed
        t1, t2 = grid_seconds(mixture, t.grid, 1), grid_seconds(mixture, t.grid, 2)
        heavy, light = per_atom_label(cand)
        rows.append(
            (name, heavy, light, cand.weight_model, statistics.mean(scores), max(scores), statistics.mean(far),
             _percent(shifted_scores), statistics.mean(clamps), max(clamps), statistics.mean(seconds),
             t1, t2, mixture.n_gaussians, f"{statistics.mean(dipoles):.3f} D" if dipoles else "-")
        )
        print(
            f"  {name:9s} mean floor by distance to the nearest nucleus (A), points: "
            + "; ".join(f"{band}: {100 * v:.3f}" for band, v in zip(distance_bands(), np.mean(shares, axis=0))),
            flush=True,
        )
    print()
    print(
        f"Floors on {len(targets)} records, {args.steps} Adam steps per fit "
        f"({args.probes} probes/step, x2 in the last quarter, {args.objective} objective); "
        f"promolecule: NMAE {_percent([v[0] for v in promolecule.values()])}, beyond {FAR} A "
        f"{_percent([v[1] for v in promolecule.values()])}; grid time: numba evaluate of the fitted "
        f"mixture of {targets[0].name} ({targets[0].grid.n_points:,} points), best of 3"
    )
    print(
        f"| candidate | per heavy atom (core+float[+deform]) | per H (float[+deform]) | weights | floor mean "
        f"| floor worst | beyond {FAR} A mean | shifted-grid mean | clamp adds, mean / max | fit steps | fit s/record "
        "| K (timed) | grid s, 1 thread | grid s, 2 threads | dipole error, mean |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, heavy, light, wm, mean, worst, fmean, smean, cm, cx, fs, t1, t2, k, dip in rows:
        print(
            f"| {name} | {heavy} | {light} | {wm} | {100 * mean:.3f} % | {100 * worst:.3f} % | {100 * fmean:.3f} % "
            f"| {smean} | {cm:.4f} / {cx:.4f} e | {args.steps} | {fs:.0f} | {k} | {t1:.3f} | {t2:.3f} | {dip} |"
        )
    print(
        f"Core Gaussians per atom: {core_note(targets)}. 'clamp adds': electrons of the negative part that the "
        "clamp at zero removes (grid sum). 'shifted-grid' (molecules): the same fitted mixtures scored on the grid "
        "moved by half a spacing along x, y and z. Crystals: no shifted grid, no dipole."
    )
    print(f"total {time.perf_counter() - wall:.0f} s")


if __name__ == "__main__":
    main()
