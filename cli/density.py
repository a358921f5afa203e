"""``electra-density``: structure files in, one density file per frame out."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import traceback_option, user_errors


@click.command(context_settings={"show_default": True})
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the density files (created if missing).")
@click.option("--model", default="default",
              help="Model: 'default' (the shipped weights), 'promolecule' (superposed atoms, H to Ar), "
                   "or a trained model: electra-train's run folder or a model folder.")
@click.option("--format", "fmt", type=click.Choice(["cube", "chgcar"]), default="cube",
              help="Output format: Gaussian cube (bohr, e/bohr^3) or VASP CHGCAR (rho * V_cell).")
@click.option("--spacing", type=click.FloatRange(min=0, min_open=True), default=0.1,
              help="Grid spacing, Angstrom.")
@click.option("--margin", type=click.FloatRange(min=0), default=4.0,
              help="Vacuum around molecules, Angstrom (periodic cells use their cell).")
@click.option("--index", default=":", help="ASE frame selection, e.g. ':', '-1', '::10'.")
@click.option("--batch-size", type=click.IntRange(min=1), default=1, help="Frames per model call.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              help="Where the model runs.")
@click.option("--overwrite", is_flag=True, help="Rewrite outputs that already exist.")
@click.option("--png", is_flag=True,
              help="Also write OUTPUT/<stem>.png per frame: log-scale density slices through the principal plane.")
@click.option("--esp", is_flag=True,
              help="Also write OUTPUT/<stem>_esp.cube per frame: the electrostatic potential (nuclei + electrons) "
                   "in Hartree per unit charge, as cubegen writes it. Molecules only.")
@click.option("--esp-spacing", type=click.FloatRange(min=0, min_open=True), default=0.2,
              help="Grid spacing of the --esp cube, Angstrom (same margin as the density).")
@traceback_option
def main(files, out_dir, model, fmt, spacing, margin, index, batch_size, device, overwrite, png, esp, esp_spacing,
         traceback):
    """Predict the electron density of every frame of FILES (any format ASE reads).

    Writes OUTPUT/<stem>.<format> for a file with one frame and
    OUTPUT/<stem>_<frame>.<format> otherwise (and a .png of the same stem with
    --png, <stem>_esp.cube with --esp); existing outputs are skipped.
    """
    from tqdm import tqdm

    from ase_electra.convert import convert
    from ase_electra.models import load_model

    with user_errors(traceback):
        density_model = load_model(model, device=_device(device))
        summary = convert(
            list(files), out_dir, density_model, fmt=fmt, spacing=spacing, margin=margin, index=index,
            batch_size=batch_size, overwrite=overwrite, png=png, esp=esp, esp_spacing=esp_spacing,
            progress=lambda todo: tqdm(todo, desc="frames", unit="frame", dynamic_ncols=True),
        )
    click.echo(summary.line(out_dir))


def _device(choice: str) -> str:
    if choice != "auto":
        return choice
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
