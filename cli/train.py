"""``electra-train``: train an ELECTRA model on a folder of reference densities."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from ._common import device_option, traceback_option, user_errors, version_option


@click.command("electra-train", context_settings={"show_default": True})
@click.argument("data", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", "run_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run folder (created if missing): train_config.json, checkpoint.pt, best model RUN/best, "
                   "log.csv (one row per epoch).")
@click.option("--val", "val_dirs", multiple=True, type=click.Path(path_type=Path),
              help="Validation folder, may be repeated (may hold QM9 test-split records, for a final "
                   "evaluation); QM9 validation-split records in DATA validate too; excludes --val-fraction.",
              show_default="the QM9 rule, see --val-fraction")
@click.option("--val-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Hold out this random fraction of DATA (at least one structure, drawn with --seed).",
              show_default="the QM9 rule: records whose index ends in 8 validate")
@click.option("--epochs", type=click.IntRange(min=1), default=100,
              help="Passes over the training structures (all epochs, a resumed run's earlier ones included).")
@click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True),
              help="Stop cleanly (checkpoint and best model saved) after this wall time, minutes, building the "
                   "grid cache included.", show_default="no limit")
@click.option("--loss", type=click.Choice(["auto", "probe", "grid"]), default="auto",
              help="Training loss: NMAE on the full reference grid (grid) or estimated from importance-sampled "
                   "probe points (probe); auto: grid on CUDA, probe on the CPU. Validation is always full-grid.")
@click.option("--probes", type=click.IntRange(min=1), default=4096,
              help="Probe points per structure and step (--loss probe).")
@click.option("--batch-size", type=click.IntRange(min=1), default=1,
              help="Structures per optimiser step, per process (under torchrun: per rank).")
@click.option("--max-steps", type=click.IntRange(min=1),
              help="Stop cleanly after this many optimiser steps in all (a resumed run's earlier steps "
                   "included).", show_default="no limit")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3,
              help="Initial learning rate of AdamW (amsgrad, weight decay 0.01, gradient norm clipped at 1).")
@click.option("--lr-decay", type=click.FloatRange(0, 1, min_open=True), default=0.9,
              help="Factor on the learning rate after every epoch; 1: constant.")
@click.option("--dipole-weight", type=click.FloatRange(min=0), default=0.0,
              help="Weight, 1/(e*Angstrom), of |p_pred - p_ref| (e*Angstrom) added to each structure's NMAE; "
                   "0: NMAE only.")
@click.option("--nuclear-weight", type=click.FloatRange(min=0), default=0.0,
              help="Weight of |rho_pred - rho_ref| at and within 0.03 A of the nuclei (1: each nucleus, and each "
                   "distance from it, counts as one more grid point), added to each structure's NMAE; needs "
                   "exact references (PySCF records); 0: off.")
@click.option("--ema", type=click.FloatRange(0, 1, max_open=True), default=0.0,
              help="Decay per step of an exponential moving average of the weights, used for validation "
                   "and RUN/best (e.g. 0.999: about the last 1,000 steps); 0: off.")
@click.option("--seed", type=int, default=0,
              help="Seeds the model initialisation, data order, probes and --val-fraction split.")
@click.option("--resume", is_flag=True, help="Continue the run in RUN from its checkpoint.")
@click.option("--model-config", type=click.Path(dir_okay=False, path_type=Path),
              help="JSON file of model settings (e.g. {\"channels\": 64}) or a full model config.json.",
              show_default="ase_electra.models.electra.default_config for the data's elements")
@click.option("--init", "init_spec", metavar="MODEL",
              help="Fine-tune: start from this trained model ('default': its crystal model when every "
                   "training structure is periodic, else its molecular one; a model or run folder) "
                   "with its configuration; elements of DATA it lacks are added first, each starting as "
                   "its promolecule (ElectraDensityModel.grown); excludes --model-config and --resume.",
              show_default="a fresh model, starting as the promolecule")
@click.option("--widen", type=(click.IntRange(min=1), click.IntRange(min=1)), metavar="HEAVY LIGHT",
              help="With --init: first give the init model HEAVY floating Gaussians per heavy atom and LIGHT "
                   "per H and He (copies of its own, same density) and fine-tune that.")
@click.option("--cusps", metavar="ELEMENTS",
              help="With --init: first give these elements (comma-separated symbols) one more core Gaussian, half "
                   "as wide as their narrowest, for the density spike at their nuclei; train it with "
                   "--train-only ELEMENTS --core-only --nuclear-weight 1.")
@click.option("--train-only", "train_only", metavar="ELEMENTS",
              help="Train only what these elements own (comma-separated symbols, e.g. S,Cl: their embedding "
                   "columns and Gaussian head rows); structures without them then predict exactly as before. "
                   "With --init, typically the elements it adds.",
              show_default="every parameter")
@click.option("--core-only", is_flag=True,
              help="With --train-only: only those elements' core Gaussians (widths and weights) train, e.g. with "
                   "--nuclear-weight to fit the density at their nuclei.")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=100,
              help="Optimiser steps between checkpoints (also written at every epoch end and at a stop).")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder of cached reference grids, reused between runs.", show_default="RUN/../cache")
@click.option("--spacing", type=click.FloatRange(min=0, min_open=True), default=0.1,
              help="Grid spacing of reference records (*.npz), Angstrom; cube and CHGCAR files keep their grid.")
@click.option("--margin", type=click.FloatRange(min=0), default=4.0,
              help="Vacuum around the molecules of reference records (*.npz), Angstrom; cube and CHGCAR files "
                   "keep their grid.")
@device_option
@traceback_option
@version_option
def main(data, run_dir, val_dirs, val_fraction, epochs, max_minutes, loss, probes, batch_size, max_steps, lr, lr_decay,
         dipole_weight, nuclear_weight, ema, seed, resume, model_config, init_spec, widen, cusps, train_only, core_only,
         checkpoint_every, cache_dir, spacing, margin, device, traceback):
    """Train on the reference records (*.npz), cube and CHGCAR files in the DATA folders.

    Validation is the full-grid NMAE after every epoch; the best model is saved to
    RUN/best, usable as `electra-density --model RUN/best`. QM9 test-split records
    are never trained on.
    """
    if val_dirs and val_fraction is not None:
        raise click.UsageError("--val and --val-fraction exclude each other")
    if init_spec is not None and (model_config is not None or resume):
        raise click.UsageError("--init excludes --model-config and --resume (a checkpoint holds its weights)")
    if widen is not None and init_spec is None:
        raise click.UsageError("--widen needs --init (a fresh run sets its Gaussians with --model-config)")
    train_elements = _element_numbers(train_only) if train_only else ()
    with user_errors(traceback):
        from ase_electra.datasets import GridCache, find_samples, qm9_rule, refuse_test, split_samples
        from ase_electra.errors import FileFormatError
        from ase_electra.train import TrainConfig, model_config_for, train

        samples = [sample for folder in data for sample in find_samples(folder, spacing, margin)]
        names = [sample.name for sample in samples]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise FileFormatError(f"{', '.join(map(str, data))}: several folders hold samples named {twice[0]!r}")
        if not val_dirs:
            train_samples, val_samples = split_samples(samples, val_fraction, seed)
        else:  # the QM9 rule still keeps validation-split records of DATA out of training
            refuse_test(samples)
            train_samples, val_samples = qm9_rule(samples)
            val_samples += [s for folder in val_dirs for s in find_samples(folder, spacing, margin)]
        config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, lr_decay=lr_decay, loss=loss, probes=probes,
                             seed=seed, max_minutes=max_minutes, max_steps=max_steps,
                             checkpoint_every=checkpoint_every, device=device, dipole_weight=dipole_weight,
                             nuclear_weight=nuclear_weight, ema=ema, train_elements=train_elements,
                             train_core_only=core_only)
        model = None
        if model_config is not None:
            try:  # JSON syntax and bad settings are both ValueErrors
                model = model_config_for(train_samples + val_samples, json.loads(model_config.read_text()))
            except (OSError, ValueError) as err:
                raise FileFormatError(f"{model_config}: {err}") from None
        init = None if init_spec is None else _trained_model(init_spec, widen, seed, train_samples)
        if init is not None:
            init = _with_elements(init, train_samples + val_samples)
            if cusps:
                init = init.with_cusps(_element_numbers(cusps, "--cusps"))
        elif cusps:
            raise click.BadParameter("needs --init (a trained model to add core Gaussians to)", param_hint="--cusps")
        cache = None if cache_dir is None else GridCache(cache_dir)
        result = train(train_samples, val_samples, run_dir, config, model_config=model, cache=cache, resume=resume,
                       init=init)
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 reports
        return
    stop = {None: "", "time": " (time limit)", "steps": " (step limit)"}[result.stopped]
    click.echo(
        f"{len(train_samples)} training, {len(val_samples)} validation structures: {result.epochs} epochs, "
        f"{result.steps} steps in {result.seconds:.0f} s{stop}; best validation NMAE "
        f"{100 * result.best_val_nmae:.3f} % -> {run_dir / 'best'}"
    )


def _trained_model(spec: str, widen: tuple[int, int] | None, seed: int, samples):
    """The ELECTRA model named by ``--init``, widened to ``--widen`` (floating Gaussians per heavy
    atom and per H/He) if given; the promolecule is what a fresh run starts from anyway. Of the
    shipped default's two models, the crystal model when every training sample is periodic."""
    from ase_electra.errors import InvalidInputError
    from ase_electra.models.base import load_model
    from ase_electra.models.electra import ElectraDensityModel
    from ase_electra.models.shipped import ShippedModel
    from ase_electra.nn.model import floating_counts

    model = load_model(spec)
    if isinstance(model, ShippedModel):
        model = model.crystals if all(sample.atoms.pbc.any() for sample in samples) else model.molecules
    if not isinstance(model, ElectraDensityModel):
        raise InvalidInputError(f"--init {spec}: not a trained ELECTRA model (a fresh run starts as the promolecule)")
    if widen is None:
        return model
    heavy, light = widen
    try:
        module = model.module.widened(floating_counts(model.config.elements, heavy, light), seed=seed)
    except InvalidInputError as err:
        raise InvalidInputError(f"--init {spec} --widen {heavy} {light}: {err}") from None
    return ElectraDensityModel(module, model.device, name=f"{model.name} widened")


def _with_elements(model, samples):
    """``model`` grown by the elements of ``samples`` it lacks (reported on stderr), else itself."""
    grown = model.grown({int(z) for sample in samples for z in sample.atoms.numbers})
    if grown.elements != model.elements:
        click.echo(f"--init {model.name}: added elements, each starting as its promolecule -> {grown.name}", err=True)
    return grown


def _element_numbers(symbols: str, option: str = "--train-only") -> tuple[int, ...]:
    """Atomic numbers of comma-separated element symbols (of ``option``)."""
    from ase.data import atomic_numbers

    names = [name.strip() for name in symbols.split(",") if name.strip()]
    unknown = [name for name in names if name not in atomic_numbers or name == "X"]
    if unknown or not names:
        raise click.BadParameter(f"expected element symbols such as S,Cl, got {symbols!r}", param_hint=option)
    return tuple(atomic_numbers[name] for name in names)
