"""``electra-blend``: interpolate the weights of two ELECTRA models of one configuration."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import traceback_option, user_errors, version_option


@click.command("electra-blend", context_settings={"show_default": True})
@click.argument("first")
@click.argument("second")
@click.option("--weight", type=click.FloatRange(0, 1), required=True,
              help="Share of SECOND: the parameters are (1 - weight) FIRST + weight SECOND.")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Model folder to write (config.json, model.safetensors), usable as --model.")
@traceback_option
@version_option
def main(first: str, second: str, weight: float, output: Path, traceback: bool) -> None:
    """Write the model whose parameters interpolate FIRST and SECOND (model or run folders).

    Typical use: FIRST a trained model, SECOND its fine-tune on new data (`electra-train
    --init FIRST`). The fine-tune may have lost some of FIRST's accuracy on FIRST's own
    data; blends in between usually keep more of it while keeping most of the new gain
    (weight-space ensembling). Score a few weights on both validation sets and pick.
    """
    with user_errors(traceback):
        from ase_electra.errors import InvalidInputError
        from ase_electra.models.base import load_model
        from ase_electra.models.electra import ElectraDensityModel

        models = [load_model(spec) for spec in (first, second)]
        for spec, model in zip((first, second), models):
            if not isinstance(model, ElectraDensityModel):
                raise InvalidInputError(f"{spec}: not one trained ELECTRA model (name a model or run folder, "
                                        "e.g. weights/default)")
        blend = models[0].blended(models[1], weight)
        blend.save(output)
    click.echo(f"{blend.name} -> {output}")
