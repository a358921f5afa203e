"""Fit the promolecule table: spherical atomic densities as sums of isotropic Gaussians.

For every element H to Kr (def2-SVP is all-electron up to Kr) this computes the spherically
averaged neutral-atom density of the reference level of theory (PBE/def2-SVP, all electrons,
spherical basis) with PySCF's ``AtomSphericAverageRKS``, the spin-restricted atomic
Kohn-Sham solver behind ``pyscf.scf.atom_ks.get_atm_nrks``: open shells get fractional,
equal occupations over each shell's m components, so the density is exactly spherical.

The occupation per angular momentum comes from PySCF's configuration tables. For H to Ar
and Ga to Kr its three tables agree. For Sc to Ni they do not, and the solver's default
(``NRSRHF_CONFIGURATION``, the restricted Hartree-Fock ground states) is not the PBE one:
it puts Sc's third electron in 4p and empties 4s for Mn to Ni, 0.15-0.18 Hartree above
the best spherical PBE atom. So each element runs every distinct configuration of the
three tables and keeps the lowest energy (3d^n 4s^2 for Sc to V, Mn, Fe; 3d^(n+1) 4s^1
for Cr, Co, Ni, Cu), stored as ``configuration`` (s, p, d, f electrons). The radial
density rho(r) is then fitted by

    rho_fit(r) = sum_k w_k (2 pi s_k^2)^(-3/2) exp(-r^2 / (2 s_k^2)),

normalised Gaussians with weights ``w = Z softmax(a)`` (positive, summing to Z) and free
log-widths, minimising the L1 error

    int 4 pi r^2 |rho_fit(r) - rho(r)| dr / Z,

the radial form of the grid NMAE. Gaussians are added one at a time (each new one tried
at several widths, then all refitted with BFGS on a smoothed L1 loss), and the smallest
count in ``[min, max]`` whose error is within a tolerance of the best is kept.

Positive isotropic Gaussians cannot follow the shell structure exactly (a positive
mixture is completely monotone in r^2), so the error has a floor: about 0.2 % for C and
2 % for Ar, found also by a linear program over a dense dictionary of widths.

Run ``python -m ase_electra.models.fit_promolecule -o ase_electra/models/promolecule.json``
(PySCF needed: ``pip install ase-electra[reference]``). Elements already in the output file
are kept as they are and only the missing ones are fitted (``--refit`` redoes them all), so
extending the table never moves a shipped element. H to Ar took 75 s on a busy 2-core
machine; the run is deterministic: the atomic SCF runs on one thread.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import tempfile
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import click
import numpy as np
from scipy.optimize import minimize

__all__ = [
    "RadialFit", "atomic_density", "configurations", "fit_radial_density", "l1_error", "radial_grid", "fit_table",
    "merge_tables",
]

BOHR = 0.529177210903  # Angstrom
BASIS = "def2-svp"
XC = "pbe"
COMMAND = "python -m ase_electra.models.fit_promolecule -o ase_electra/models/promolecule.json"

#: Log-spaced radial grids, Angstrom: (first, last, count) for fitting and for reporting.
FIT_GRID = (1e-4, 12.0, 400)
REPORT_GRID = (1e-5, 15.0, 4000)

_LOG_SIGMA_BOUNDS = (math.log(1e-3), math.log(20.0))
_INSERT_SIGMAS = np.geomspace(0.005, 3.0, 6)  # widths tried for each added Gaussian, Angstrom
_SMOOTHING = (1e-2, 1e-3, 1e-4)  # smoothed-L1 scales, relative to rho, applied in turn
_QUICK_ITERATIONS, _FULL_ITERATIONS = 150, 1000  # BFGS iterations per smoothing scale


@dataclass(frozen=True)
class RadialFit:
    """A fitted spherical density: ``weights`` (n,) electrons, ``sigmas`` (n,) Angstrom, narrow to wide."""

    weights: np.ndarray
    sigmas: np.ndarray
    l1_error: float


def radial_grid(first: float, last: float, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Log-spaced radii and trapezoid weights for integrals over r.

    Returns ``r`` (P,) Angstrom and ``dr`` (P,) Angstrom, with ``sum(f(r) * dr)``
    approximating ``int f(r) dr`` (trapezoid rule in ln r).
    """
    x = np.linspace(math.log(first), math.log(last), count)
    r = np.exp(x)
    dx = np.full(count, x[1] - x[0])
    dx[[0, -1]] *= 0.5
    return r, r * dx


