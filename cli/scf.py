"""``electra-scf``: converge PySCF Kohn-Sham from the predicted density and count SCF cycles."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import click

from ._common import traceback_option, user_errors, version_option

_METHODS = ("harris", "projection")  # ase_electra.scf.GUESS_METHODS (not imported: no torch on --help)


@click.command("electra-scf", context_settings={"show_default": True})
@click.argument("structures", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model", default="default",
              help="Model: 'default' (the shipped weights), 'promolecule' (superposed atoms, H to Kr), "
                   "or a trained model: electra-train's run folder or a model folder.")
@click.option("--method", type=click.Choice(_METHODS), default="harris",
              help="How the predicted density becomes a density matrix (see ase_electra.scf).")
@click.option("--xc", default="pbe", help="Exchange-correlation functional (PySCF name).")
@click.option("--basis", default="def2-svp", help="Orbital basis set (PySCF name).")
@click.option("--charge", type=int, default=0, help="Total charge, elementary charges.")
@click.option("--spin", type=click.IntRange(min=0), default=0,
              help="Unpaired electrons 2S: 0 runs RKS, more runs UKS.")
@click.option("--conv-tol", type=click.FloatRange(min=0, min_open=True), default=1e-9,
              help="SCF energy convergence threshold, Hartree (gradient: its square root).")
@click.option("--compare", is_flag=True, help="Also run from PySCF's 'minao', 'atom' and 'huckel' guesses.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of tables.")
@traceback_option
@version_option
def main(structures, model, method, xc, basis, charge, spin, conv_tol, compare, as_json, traceback):
    """Run PySCF (density-fitted RKS/UKS) on every frame of STRUCTURES from the predicted guess.

    Prints per structure: guess, SCF cycles, wall and CPU time in seconds (prediction and
    guess included, model loading not), converged energy in Hartree, and NMAE in percent of
    the guess density matrix's density (and of the model's density) against the converged
    density, NMAE = sum_g w_g |rho - rho_conv| / sum_g w_g rho_conv on PySCF's DFT grid.
    """
    from ase_electra.models import load_model
    from ase_electra.scf import PYSCF_GUESSES, run_scf
    from ase_electra.structures import read_frames

    settings = dict(xc=xc, basis=basis, charge=charge, spin=spin, conv_tol=conv_tol)
    runs = []
    with user_errors(traceback), warnings.catch_warnings():
        # PySCF warns before it fails on an unknown basis; the one-line error says it all.
        warnings.filterwarnings("ignore", message="Basis may be available in basis-set-exchange")
        density_model = load_model(model, device="cpu")
        jobs = []
        for path in structures:
            _, frames = read_frames(path)
            for frame, atoms in frames:
                atoms.info["name"] = path.stem if len(frames) == 1 else f"{path.stem}_{frame}"
                jobs.append(atoms)
        for atoms in jobs:
            rows = [run_scf(atoms, "predicted", model=density_model, method=method, **settings)]
            if compare:
                rows += [run_scf(atoms, guess, **settings) for guess in PYSCF_GUESSES]
            runs.extend(rows)
            if not as_json:
                click.echo(_table(atoms, rows))
    if as_json:
        click.echo(json.dumps({"settings": settings | {"model": str(model), "method": method},
                               "runs": [run.as_dict() for run in runs]}, indent=2))


def _table(atoms, rows) -> str:
    def percent(value):
        return "-" if value is None else f"{100 * value:.2f}"

    head = f"{atoms.info['name']} ({atoms.get_chemical_formula()})"
    lines = [head, f"{'guess':<14} {'cycles':>6} {'wall s':>8} {'cpu s':>8} {'energy Ha':>18} "
                   f"{'NMAE guess %':>12} {'NMAE model %':>12}"]
    for r in rows:
        cycles = f"{r.cycles}" + ("" if r.converged else "!")
        lines.append(f"{r.guess:<14} {cycles:>6} {r.wall_seconds:8.2f} {r.cpu_seconds:8.2f} {r.energy:18.9f} "
                     f"{percent(r.guess_nmae):>12} {percent(r.model_nmae):>12}")
    if any(not r.converged for r in rows):
        lines.append("! not converged within PySCF's max_cycle")
    return "\n".join(lines) + "\n"
