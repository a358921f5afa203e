"""``electra-label``: structure files in, one reference record (PySCF Kohn-Sham) per frame out."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ._common import traceback_option, user_errors, version_option


@click.command("electra-label", context_settings={"show_default": True})
@click.argument("structures", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the records (created if missing).")
@click.option("--xc", default="pbe", help="Exchange-correlation functional (PySCF/libxc name).")
@click.option("--basis", default="def2-svp", help="All-electron Gaussian basis set (PySCF name, spherical AOs).")
@click.option("--charge", type=int, default=0, help="Total charge of every structure, elementary charges.")
@click.option("--conv-tol", type=click.FloatRange(min=0, min_open=True), default=1e-9,
              help="SCF energy convergence threshold, Hartree.")
@click.option("--grid-level", type=click.IntRange(0, 9), default=3,
              help="PySCF DFT integration grid level (the shared records since 2026-12-01: 1).")
@click.option("--index", default=":", help="ASE frame selection, e.g. ':', '-1', '::10'.")
@click.option("--overwrite", is_flag=True, help="Recompute outputs that already exist.")
@traceback_option
@version_option
def main(structures, out_dir, xc, basis, charge, conv_tol, grid_level, index, overwrite, traceback):
    """Label every frame of STRUCTURES (any format ASE reads) with its Kohn-Sham density.

    Restricted (closed-shell) Kohn-Sham with PySCF, all electrons, density fitting; the
    records have the format of the qm9-pbe-def2svp data set. Writes OUTPUT/<stem>.npz for
    a file holding one frame and OUTPUT/<stem>_<frame>.npz otherwise; existing outputs
    are skipped.
    """
    from tqdm import tqdm

    from ase_electra.reference import label_files

    def progress(jobs):
        return tqdm(jobs, desc="SCF", unit="frame", file=sys.stderr, dynamic_ncols=True)

    with user_errors(traceback):
        written, skipped = label_files(
            structures, out_dir, index=index, overwrite=overwrite, progress=progress,
            xc=xc, basis=basis, charge=charge, conv_tol=conv_tol, grid_level=grid_level,
        )
    click.echo(f"{written + skipped} frames: {written} labelled, {skipped} already present -> {out_dir}")