def atomic_density(
    z: int, r: np.ndarray, *, atom_grid: tuple[int, int] = (100, 434)
) -> tuple[np.ndarray, float, tuple[int, ...]]:
    """Spherically averaged neutral-atom PBE/def2-SVP density of element ``z``.

    Parameters
    ----------
    z : int
        Atomic number.
    r : array, shape (P,), Angstrom
        Radii to evaluate at.
    atom_grid : (int, int)
        Radial and angular points of the DFT integration grid.

    Returns
    -------
    rho : array, shape (P,), e/Angstrom^3 (converted from e/bohr^3 here)
    energy : float, Hartree
    configuration : tuple of int
        Electrons in s, p, d, f shells of the lowest-energy candidate (:func:`configurations`).
    """
    from pyscf import lib

    with lib.with_omp_threads(1), warnings.catch_warnings():
        # One thread: threaded reductions change the last bits from run to run.
        warnings.filterwarnings("ignore", "remove_linear_dep_ is deprecated", DeprecationWarning)
        runs = [_atomic_scf(z, configuration, atom_grid) for configuration in configurations(z)]
        mol, dm, energy, configuration = min(runs, key=lambda run: run[2])
        points = np.zeros((len(r), 3))
        points[:, 2] = np.asarray(r) / BOHR
        ao = mol.eval_gto("GTOval_sph", points)  # (P, n_ao)
    rho = np.einsum("pi,ij,pj->p", ao, dm, ao) / BOHR**3
    return rho, energy, configuration


def configurations(z: int) -> list[tuple[int, ...]]:
    """Distinct (s, p, d, f) electron counts of element ``z`` in PySCF's three configuration
    tables (restricted HF ground states, the SAD guess's, the experimental ground states)."""
    from pyscf.data import elements

    tables = (elements.NRSRHF_CONFIGURATION, elements.NRSRHFS_CONFIGURATION, elements.CONFIGURATION)
    return list(dict.fromkeys(tuple(int(n) for n in table[z]) for table in tables))


def _atomic_scf(z: int, configuration: tuple[int, ...], atom_grid: tuple[int, int]):
    """Converged spherically averaged RKS atom: (mol, density matrix (n_ao, n_ao), energy, configuration)."""
    from pyscf import gto
    from pyscf.data import elements
    from pyscf.scf import ADIIS, atom_ks

    mol = gto.M(atom=[(z, (0.0, 0.0, 0.0))], basis=BASIS, spin=z % 2, unit="Angstrom", cart=False, verbose=0)
    ks = atom_ks.AtomSphericAverageRKS(mol)
    table = list(elements.NRSRHF_CONFIGURATION)
    table[z] = list(configuration)
    ks.atomic_configuration = table
    ks.xc = XC
    ks.grids.atom_grid = atom_grid
    ks.conv_tol = 1e-10
    ks.diis = ADIIS()
    ks.diis.space = 12
    ks.run()
    if not ks.converged:
        raise RuntimeError(f"atomic SCF for Z={z}, configuration {configuration} did not converge")
    return mol, ks.make_rdm1(), float(ks.e_tot), configuration


