"""Training: losses, learning, checkpoints and resume, DistributedDataParallel, electra-train."""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import molecule
from ase.io import write
from click.testing import CliRunner

from ase_electra import InvalidInputError
from ase_electra.cli.density import main as density_main
from ase_electra.cli.train import main
from ase_electra.datasets import GridCache, find_samples, near_nuclei
from ase_electra.evaluate import evaluate_points
from ase_electra.models import load_model
from ase_electra.models.electra import ElectraDensityModel, default_config
from ase_electra.models.promolecule import PromoleculeModel
from ase_electra.properties.multipoles import DEBYE
from ase_electra.reference import load_record
from ase_electra.train import (TrainConfig, WeightAverage, dipole_error, grid_nmae, model_config_for, nuclear_error,
                               probe_nmae, train)

from .conftest import copy_records

RECORDS = ("qm9_000506.npz", "qm9_004683.npz", "qm9_003421.npz", "qm9_017018.npz")
COARSE = {"spacing": 0.3, "margin": 2.5}
TINY = {"channels": 8, "layers": 1, "n_bessel": 4, "radial_hidden": 8, "floating_heavy": 4, "floating_light": 2}
FAST = TrainConfig(epochs=2, probes=512, checkpoint_every=2, device="cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> Path:
    return copy_records(tmp_path_factory, RECORDS)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> GridCache:
    return GridCache(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def samples(records):
    return find_samples(records, **COARSE)


def test_train_config_round_trips_and_checks_values():
    config = TrainConfig(epochs=3, loss="grid", max_minutes=1.5)
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(InvalidInputError, match="unknown fields"):
        TrainConfig.from_dict({"epochs": 1, "learning_rate": 1.0})
    with pytest.raises(InvalidInputError, match="lr_decay"):
        TrainConfig(lr_decay=1.5)


def test_model_config_takes_the_elements_of_the_data(samples):
    config = model_config_for(samples, TINY)
    assert config.elements == (1, 6, 7, 8) and config.channels == 8
    with pytest.raises(InvalidInputError, match="model config"):
        model_config_for(samples, {"no_such_setting": 1})


def test_probe_loss_is_an_unbiased_estimate_of_the_grid_loss(samples, cache):
    sample = samples[1]
    model = ElectraDensityModel.new(model_config_for(samples, TINY), seed=0)
    mixture = model.predict([sample.atoms])
    values = cache.values(sample)
    rng = np.random.default_rng(0)
    estimates = [probe_nmae(mixture, sample, values, 2048, rng, 0.25).item() for _ in range(200)]
    assert np.mean(estimates) == pytest.approx(grid_nmae(mixture, sample, values).item(), rel=0.03)


def test_training_drives_nmae_far_below_the_promolecule(records, cache, tmp_path):
    """Four molecules, tiny model, 80 steps of 1024 probes (about 15 s on one core).

    Measured (0.2 A grid, 2.5 A margin): promolecule 10.7 %, untrained model 11.8 %,
    trained 5.3 % mean full-grid NMAE over the four training molecules.
    """
    samples = find_samples(records, spacing=0.2, margin=2.5)
    values = [cache.values(s) for s in samples]
    promolecule = PromoleculeModel().predict([s.atoms for s in samples]).split()
    baseline = np.mean([grid_nmae(m, s, v).item() for m, s, v in zip(promolecule, samples, values)])
    config = TrainConfig(epochs=20, lr=1e-2, lr_decay=0.97, probes=1024, device="cpu")
    result = train(samples, samples, tmp_path / "run", config, model_config=model_config_for(samples, TINY),
                   cache=cache, progress=False)
    assert result.best_val_nmae < 0.65 * baseline
    assert 0.09 < baseline < 0.12


def test_dipole_error_is_zero_for_the_exact_dipole_and_differentiable(samples):
    sample = samples[0]
    model = ElectraDensityModel.new(model_config_for(samples, TINY), seed=0)
    mixture = model.module(model.graph([sample.atoms]))
    atoms = sample.atoms
    own = atoms.numbers @ atoms.positions - mixture.first_moments()[0].detach().double().numpy()
    assert dipole_error(mixture, sample, own).item() == pytest.approx(0.0, abs=1e-4)
    error = dipole_error(mixture, sample, sample.reference_dipole())
    assert error.item() > 0 and error.requires_grad


def test_log_holds_train_nmae_and_dipole_error_and_the_dipole_term_trains(samples, cache, tmp_path):
    """A dipole-weighted run lowers the dipole error; log.csv reports it beside both NMAEs."""
    config = dataclasses.replace(FAST, epochs=3, lr=1e-2, probes=256, monitor_train=2)
    logs = {}
    for weight in (0.0, 5.0):
        run_dir = tmp_path / f"w{weight}"
        train(samples[:3], samples[3:], run_dir, dataclasses.replace(config, dipole_weight=weight),
              model_config=model_config_for(samples, TINY), cache=cache, progress=False)
        logs[weight] = list(csv.DictReader(open(run_dir / "log.csv")))
    rows = logs[0.0]
    assert list(rows[0]) == ["epoch", "step", "train_loss", "train_nmae", "val_nmae", "val_dipole_debye", "lr", "seconds"]
    assert all(0 < float(r["train_nmae"]) < 0.3 and float(r["val_dipole_debye"]) > 0 for r in rows)
    model = ElectraDensityModel.new(model_config_for(samples, TINY), seed=FAST.seed)
    start = dipole_error(model.module(model.graph([samples[3].atoms])), samples[3], samples[3].reference_dipole())
    assert float(rows[0]["val_dipole_debye"]) != pytest.approx(start.item() / DEBYE, rel=1e-6)  # it trained
    assert float(logs[5.0][-1]["val_dipole_debye"]) < float(logs[0.0][-1]["val_dipole_debye"])


def test_nuclear_error_is_zero_at_the_exact_values_and_differentiable(samples):
    sample = samples[0]
    exact = sample.reference_nuclei()
    points, weights = near_nuclei(sample.atoms.positions)
    n = len(sample.atoms)
    assert points.shape == (n * 25, 3) and weights.sum() == pytest.approx(5 * n)  # the nucleus and 4 distances
    np.testing.assert_array_equal(points[::25], sample.atoms.positions)
    np.testing.assert_allclose(exact, load_record(sample.source).density_at(points))
    model = ElectraDensityModel.new(model_config_for(samples, TINY), seed=0)
    mixture = model.module(model.graph([sample.atoms]))
    own = evaluate_points(mixture, points).detach().numpy()
    assert nuclear_error(mixture, sample, own, 1.0).item() == pytest.approx(0.0, abs=1e-6)
    error = nuclear_error(mixture, sample, exact, 1000.0)
    assert error.item() == pytest.approx((weights * np.abs(own - exact)).sum() / 1000.0, rel=1e-5)
    assert error.requires_grad


def test_the_nuclear_term_trains_the_density_at_the_nuclei(samples, cache, tmp_path):
    """A nucleus-weighted run ends closer to the exact density at the nuclei than one without the term."""
    config = dataclasses.replace(FAST, epochs=8, lr=1e-3, probes=256, monitor_train=0)  # 24 steps
    errors = {}
    for weight in (0.0, 1.0):
        result = train(samples[:3], samples[3:], tmp_path / f"w{weight}",
                       dataclasses.replace(config, nuclear_weight=weight),
                       model_config=model_config_for(samples, TINY), cache=cache, progress=False)
        with torch.no_grad():
            errors[weight] = sum(nuclear_error(result.model.predict([s.atoms]), s, s.reference_nuclei(), 1.0).item()
                                 for s in samples[:3])
    assert errors[1.0] < 0.8 * errors[0.0]  # measured 49 against 72 e/Angstrom^3


def test_resumed_run_equals_uninterrupted_run(samples, cache, tmp_path):
    run = functools.partial(train, samples[:3], samples[3:], cache=cache, progress=False)
    tiny = model_config_for(samples, TINY)
    whole = run(tmp_path / "whole", FAST, model_config=tiny)

    first = run(tmp_path / "parts", dataclasses.replace(FAST, max_steps=4), model_config=tiny)  # stops in epoch 2
    assert first.stopped == "steps" and first.steps == 4 and (tmp_path / "parts" / "best").is_dir()
    with pytest.raises(InvalidInputError, match="a run exists here"):
        run(tmp_path / "parts", FAST, model_config=tiny)
    with pytest.raises(InvalidInputError, match=r"changed settings \['lr'\]"):
        run(tmp_path / "parts", dataclasses.replace(FAST, lr=0.1), resume=True)
    rest = run(tmp_path / "parts", FAST, resume=True)

    assert (rest.epochs, rest.steps, rest.stopped) == (whole.epochs, whole.steps, None) == (2, 6, None)
    for (name, a), b in zip(whole.model.module.state_dict().items(), rest.model.module.state_dict().values()):
        assert torch.allclose(a.double(), b.double(), rtol=0, atol=1e-6), name
    rows = [list(csv.reader(open(folder / "log.csv"))) for folder in (tmp_path / "whole", tmp_path / "parts")]
    assert [r[:5] for r in rows[0]] == [r[:5] for r in rows[1]]  # same losses, NMAEs and learning rates
    assert rest.best_val_nmae == whole.best_val_nmae


def test_step_limit_at_an_epoch_end_closes_the_epoch(samples, cache, tmp_path):
    # 3 training structures, batch size 1: step 3 is the first epoch's last
    config = dataclasses.replace(FAST, epochs=5, max_steps=3)
    result = train(samples[:3], samples[3:], tmp_path / "run", config, model_config=model_config_for(samples, TINY),
                   cache=cache, progress=False)
    assert (result.stopped, result.steps, result.epochs) == ("steps", 3, 1)
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    assert [(r["epoch"], r["step"]) for r in rows] == [("1", "3")]  # validated and logged
    assert float(rows[0]["val_nmae"]) == pytest.approx(result.best_val_nmae, rel=1e-5)
    progress = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["progress"]
    assert (progress["epoch"], progress["batch"]) == (1, 0)  # a resumed run starts epoch 2


def test_time_limit_stops_cleanly_with_a_best_model(samples, cache, tmp_path):
    config = dataclasses.replace(FAST, epochs=50, max_minutes=1e-4)
    result = train(samples[:3], samples[3:], tmp_path / "run", config, model_config=model_config_for(samples, TINY),
                   cache=cache, progress=False)
    assert result.stopped == "time" and result.steps == 1
    best = ElectraDensityModel.load(tmp_path / "run" / "best")
    assert best.config == result.model.config
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["progress"]["step"] == 1


def test_fine_tuning_starts_from_the_init_model_and_keeps_its_config(samples, cache, tmp_path):
    run = functools.partial(train, samples[:3], samples[3:], cache=cache, progress=False)
    first = run(tmp_path / "first", FAST, model_config=model_config_for(samples, TINY))
    init = ElectraDensityModel.load(tmp_path / "first" / "best")
    state = {k: v.clone() for k, v in init.module.state_dict().items()}
    start = run(tmp_path / "start", dataclasses.replace(FAST, lr=1e-12, max_steps=1), init=init)
    assert start.model.config == init.config
    for name, value in start.model.module.state_dict().items():  # a copy, trained by a vanishing step
        assert torch.allclose(value, state[name], rtol=0, atol=1e-8), name
        assert torch.equal(init.module.state_dict()[name], state[name]), name  # the init model is untouched
    assert start.best_val_nmae == pytest.approx(first.best_val_nmae, rel=1e-5)
    tuned = run(tmp_path / "tuned", dataclasses.replace(FAST, lr=1e-2), init=init)
    assert tuned.best_val_nmae < first.best_val_nmae
    with pytest.raises(InvalidInputError, match="keeps the configuration"):
        run(tmp_path / "both", FAST, init=init, model_config=init.config)
    hydrogen = ElectraDensityModel.new(default_config(elements=(1,), **TINY))
    with pytest.raises(InvalidInputError, match=r"lacks elements \[6, 7, 8\]"):
        run(tmp_path / "hydrogen", FAST, init=hydrogen)


def test_weight_average_follows_its_formula_and_swaps_back():
    module = torch.nn.Linear(3, 2)
    start = [p.detach().clone() for p in module.parameters()]
    average = WeightAverage(module, decay=0.75)
    for value in (1.0, -2.0):
        with torch.no_grad():
            for p in module.parameters():
                p.fill_(value)
        average.update()
    expected = [0.75 * (0.75 * s + 0.25 * 1.0) + 0.25 * -2.0 for s in start]
    with average.swapped():
        for p, e in zip(module.parameters(), expected):
            torch.testing.assert_close(p.detach(), e)
    assert all(torch.equal(p.detach(), torch.full_like(p, -2.0)) for p in module.parameters())
    with pytest.raises(InvalidInputError, match="decay"):
        WeightAverage(module, decay=1.0)


def test_averaged_run_validates_and_saves_its_averages_and_resumes_exactly(samples, cache, tmp_path):
    run = functools.partial(train, samples[:3], samples[3:], cache=cache, progress=False)
    tiny = model_config_for(samples, TINY)
    config = dataclasses.replace(FAST, lr=1e-2, ema=0.6)
    whole = run(tmp_path / "whole", config, model_config=tiny)
    plain = run(tmp_path / "plain", dataclasses.replace(config, ema=0.0), model_config=tiny)
    best = ElectraDensityModel.load(tmp_path / "whole" / "best")
    val = samples[3]
    scored = grid_nmae(best.predict([val.atoms]), val, cache.values(val)).item()
    assert scored == pytest.approx(whole.best_val_nmae, rel=1e-5)  # best/ holds what was validated
    assert whole.best_val_nmae != pytest.approx(plain.best_val_nmae, rel=1e-4)  # and it is not the raw weights
    raw = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)
    assert len(raw["ema"]) == len(list(whole.model.module.parameters()))
    run(tmp_path / "parts", dataclasses.replace(config, max_steps=4), model_config=tiny)
    rest = run(tmp_path / "parts", config, resume=True)
    for (name, a), b in zip(whole.model.module.state_dict().items(), rest.model.module.state_dict().values()):
        assert torch.allclose(a.double(), b.double(), rtol=0, atol=1e-6), name  # averages resumed too
    assert rest.best_val_nmae == whole.best_val_nmae


# ---------------------------------------------------------------------- DistributedDataParallel
def _ddp_worker(rank: int, world: int, port: int, records: str, cache: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    samples = find_samples(records, **COARSE)
    result = train(samples[:3], samples[3:], Path(out) / "run", FAST, model_config=model_config_for(samples, TINY),
                   cache=GridCache(cache), progress=False)
    torch.save(result.model.module.state_dict(), Path(out) / f"rank{rank}.pt")


def test_two_processes_train_the_same_model(records, cache, samples, tmp_path):
    for sample in samples:
        cache.values(sample)  # the workers only read the cache
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_ddp_worker, args=(2, port, str(records), str(cache.folder), str(tmp_path)), nprocs=2)

    states = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    initial = ElectraDensityModel.new(model_config_for(samples, TINY), seed=FAST.seed).module.state_dict()
    moved = 0.0
    for name, a in states[0].items():
        assert torch.allclose(a.double(), states[1][name].double(), rtol=0, atol=1e-6), name
        moved = max(moved, (a.double() - initial[name].double()).abs().max().item())
    assert moved > 1e-4  # it trained
    log = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    assert [row["step"] for row in log] == ["1", "2"]  # 3 samples on 2 ranks: one step per epoch


# ---------------------------------------------------------------------- electra-train
def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_trains_and_saves_a_loadable_model(records, tmp_path):
    tiny = tmp_path / "tiny.json"
    tiny.write_text(json.dumps(TINY))
    final = tmp_path / "final"  # an explicit validation folder may hold test-split records
    final.mkdir()
    shutil.copy(records / RECORDS[0], final / "qm9_000509.npz")
    result = run_cli(records, "-o", tmp_path / "run", "--val", final, "--epochs", "1", "--probes", "256",
                     "--model-config", tiny, "--spacing", "0.4", "--margin", "2.0", "--device", "cpu")
    assert result.exit_code == 0, result.output
    # qm9_017018 (validation split) validates beside the --val folder instead of training
    assert "3 training, 2 validation structures: 1 epochs, 3 steps" in result.output
    assert ElectraDensityModel.load(tmp_path / "run" / "best").config.channels == 8
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 5
    assert load_model(tmp_path / "run").config.channels == 8  # a run folder means its best model
    write(tmp_path / "water.xyz", molecule("H2O"))
    density = CliRunner().invoke(density_main, [str(tmp_path / "water.xyz"), "-o", str(tmp_path / "out"),
                                                "--model", str(tmp_path / "run"), "--spacing", "0.4"])
    assert density.exit_code == 0, density.output
    assert (tmp_path / "out" / "water.cube").is_file()


def test_cli_fine_tunes_a_trained_model(records, tmp_path):
    tiny = tmp_path / "tiny.json"
    tiny.write_text(json.dumps(TINY))
    common = ["--epochs", "1", "--probes", "256", "--spacing", "0.4", "--margin", "2.0", "--device", "cpu"]
    assert run_cli(records, "-o", tmp_path / "first", "--model-config", tiny, *common).exit_code == 0
    result = run_cli(records, "-o", tmp_path / "tuned", "--init", tmp_path / "first", *common)
    assert result.exit_code == 0, result.output
    assert load_model(tmp_path / "tuned").config == load_model(tmp_path / "first").config
    both = run_cli(records, "-o", tmp_path / "both", "--init", tmp_path / "first", "--model-config", tiny, *common)
    assert both.exit_code == 2 and "--init excludes --model-config" in both.output
    wide = run_cli(records, "-o", tmp_path / "wide", "--init", tmp_path / "first", "--widen", "9", "3", *common)
    assert wide.exit_code == 0, wide.output
    widened = load_model(tmp_path / "wide")
    assert widened.config == dataclasses.replace(load_model(tmp_path / "first").config, n_floating=(3, 9, 9, 9))
    alone = run_cli(records, "-o", tmp_path / "alone", "--widen", "9", "3", *common)
    assert alone.exit_code == 2 and "--widen needs --init" in alone.output
    narrow = run_cli(records, "-o", tmp_path / "narrow", "--init", tmp_path / "first", "--widen", "2", "2", *common)
    assert narrow.exit_code == 1 and narrow.output.startswith(f"Error: --init {tmp_path / 'first'} --widen 2 2: floating Gaussians")
    promolecule = run_cli(records, "-o", tmp_path / "p", "--init", "promolecule", *common)
    assert promolecule.exit_code == 1
    assert promolecule.output.startswith("Error: --init promolecule: not a trained ELECTRA model")


@pytest.mark.parametrize("case", ["missing", "empty", "corrupt", "test split", "bad checkpoint", "bad model config"])
def test_cli_errors_are_one_line(records, tmp_path, case):
    data, run = tmp_path / "data", tmp_path / "run"
    if case == "empty":
        data.mkdir()
    elif case != "missing":
        shutil.copytree(records, data)
    if case == "corrupt":
        (data / "qm9_000010.npz").write_bytes(b"PK\x03\x04 truncated")
    elif case == "test split":
        shutil.copy(records / RECORDS[0], data / "qm9_000509.npz")
    elif case == "bad checkpoint":
        run.mkdir()
        (run / "checkpoint.pt").write_bytes(b"not a checkpoint")
    (tmp_path / "model.json").write_text('{"channels": 0}')
    extra = {"bad checkpoint": ["--resume"], "bad model config": ["--model-config", tmp_path / "model.json"]}
    result = run_cli(data, "-o", run, "--spacing", "0.4", *extra.get(case, []))
    expected = {
        "missing": f"Error: {data}: not a folder",
        "empty": f"Error: {data}: no reference records",
        "corrupt": f"Error: {data / 'qm9_000010.npz'}: unreadable",
        "test split": f"Error: {data / 'qm9_000509.npz'}: QM9 test-split record",
        "bad checkpoint": f"Error: {run / 'checkpoint.pt'}: not a readable checkpoint",
        "bad model config": f"Error: {tmp_path / 'model.json'}: model config: config channels: expected >= 1",
    }[case]
    assert result.exit_code == 1
    assert result.output.startswith(expected) and result.output.count("\n") == 1, result.output
    assert list(run.glob("*")) == ([run / "checkpoint.pt"] if case == "bad checkpoint" else [])


TINY_RUN = ["--epochs", "1", "--probes", "256", "--spacing", "0.4", "--margin", "2.0", "--device", "cpu"]


@pytest.fixture(scope="module")
def with_sulfur(records, tmp_path_factory) -> tuple[Path, Path]:
    """A tiny model trained on ``records`` (H, C, N, O) and a copy of them with an H2S record."""
    pytest.importorskip("pyscf")
    from ase_electra.reference import label_structure, save_record

    folder = tmp_path_factory.mktemp("sulfur")
    tiny = folder / "tiny.json"
    tiny.write_text(json.dumps(TINY))
    assert run_cli(records, "-o", folder / "first", "--model-config", tiny, *TINY_RUN).exit_code == 0
    data = folder / "data"
    shutil.copytree(records, data)
    save_record(data / "h2s.npz", label_structure(molecule("SH2"), basis="sto-3g", name="H2S"))
    return folder / "first", data


def test_cli_init_grows_the_elements_of_the_data(with_sulfur, tmp_path):
    first_run, data = with_sulfur
    result = run_cli(data, "-o", tmp_path / "tuned", "--init", first_run, *TINY_RUN)
    assert result.exit_code == 0, result.output
    assert "added elements" in result.output and "+S" in result.output
    first, tuned = load_model(first_run), load_model(tmp_path / "tuned")
    assert tuned.elements == first.elements | {16}
    assert tuned.predict([molecule("SH2")]).integral().item() == pytest.approx(18.0, rel=1e-5)


def test_cli_train_only_new_elements_keeps_the_others_exactly(with_sulfur, tmp_path):
    first_run, data = with_sulfur
    result = run_cli(data, "-o", tmp_path / "tuned", "--init", first_run, "--train-only", "S", *TINY_RUN)
    assert result.exit_code == 0, result.output
    first, tuned = load_model(first_run), load_model(tmp_path / "tuned")
    methanol = [molecule("CH3OH")]
    before, after = first.predict(methanol), tuned.predict(methanol)
    assert torch.equal(after.weights, before.weights) and torch.equal(after.centres, before.centres)
    assert torch.equal(after.scale_tril, before.scale_tril)
    grown = first.grown([16])
    assert not torch.equal(tuned.predict([molecule("SH2")]).weights, grown.predict([molecule("SH2")]).weights)
    bad = run_cli(data, "-o", tmp_path / "bad", "--init", first_run, "--train-only", "Qq", *TINY_RUN)
    assert bad.exit_code == 2 and "--train-only" in bad.output


def test_cli_core_only_trains_just_the_core_rows_of_the_elements(with_sulfur, records, tmp_path):
    first_run, _ = with_sulfur
    result = run_cli(records, "-o", tmp_path / "core", "--init", first_run, "--train-only", "C", "--core-only",
                     "--nuclear-weight", "1", *TINY_RUN)
    assert result.exit_code == 0, result.output
    first, tuned = load_model(first_run).module.state_dict(), load_model(tmp_path / "core").module.state_dict()
    row = int(load_model(first_run).module.element_row[6])
    changed = {name for name in first if not torch.equal(first[name], tuned[name])}
    assert changed == {"heads.core_logit", "heads.core_theta"}
    for name in changed:
        others = [r for r in range(len(first[name])) if r != row]
        assert torch.equal(first[name][others], tuned[name][others])
    bad = run_cli(records, "-o", tmp_path / "bad", "--core-only", *TINY_RUN)
    assert bad.exit_code == 1 and "train_core_only" in bad.output and bad.output.count("\n") == 1, bad.output


def test_cli_cusps_needs_init_and_a_free_core_slot(with_sulfur, records, tmp_path):
    first_run, _ = with_sulfur
    full = run_cli(records, "-o", tmp_path / "full", "--init", first_run, "--cusps", "C", *TINY_RUN)
    assert full.exit_code == 1 and "no free core slot" in full.output and full.output.count("\n") == 1, full.output
    assert not (tmp_path / "full").exists()
    alone = run_cli(records, "-o", tmp_path / "alone", "--cusps", "C", *TINY_RUN)
    assert alone.exit_code == 2 and "--cusps" in alone.output
