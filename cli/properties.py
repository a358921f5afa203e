"""``electra-properties``: charges, dipole and quadrupole of every frame, as extended XYZ."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import traceback_option, user_errors


@click.command(context_settings={"show_default": True})
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Extended XYZ file for the results (continued if it exists).")
@click.option("--model", default="default",
              help="Model: 'default' (the shipped weights), 'promolecule', or a trained model folder.")
@click.option("--index", default=":", help="ASE frame selection, e.g. ':', '-1', '::10'.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, help="Frames per model call.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", help="Where the model runs.")
@click.option("--overwrite", is_flag=True, help="Start OUTPUT afresh instead of continuing it.")
@traceback_option
def main(files, output, model, index, batch_size, device, overwrite, traceback):
    """Hirshfeld charges (e), dipole (e Angstrom) and traceless quadrupole (e Angstrom^2) of every frame of FILES.

    Writes one extxyz record per frame: a 'charge' column, and 'dipole', 'quadrupole',
    'source', 'frame' and 'model' in the comment line; ase.io.read gives them back as
    atoms.get_charges(), atoms.get_dipole_moment() and atoms.info. A rerun keeps the
    frames already written and continues.
    """
    from tqdm import tqdm

    from ase_electra.models import load_model
    from ase_electra.properties.trajectory import write_properties

    from .density import _device

    with user_errors(traceback):
        density_model = load_model(model, device=_device(device))
        summary = write_properties(
            list(files), output, density_model, index=index, batch_size=batch_size, overwrite=overwrite,
            progress=lambda todo: tqdm(todo, desc="frames", unit="frame", dynamic_ncols=True),
        )
    click.echo(summary.line(output))