def _gaussians(r: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """Normalised isotropic 3-D Gaussians at radii r, shape (P, n), 1/Angstrom^3."""
    return (2.0 * math.pi * sigmas**2) ** -1.5 * np.exp(-0.5 * (r[:, None] / sigmas) ** 2)


def l1_error(weights: np.ndarray, sigmas: np.ndarray, r: np.ndarray, dr: np.ndarray, rho: np.ndarray) -> float:
    """``int 4 pi r^2 |rho_fit - rho| dr / int 4 pi r^2 rho dr`` on a radial grid (dimensionless)."""
    shell = 4.0 * math.pi * r**2 * dr
    fit = _gaussians(r, np.asarray(sigmas)) @ np.asarray(weights)
    return float((shell * np.abs(fit - rho)).sum() / (shell * rho).sum())


def _unpack(params: np.ndarray, z: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(params) // 2
    logits, log_sigmas = params[:n], params[n:]
    p = np.exp(logits - logits.max())
    p /= p.sum()
    return z * p, p, np.exp(np.clip(log_sigmas, *_LOG_SIGMA_BOUNDS))


def _smooth_l1(params, r, rho, shell, delta, z):
    """Smoothed L1 loss sum shell * (sqrt(d^2 + delta^2) - delta) and its gradient."""
    w, p, s = _unpack(params, z)
    g = _gaussians(r, s)  # (P, n)
    d = g @ w - rho  # (P,)
    q = np.sqrt(d * d + delta * delta)
    t = shell * d / q  # (P,) dL/d(rho_fit)
    grad_w = t @ g  # (n,)
    grad_logits = w * grad_w - p * (w @ grad_w)
    grad_log_sigmas = w * (t @ (g * ((r[:, None] / s) ** 2 - 3.0)))
    lo, hi = _LOG_SIGMA_BOUNDS
    grad_log_sigmas[(params[len(s) :] < lo) | (params[len(s) :] > hi)] = 0.0  # clipped in _unpack
    return (shell * (q - delta)).sum(), np.concatenate([grad_logits, grad_log_sigmas])


def _refine(params: np.ndarray, r, rho, shell, z: int, smoothing: tuple[float, ...], maxiter: int):
    """BFGS on the smoothed L1 loss, for each smoothing scale in turn; returns (L1 error, params).

    BFGS rather than L-BFGS-B: SciPy's L-BFGS-B calls threaded BLAS on tiny matrices and
    runs ten times slower on a loaded machine; the widths are clipped in :func:`_unpack`.
    """
    for eps in smoothing:
        delta = eps * rho + 1e-14
        params = minimize(
            _smooth_l1, params, args=(r, rho, shell, delta, z), jac=True, method="BFGS",
            options={"maxiter": maxiter, "gtol": 1e-9},
        ).x
    w, _, s = _unpack(params, z)
    return float((shell * np.abs(_gaussians(r, s) @ w - rho)).sum()), params


def fit_radial_density(
    z: int,
    r: np.ndarray,
    dr: np.ndarray,
    rho: np.ndarray,
    *,
    min_gaussians: int = 4,
    max_gaussians: int = 8,
    rel_tol: float = 0.05,
    abs_tol: float = 1e-4,
) -> tuple[RadialFit, list[float]]:
    """Fit ``rho`` by 1..max_gaussians Gaussians greedily; keep the smallest good count.

    Parameters
    ----------
    z : int
        Atomic number: the weights sum to ``z``.
    r, dr : array, shape (P,), Angstrom
        Radial grid and its integration weights (:func:`radial_grid`).
    rho : array, shape (P,), e/Angstrom^3
        Spherical density to fit.
    min_gaussians, max_gaussians : int
        Range of counts to choose from.
    rel_tol, abs_tol : float
        Keep the smallest count whose L1 error is at most ``best * (1 + rel_tol) + abs_tol``.

    Returns
    -------
    The chosen fit and the L1 error fraction for each count 1..max_gaussians.
    """
    if not 1 <= min_gaussians <= max_gaussians:
        raise ValueError(f"gaussian counts: expected 1 <= min <= max, got {min_gaussians}, {max_gaussians}")
    shell = 4.0 * math.pi * r**2 * dr / z
    params = np.zeros(0)
    fits, errors = [], []
    for n in range(1, max_gaussians + 1):
        logits, log_sigmas = params[: n - 1], params[n - 1 :]
        new_logit = logits.max() + math.log(0.1) if n > 1 else 0.0
        # Rank the insertion widths by a quick coarse fit, then converge the best one.
        trials = [
            _refine(
                np.concatenate([logits, [new_logit], log_sigmas, [math.log(sigma)]]),
                r, rho, shell, z, _SMOOTHING[:1], _QUICK_ITERATIONS,
            )
            for sigma in _INSERT_SIGMAS
        ]
        _, params = min(trials, key=lambda trial: trial[0])
        error, params = _refine(params, r, rho, shell, z, _SMOOTHING, _FULL_ITERATIONS)
        order = np.argsort(params[n:])
        params = np.concatenate([params[:n][order], params[n:][order]])
        w, _, s = _unpack(params, z)
        fits.append((w, s))
        errors.append(error)
    best_error = min(errors[min_gaussians - 1 :])
    good = best_error * (1 + rel_tol) + abs_tol
    n = next(n for n in range(min_gaussians, max_gaussians + 1) if errors[n - 1] <= good)
    w, s = fits[n - 1]
    w = w * (z / w.sum())
    return RadialFit(w, s, errors[n - 1]), errors


def fit_table(elements: list[int], *, min_gaussians: int = 4, max_gaussians: int = 8, log=print) -> dict:
    """Compute and fit each element's atomic density; returns the JSON-ready table."""
    import pyscf
    from ase.data import chemical_symbols

    r_fit, dr_fit = radial_grid(*FIT_GRID)
    r_rep, dr_rep = radial_grid(*REPORT_GRID)
    table = {}
    for z in elements:
        rho, energy, configuration = atomic_density(z, np.concatenate([r_fit, r_rep]))
        rho_fit, rho_rep = rho[: len(r_fit)], rho[len(r_fit) :]
        fit, errors = fit_radial_density(
            z, r_fit, dr_fit, rho_fit, min_gaussians=min_gaussians, max_gaussians=max_gaussians
        )
        error = l1_error(fit.weights, fit.sigmas, r_rep, dr_rep, rho_rep)
        electrons = float((4.0 * math.pi * r_rep**2 * dr_rep * rho_rep).sum())
        symbol = chemical_symbols[z]
        log(
            f"{symbol:>2} Z={z:2d} (s, p, d, f = {configuration}): {len(fit.weights)} Gaussians, "
            f"L1 error {100 * error:.3f} % "
            f"(by count: {' '.join(f'{100 * e:.3f}' for e in errors)} %), radial integral {electrons:.6f}"
        )
        table[str(z)] = {
            "symbol": symbol,
            "weights": fit.weights.tolist(),
            "sigmas": fit.sigmas.tolist(),
            "l1_error": error,
            "energy_hartree": energy,
            "configuration": list(configuration),
        }
    metadata = {
        "description": "Spherical neutral-atom densities as isotropic normalised Gaussians "
        "rho(r) = sum_k w_k N(r | 0, s_k^2 I), sorted narrow to wide",
        "level_of_theory": "PBE, spin-restricted spherically averaged atom (fractional occupations), "
        "all electrons (pyscf.scf.atom_ks.AtomSphericAverageRKS), lowest-energy configuration of "
        "PySCF's tables",
        "xc": XC,
        "basis": f"{BASIS} (spherical)",
        "code": f"PySCF {pyscf.__version__}",
        "units": {"weights": "electrons", "sigmas": "Angstrom (standard deviation per axis)"},
        "l1_error": "int 4 pi r^2 |rho_fit - rho| dr / int 4 pi r^2 rho dr (= Z) on a log grid "
        f"r = {REPORT_GRID[0]}..{REPORT_GRID[1]} A, {REPORT_GRID[2]} points",
        "command": COMMAND,
        "date": datetime.now(timezone.utc).date().isoformat(),
    }
    return {"metadata": metadata, "elements": table}


def merge_tables(kept: dict, fitted: dict) -> dict:
    """``fitted``'s table with ``kept``'s element entries in place of its own (kept ones win).

    Elements come out in ascending atomic number; the metadata is ``fitted``'s.
    """
    elements = {**fitted["elements"], **kept["elements"]}
    return {"metadata": fitted["metadata"], "elements": {k: elements[k] for k in sorted(elements, key=int)}}


def write_json(data: dict, path: Path) -> None:
    """Write ``data`` as JSON atomically (temporary file in the target folder, then replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp makes the file private; this is package data
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@click.command()
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
    help="JSON file to write; elements it already holds are kept unless --refit.",
)
@click.option("--max-z", type=click.IntRange(1, 36), default=36, show_default=True, help="Fit elements 1..max-z.")
@click.option("--refit", is_flag=True, help="Fit every element again, also those already in OUTPUT.")
@click.option(
    "--min-gaussians", type=click.IntRange(1, 12), default=4, show_default=True, help="Fewest Gaussians per element."
)
@click.option(
    "--max-gaussians", type=click.IntRange(1, 12), default=8, show_default=True, help="Most Gaussians per element."
)
def main(output: Path, max_z: int, refit: bool, min_gaussians: int, max_gaussians: int) -> None:
    """Fit the promolecule table (PBE/def2-SVP atoms) and write it as JSON."""
    if min_gaussians > max_gaussians:
        raise click.ClickException(f"--min-gaussians {min_gaussians} exceeds --max-gaussians {max_gaussians}")
    if importlib.util.find_spec("pyscf") is None:
        raise click.ClickException("PySCF is needed: pip install 'ase-electra[reference]'")
    kept = {"elements": {}}
    if output.exists() and not refit:
        try:
            kept = json.loads(output.read_text())
            kept = {"elements": {k: v for k, v in kept["elements"].items() if int(k) <= max_z}}
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise click.ClickException(f"{output}: not a promolecule table ({err}); pass --refit") from None
    missing = [z for z in range(1, max_z + 1) if str(z) not in kept["elements"]]
    click.echo(f"keeping {len(kept['elements'])} elements of {output}, fitting {len(missing)}", err=True)
    data = fit_table(
        missing, min_gaussians=min_gaussians, max_gaussians=max_gaussians,
        log=lambda line: click.echo(line, err=True),
    )
    write_json(merge_tables(kept, data), output)
    click.echo(f"wrote {output}", err=True)


if __name__ == "__main__":
    main()
