"""``electra-density``: structure files in, density files out (one per frame, or one per input)."""

from __future__ import annotations

from pathlib import Path

import click

from ._batch import run_batch
from ._common import device_option, traceback_option, version_option


@click.command("electra-density", context_settings={"show_default": True})
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the density files (created when the first one is written).")
@click.option("--model", default="default",
              help="Model: 'default' (the shipped weights), 'promolecule' (superposed atoms, H to Kr), "
                   "or a trained model: electra-train's run folder or a model folder.")
@click.option("--format", "fmt", type=click.Choice(["cube", "chgcar", "h5", "mixtures"]), default="cube",
              help="cube: Gaussian cube per frame (bohr, e/bohr^3); chgcar: VASP CHGCAR per frame (rho * V_cell); "
                   "h5: one HDF5 file per input with every frame's structure, Gaussian mixture and float32 grid "
                   "values (e/Angstrom^3); mixtures: the same without grid (read both with "
                   "ase_electra.io.read_density_frames).")
@click.option("--compress", is_flag=True,
              help="gzip the output: .cube.gz / .chgcar.gz (read_density and electra-score read them), "
                   "or deflate inside .h5.")
@click.option("--spacing", type=click.FloatRange(min=0, min_open=True), default=0.1,
              help="Grid spacing, Angstrom.")
@click.option("--margin", type=click.FloatRange(min=0), default=4.0,
              help="Vacuum around the molecules of all frames of a file, Angstrom: the frames of one file "
                   "share one box (crystals, slabs and wires use their cell).")
@click.option("--box", type=(click.FloatRange(min=0, min_open=True),) * 3, default=None,
              metavar="LX LY LZ",
              help="Fixed box for molecules instead of --margin, Angstrom, centred on each file's frames; "
                   "frames with atoms outside it are refused.")
@click.option("--sampling", type=click.Choice(["auto", "point", "voxel"]), default="auto",
              help="Grid values: point = the density at each grid point; voxel = values whose grid sum times "
                   "the voxel volume is the electron count (for Bader and other integrals); auto = voxel for "
                   "chgcar, point for cube and h5.")
@click.option("--charge", type=int, default=None,
              help="Total charge (elementary charges) of frames that carry none in their file (info 'charge').")
@click.option("--index", default=":", help="ASE frame selection, e.g. ':', '-1', '::10'.")
@click.option("--batch-size", type=click.IntRange(min=1), default=1, help="Frames per model call.")
@device_option
@click.option("--overwrite", is_flag=True, help="Replace outputs that already exist, whatever made them.")
@click.option("--png", is_flag=True,
              help="Also write OUTPUT/<name>.png per frame: log-scale density slices through the principal plane.")
@click.option("--esp", is_flag=True,
              help="Also write OUTPUT/<name>_esp.cube per frame: the electrostatic potential (nuclei + electrons) "
                   "in Hartree per unit charge, as cubegen writes it. Molecules: zero at infinity; crystals: zero "
                   "mean over the cell (VASP's LOCPOT); slabs (pbc on two axes): flat vacuum on both sides, the "
                   "two levels averaging to zero. Wires are refused.")
@click.option("--esp-spacing", type=click.FloatRange(min=0, min_open=True), default=0.2,
              help="Grid spacing of the --esp cube, Angstrom (same margin as the density).")
@click.option("--planar-average", type=click.Choice(["a", "b", "c", "x", "y", "z"]), default=None,
              help="With --esp, also write OUTPUT/<name>_esp_<axis>.dat: the potential (V) averaged over the planes "
                   "of this lattice axis (x, y, z: the planes perpendicular to it) against their height (A); its "
                   "header and the summary give each vacuum level (eV, the energy of an electron at rest there).")
@click.option("--fermi-level", type=float, default=None, metavar="EV",
              help="With --planar-average: the Fermi level (eV, on the potential's zero) for the work functions, "
                   "vacuum level minus Fermi level.")
@traceback_option
@version_option
def main(files, out_dir, model, fmt, compress, spacing, margin, box, sampling, charge, index, batch_size, device,
         overwrite, png, esp, esp_spacing, planar_average, fermi_level, traceback):
    """Predict the electron density of every frame of FILES (any format ASE reads).

    Writes OUTPUT/<stem>.<format> for a file with one frame and OUTPUT/<stem>_<frame>.<format>
    otherwise, frame numbers zero-padded (md_007.cube of 100 frames); with --format h5 or
    mixtures, one OUTPUT/<stem>.h5 or <stem>.mixtures.h5 per file. All frames of a file
    share one grid, so they can be differenced and scored against each other.

    Every output records the settings that made it (model, spacing, margin or box, format,
    sampling, charge, ase-electra version). A rerun skips outputs made with the same
    settings and stops, before writing anything, at one made otherwise (--overwrite
    replaces it). Frames that cannot be converted (unknown element, non-finite positions,
    unreadable file) are reported one line each and the rest are written; the command then
    exits with status 1 and the count. The summary line gives the worst difference between
    a frame's grid sum and its electron count.
    """
    from ase_electra.convert import convert
    from ase_electra.models import load_model

    def run(**reporting):
        return convert(
            list(files), out_dir, load_model(model, device=device), fmt=fmt, spacing=spacing, margin=margin,
            box=box, index=index, batch_size=batch_size, overwrite=overwrite, compress=compress, sampling=sampling,
            charge=charge, png=png, esp=esp, esp_spacing=esp_spacing, planar_average=planar_average,
            fermi_level=fermi_level, **reporting,
        )

    run_batch(run, out_dir, traceback)
