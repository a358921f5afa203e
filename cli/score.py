"""``electra-score``: NMAE of predicted densities against references, file by file."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ._common import traceback_option, user_errors, version_option


@click.command("electra-score")
@click.argument("pred", type=click.Path(path_type=Path))
@click.argument("ref", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of a table.")
@traceback_option
@version_option
def main(pred: Path, ref: Path, as_json: bool, traceback: bool) -> None:
    """Score predicted densities PRED against references REF.

    PRED and REF are two density files (cube, CHGCAR) or two folders, whose files are
    matched by name stem (water.cube <-> water.chgcar). A reference may also be a
    reference record (*.npz): a molecule's is evaluated on the prediction's grid, a
    crystal's density samples score a prediction on their cell grid only. Prints, per file,
    NMAE = sum|pred - ref| / sum|ref| in percent over the whole grid and over the points
    farther than 0.5 Angstrom from every nucleus (periodic images included: the bonding
    region, away from the nuclear cusps), and the electron counts (grid sum x voxel
    volume), then the mean NMAEs over matched files. Files found in one folder
    only are listed and left out of the mean.
    """
    from tqdm import tqdm

    from ase_electra.scoring import pair_files, score_pair

    with user_errors(traceback):
        try:
            pairs = pair_files(pred, ref)
            rows = [score_pair(row) for row in tqdm(pairs, desc="scoring", unit="file", disable=None)]
        except ImportError as exc:  # .npz references need the optional reference extra
            if traceback:
                raise
            raise click.ClickException(str(exc).splitlines()[0]) from exc
    scored = [row for row in rows if row.matched]
    mean = sum(row.nmae for row in scored) / len(scored)
    mean_far = sum(row.nmae_far for row in scored) / len(scored)
    if as_json:
        click.echo(json.dumps(_as_json(rows, mean, mean_far), indent=2))
    else:
        click.echo(_table(rows, mean, mean_far))
    unmatched = len(rows) - len(scored)
    if unmatched and not as_json:
        click.echo(f"warning: {unmatched} file(s) without a namesake, not in the mean", err=True)


def _as_json(rows: list, mean: float, mean_far: float) -> dict:
    def entry(row) -> dict:
        return {
            "name": row.name,
            "nmae": row.nmae,
            "nmae_percent": None if row.nmae is None else 100 * row.nmae,
            "nmae_far": row.nmae_far,
            "nmae_far_percent": None if row.nmae_far is None else 100 * row.nmae_far,
            "electrons_pred": row.electrons_pred,
            "electrons_ref": row.electrons_ref,
            "pred": None if row.pred is None else str(row.pred),
            "ref": None if row.ref is None else str(row.ref),
        }

    return {
        "files": [entry(row) for row in rows if row.matched],
        "mean_nmae": mean,
        "mean_nmae_percent": 100 * mean,
        "mean_nmae_far": mean_far,
        "mean_nmae_far_percent": 100 * mean_far,
        "only_in_pred": [str(row.pred) for row in rows if row.ref is None],
        "only_in_ref": [str(row.ref) for row in rows if row.pred is None],
    }


def _table(rows: list, mean: float, mean_far: float) -> str:
    n_scored = sum(row.matched for row in rows)
    width = max([len("name"), len(f"mean of {n_scored}")] + [len(row.name) for row in rows])
    lines = [f"{'name':<{width}}  {'NMAE %':>9}  {'> 0.5 A %':>9}  {'electrons pred':>14}  {'electrons ref':>14}"]
    for row in rows:
        if row.matched:
            numbers = (f"{100 * row.nmae:9.4f}  {100 * row.nmae_far:9.4f}  "
                       f"{row.electrons_pred:14.4f}  {row.electrons_ref:14.4f}")
            lines.append(f"{row.name:<{width}}  {numbers}")
        elif row.ref is None:
            lines.append(f"{row.name:<{width}}  only in PRED ({row.pred}), no reference")
        else:
            lines.append(f"{row.name:<{width}}  only in REF ({row.ref}), no prediction")
    lines.append(f"{f'mean of {n_scored}':<{width}}  {100 * mean:9.4f}  {100 * mean_far:9.4f}")
    return "\n".join(lines)
