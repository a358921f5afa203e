"""``electra-label``: structure files in, one reference record per frame out (PySCF molecules, GPAW crystals)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ._common import traceback_option, user_errors, version_option


@click.command("electra-label", context_settings={"show_default": True})
@click.argument("structures", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the records (created if missing).")
@click.option("--xc", default="pbe", help="Exchange-correlation functional (PySCF/libxc name; crystals: pbe only).")
@click.option("--basis", default="def2-svp", help="Molecules: all-electron Gaussian basis set (PySCF name).")
@click.option("--charge", type=int, default=0, help="Total charge of every structure, elementary charges.")
@click.option("--conv-tol", type=click.FloatRange(min=0, min_open=True), default=1e-9,
              help="Molecules: SCF energy convergence threshold, Hartree.")
@click.option("--grid-level", type=click.IntRange(0, 9), default=3,
              help="Molecules: PySCF DFT integration grid level (the shared records since 2026-12-01: 1).")
@click.option("--ecut", type=click.FloatRange(min=0, min_open=True), default=None,
              show_default="800; 1200 with fluorine", help="Crystals: plane-wave cutoff, eV.")
@click.option("--kpt-density", type=click.FloatRange(min=0, min_open=True), default=4.0,
              help="Crystals: Gamma-centred k-points per 1/Angstrom, n_i = ceil(2 pi |b_i| x this).")
@click.option("--smearing", type=click.FloatRange(min=0), default=0.1, help="Crystals: Fermi-Dirac width, eV.")
@click.option("--spacing", type=click.FloatRange(min=0, min_open=True), default=0.1,
              help="Crystals: largest spacing of the density samples on the cell grid, Angstrom.")
@click.option("--index", default=":", help="ASE frame selection, e.g. ':', '-1', '::10'.")
@click.option("--overwrite", is_flag=True, help="Recompute outputs that already exist.")
@traceback_option
@version_option
def main(structures, out_dir, xc, basis, charge, conv_tol, grid_level, ecut, kpt_density, smearing, spacing, index,
         overwrite, traceback):
    """Label every frame of STRUCTURES (any format ASE reads) with its Kohn-Sham density.

    Molecules (pbc False): restricted (closed-shell) Kohn-Sham with PySCF, all electrons,
    density fitting; the records have the format of the qm9-pbe-def2svp data set.
    Crystals (pbc True along a, b and c): GPAW PBE plane waves (`make gpaw` installs it),
    the all-electron density sampled on the cell grid. Writes OUTPUT/<stem>.npz for a
    file holding one frame and OUTPUT/<stem>_<frame>.npz otherwise; existing outputs are
    skipped, so an interrupted run resumes.
    """
    from tqdm import tqdm

    from ase_electra.reference import label_files

    def progress(jobs):
        return tqdm(jobs, desc="SCF", unit="frame", file=sys.stderr, dynamic_ncols=True)

    with user_errors(traceback):
        written, skipped = label_files(
            structures, out_dir, index=index, overwrite=overwrite, progress=progress,
            xc=xc, basis=basis, charge=charge, conv_tol=conv_tol, grid_level=grid_level,
            ecut=ecut, kpt_density=kpt_density, smearing=smearing, spacing=spacing,
        )
    click.echo(f"{written + skipped} frames: {written} labelled, {skipped} already present -> {out_dir}")
