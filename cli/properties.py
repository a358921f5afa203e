"""``electra-properties``: charges, dipole and quadrupole of every frame, as extended XYZ."""

from __future__ import annotations

from pathlib import Path

import click

from ._batch import run_batch
from ._common import device_option, traceback_option, version_option


@click.command("electra-properties", context_settings={"show_default": True})
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Extended XYZ file for the results (continued if it exists; created with the first record).")
@click.option("--model", default="default",
              help="Model: 'default' (the shipped weights), 'promolecule', or a trained model folder.")
@click.option("--charge", type=int, default=None,
              help="Total charge (elementary charges) of frames that carry none in their file (info 'charge').")
@click.option("--index", default=":", help="ASE frame selection, e.g. ':', '-1', '::10'.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, help="Frames per model call.")
@device_option
@click.option("--overwrite", is_flag=True, help="Start OUTPUT afresh instead of continuing it.")
@traceback_option
@version_option
def main(files, output, model, charge, index, batch_size, device, overwrite, traceback):
    """Hirshfeld charges (e), dipole (e Angstrom) and traceless quadrupole (e Angstrom^2) of every frame of FILES.

    Writes one extxyz record per frame: a 'charge' column, and 'dipole', 'quadrupole',
    'source', 'frame', 'model' and 'settings' (model, charge, ase-electra version) in the
    comment line; ase.io.read gives them back as atoms.get_charges(),
    atoms.get_dipole_moment() and atoms.info. A rerun keeps the frames already written,
    if they were made with the same settings, and continues; otherwise it stops before
    writing (--overwrite starts afresh). Frames that cannot be done (periodic, unknown
    element, non-finite positions, unreadable file) are reported one line each and the
    rest are written; the command then exits with status 1 and the count.
    """
    from ase_electra.models import load_model
    from ase_electra.properties.trajectory import write_properties

    def run(**reporting):
        return write_properties(list(files), output, load_model(model, device=device), index=index,
                                batch_size=batch_size, overwrite=overwrite, charge=charge, **reporting)

    run_batch(run, output, traceback)
