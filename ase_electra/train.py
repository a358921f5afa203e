"""Training an ELECTRA model on reference densities.

The loss is the NMAE, sum |rho_pred - rho_ref| / sum |rho_ref|, of each structure,
averaged over the batch: on the structure's full reference grid (``loss="grid"``, as
published) or estimated from importance-sampled probe points (``loss="probe"``, see
:func:`~ase_electra.datasets.sample_probes`; unbiased, and far cheaper on a CPU).
Validation is always the full-grid NMAE, averaged over the validation structures.
AdamW with amsgrad, learning rate times ``lr_decay`` after every epoch, gradient norm
clipping; a fresh model starts as the promolecule, a fine-tuned one (``init``) as a
trained model (for instance the shipped default) with a fresh optimiser. With ``ema`` > 0
the run keeps an exponential moving average of the weights (:class:`WeightAverage`, as
MACE and most interatomic-potential codes do): validation, ``best/`` and the returned
model use the averaged weights, which smooth out the step-to-step noise of the probe
loss; the optimiser trains the raw ones. With ``dipole_weight`` > 0 each
structure's loss adds ``dipole_weight * |p_pred - p_ref|`` (e * Angstrom): the mixture's
analytic dipole against the reference's exact one (structures without one add nothing).
With ``nuclear_weight`` > 0 it also adds
``nuclear_weight * sum_j v_j |rho_pred(r_j) - rho_ref(r_j)| / sum |rho_ref|`` over the points r_j at
and around each nucleus (:func:`~ase_electra.datasets.near_nuclei`; weights v_j: each nucleus and
each distance from it counts as one grid point): grids often pass that close, and a box around a
diatomic along an axis puts a nucleus on a point, where a heavy atom's peak (1.9e5 e/Angstrom^3
for Br) outweighs the rest of the grid.

A run folder holds::

    train_config.json   the TrainConfig
    checkpoint.pt       model, optimiser, scheduler, progress and RNG states (every
                        ``checkpoint_every`` steps, at every epoch end and at a stop);
                        plain tensors and numbers, read with torch.load(weights_only=True)
    best/               the model with the lowest validation NMAE so far
                        (an ElectraDensityModel folder: config.json, model.safetensors)
    log.csv             one row per epoch: epoch, step, train_loss (the mean loss of the
                        epoch's steps), train_nmae (full-grid NMAE on a fixed subset of
                        ``monitor_train`` training structures), val_nmae, val_dipole_debye
                        (mean |p_pred - p_ref| over validation structures with an exact
                        reference dipole, Debye), lr, seconds

The data order of an epoch is a permutation drawn from (seed, epoch) and the probes of a
batch come from (seed, epoch, batch, rank), so a resumed run continues to the same
result as an uninterrupted one. Under ``torchrun`` (``WORLD_SIZE`` > 1) every rank trains
on its shard of each epoch in DistributedDataParallel (gloo on CPU, nccl on CUDA), and
only rank 0 writes files.

The network runs in float32: bf16 autocast is not used because the Gaussian heads cast
atom positions to the features' dtype, which would round Gaussian centres to ~0.02 A.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import functools
import json
import math
import os
import pickle
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist

from .datasets import DensitySample, GridCache, near_nuclei, sample_probes
from .errors import FileFormatError, InvalidInputError, UnknownElementError
from .evaluate import evaluate, evaluate_points
from .gaussians import GaussianMixture
from .io._atomic import atomic_path
from .models.electra import ElectraDensityModel, default_config
from .properties.multipoles import DEBYE
from .nn.model import ElectraConfig, ElectraModel

__all__ = ["TrainConfig", "TrainResult", "WeightAverage", "model_config_for", "train", "grid_nmae", "probe_nmae", "dipole_error"]

CHECKPOINT, BEST, LOG, CONFIG = "checkpoint.pt", "best", "log.csv", "train_config.json"

#: Fields that may differ between a run and its resumption.
_RESUMABLE = frozenset({"epochs", "max_minutes", "max_steps", "checkpoint_every", "device", "monitor_train"})


@dataclass(frozen=True)
class TrainConfig:
    """Training hyperparameters; JSON-serialisable via :meth:`to_dict`.

    Parameters
    ----------
    epochs : int
        Passes over the training samples.
    batch_size : int
        Structures per optimiser step (per rank).
    lr, lr_decay : float
        Initial learning rate and its factor per epoch.
    weight_decay, clip_norm : float
        AdamW weight decay; largest gradient norm.
    loss : {"auto", "probe", "grid"}
        Training loss; "auto" is "grid" on CUDA and "probe" on the CPU.
    probes : int
        Probe points per structure and step (``loss="probe"``).
    uniform_fraction : float
        Share of probes drawn uniformly over the grid, the rest in proportion to |rho_ref|.
    seed : int
        Seeds the model initialisation, data order and probes.
    max_minutes, max_steps : float or int, optional
        Stop cleanly (checkpoint and best model saved) after this wall time or this
        many optimiser steps in total.
    checkpoint_every : int
        Optimiser steps between checkpoints.
    device : {"auto", "cpu", "cuda"}
        "auto" uses CUDA when available.
    dipole_weight : float, 1/(e * Angstrom)
        Weight of the dipole term of the loss (0: NMAE only).
    nuclear_weight : float
        Weight of the density at and around the nuclei (:func:`nuclear_error`; 0: off): 1
        counts each nucleus, and each of the distances from it that are probed, as one more
        point of the grid NMAE.
    monitor_train : int
        Training structures (a fixed seeded subset) whose full-grid NMAE is logged each epoch.
    ema : float
        Decay of the exponential moving average of the weights per optimiser step, in [0, 1);
        0 turns it off. 0.999 averages over about the last thousand steps.
    train_elements : tuple of int
        Train only the parameters that belong to these elements alone (their embedding
        columns and Gaussian head rows, :meth:`ElectraModel.element_masks
        <ase_electra.nn.model.ElectraModel.element_masks>`), without weight decay; every
        other parameter stays as it is, so structures without these elements predict
        exactly as before. Empty (the default): train every parameter.
    train_core_only : bool
        With ``train_elements``: only their core Gaussians' widths and weights train
        (for instance to fit the density at their nuclei with ``nuclear_weight``).
    """

    epochs: int = 100
    batch_size: int = 1
    lr: float = 1e-3
    lr_decay: float = 0.9
    weight_decay: float = 0.01
    clip_norm: float = 1.0
    loss: Literal["auto", "probe", "grid"] = "auto"
    probes: int = 4096
    uniform_fraction: float = 0.25
    seed: int = 0
    max_minutes: float | None = None
    max_steps: int | None = None
    checkpoint_every: int = 100
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dipole_weight: float = 0.0
    nuclear_weight: float = 0.0
    monitor_train: int = 32
    ema: float = 0.0
    train_elements: tuple[int, ...] = ()
    train_core_only: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "train_elements", tuple(sorted(int(z) for z in self.train_elements)))
        rules = {
            "epochs": (self.epochs >= 1, ">= 1"),
            "batch_size": (self.batch_size >= 1, ">= 1"),
            "lr": (self.lr > 0, "> 0"),
            "lr_decay": (0 < self.lr_decay <= 1, "in (0, 1]"),
            "weight_decay": (self.weight_decay >= 0, ">= 0"),
            "clip_norm": (self.clip_norm > 0, "> 0"),
            "loss": (self.loss in ("auto", "probe", "grid"), "'auto', 'probe' or 'grid'"),
            "probes": (self.probes >= 1, ">= 1"),
            "uniform_fraction": (0 < self.uniform_fraction <= 1, "in (0, 1]"),
            "max_minutes": (self.max_minutes is None or self.max_minutes > 0, "> 0"),
            "max_steps": (self.max_steps is None or self.max_steps >= 1, ">= 1"),
            "checkpoint_every": (self.checkpoint_every >= 1, ">= 1"),
            "device": (self.device in ("auto", "cpu", "cuda"), "'auto', 'cpu' or 'cuda'"),
            "dipole_weight": (self.dipole_weight >= 0, ">= 0"),
            "nuclear_weight": (self.nuclear_weight >= 0, ">= 0"),
            "monitor_train": (self.monitor_train >= 0, ">= 0"),
            "ema": (0 <= self.ema < 1, "in [0, 1)"),
            "train_core_only": (not self.train_core_only or bool(self.train_elements), "False without train_elements"),
        }
        for name, (ok, expected) in rules.items():
            if not ok:
                raise InvalidInputError(f"{name}: expected {expected}, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise InvalidInputError(f"train config: unknown fields {unknown}")
        return cls(**dict(data))


@dataclass(frozen=True)
class TrainResult:
    """What a call to :func:`train` did.

    ``best_val_nmae`` is a fraction; ``epochs`` counts completed epochs and ``steps``
    optimiser steps, both over the run's whole life; ``stopped`` is "time" or "steps"
    for an early stop, None when all epochs ran; ``model`` is the final model (the best
    one is in ``run_dir/best``).
    """

    best_val_nmae: float
    epochs: int
    steps: int
    seconds: float
    stopped: str | None
    model: ElectraDensityModel


class WeightAverage:
    """Exponential moving average of a module's floating-point parameters.

    After each optimiser step, :meth:`update` sets a_t = decay a_{t-1} + (1 - decay) w_t,
    starting from the weights at construction. :meth:`swapped` puts the averages into the
    module for a ``with`` block (validation, saving) and restores the trained weights after.
    """

    def __init__(self, module: torch.nn.Module, decay: float) -> None:
        if not 0 <= decay < 1:
            raise InvalidInputError(f"weight average decay: expected in [0, 1), got {decay}")
        self.decay = decay
        self.params = [p for p in module.parameters() if p.is_floating_point()]
        self.averages = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        """Fold the module's current weights into the averages."""
        for a, p in zip(self.averages, self.params):
            a.lerp_(p.detach(), 1.0 - self.decay)

    @torch.no_grad()
    def apply(self) -> None:
        """Put the averages into the module for good."""
        for p, a in zip(self.params, self.averages):
            p.copy_(a)

    @contextlib.contextmanager
    def swapped(self):
        """The module holds the averaged weights inside the block, its own ones after."""
        trained = [p.detach().clone() for p in self.params]
        self.apply()
        try:
            yield
        finally:
            with torch.no_grad():
                for p, t in zip(self.params, trained):
                    p.copy_(t)

    def state_dict(self) -> list[torch.Tensor]:
        return [a.detach().cpu() for a in self.averages]

    def load_state_dict(self, state: list[torch.Tensor]) -> None:
        if len(state) != len(self.averages):
            raise InvalidInputError(f"weight average: {len(state)} tensors for {len(self.averages)} parameters")
        for a, saved in zip(self.averages, state):
            a.copy_(saved)


def model_config_for(samples: list[DensitySample], overrides: Mapping[str, Any] | None = None) -> ElectraConfig:
    """The model configuration for ``samples``: their elements, other fields from ``overrides``.

    ``overrides`` is either keyword arguments of :func:`default_config` (config fields and
    Gaussian counts, e.g. ``{"channels": 64, "floating_heavy": 32}``), or a full config dict
    with ``elements`` (such as a saved model's ``config.json``) covering the samples' elements.
    """
    elements = tuple(sorted({int(z) for s in samples for z in s.atoms.numbers}))
    overrides = {} if overrides is None else overrides
    if not isinstance(overrides, Mapping):
        raise InvalidInputError(f"model config: expected a mapping of settings, got {type(overrides).__name__}")
    try:
        if "elements" not in overrides:
            return default_config(elements=elements, **overrides)
        config = ElectraConfig.from_dict(overrides)
    except (TypeError, ValueError) as err:
        raise InvalidInputError(f"model config: {err}") from None
    missing = sorted(set(elements) - set(config.elements))
    if missing:
        raise UnknownElementError(f"model config: lacks elements {missing} of the training data")
    return config


# ---------------------------------------------------------------------- losses
def grid_nmae(mixture: GaussianMixture, sample: DensitySample, values: np.ndarray) -> torch.Tensor:
    """Full-grid NMAE of one structure's mixture against ``values`` (``sample.grid.shape``), a 0-d tensor."""
    pred = evaluate(mixture, sample.grid)  # (nx, ny, nz), e/A^3
    ref = torch.from_numpy(np.array(values)).to(device=pred.device, dtype=pred.dtype)
    return (pred - ref).abs().sum() / ref.abs().sum()


def probe_nmae(
    mixture: GaussianMixture,
    sample: DensitySample,
    values: np.ndarray,
    n: int,
    rng: np.random.Generator,
    uniform_fraction: float,
) -> torch.Tensor:
    """Unbiased estimate of :func:`grid_nmae` from ``n`` importance-sampled probe points."""
    probes = sample_probes(values, sample.grid, n, rng, uniform_fraction)
    pbc = sample.grid.pbc
    cell = np.array(sample.grid.cell) if any(pbc) else None  # a writable copy for torch
    pred = evaluate_points(mixture, probes.points, cell=cell, pbc=pbc)  # (P,)
    ref = torch.as_tensor(probes.reference, dtype=pred.dtype, device=pred.device)
    weights = torch.as_tensor(probes.weights, dtype=pred.dtype, device=pred.device)
    return (weights * (pred - ref).abs()).sum() / probes.total


def dipole_error(mixture: GaussianMixture, sample: DensitySample, reference: np.ndarray) -> torch.Tensor:
    """|p_pred - p_ref| of one structure, e * Angstrom, a 0-d tensor: the mixture's analytic
    dipole (nuclei minus :meth:`GaussianMixture.first_moments`) against ``reference`` (3,)."""
    atoms = sample.atoms
    nuclei = torch.as_tensor(atoms.numbers @ atoms.positions, dtype=mixture.dtype, device=mixture.device)
    target = torch.as_tensor(reference, dtype=mixture.dtype, device=mixture.device)
    return torch.linalg.norm(nuclei - mixture.first_moments()[0] - target)


def nuclear_error(mixture: GaussianMixture, sample: DensitySample, reference: np.ndarray, total: float) -> torch.Tensor:
    """sum_j v_j |rho_pred(r_j) - rho_ref(r_j)| / ``total`` over the points r_j and weights v_j of
    :func:`~ase_electra.datasets.near_nuclei` of one structure, a 0-d tensor: ``reference`` (N * M,) the
    exact density there and ``total`` sum |rho_ref| over the grid, e/Angstrom^3."""
    points, weights = near_nuclei(sample.atoms.positions)
    pred = evaluate_points(mixture, points)  # (N * M,)
    target = torch.as_tensor(reference, dtype=pred.dtype, device=pred.device)
    weights = torch.as_tensor(weights, dtype=pred.dtype, device=pred.device)
    return (weights * (pred - target).abs()).sum() / total


# ---------------------------------------------------------------------- processes
@dataclass(frozen=True)
class _Ranks:
    """This process's place in a (possibly one-process) distributed run."""

    rank: int
    world: int
    device: torch.device
    owns_group: bool

    @classmethod
    def start(cls, device: str) -> _Ranks:
        cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
        if cuda and not torch.cuda.is_available():
            raise InvalidInputError("device: CUDA requested but not available")
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls(0, 1, torch.device("cuda" if cuda else "cpu"), False)
        local = int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")))
        torch_device = torch.device("cuda", local) if cuda else torch.device("cpu")
        if cuda:
            torch.cuda.set_device(torch_device)
        owns = not dist.is_initialized()
        if owns:
            dist.init_process_group("nccl" if cuda else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), torch_device, owns)

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over ranks."""
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def stop(self) -> None:
        if self.owns_group:
            dist.destroy_process_group()


@dataclass
class _Progress:
    """Where a run stands; saved in checkpoints."""

    epoch: int = 0  # current epoch
    batch: int = 0  # next batch of the current epoch
    step: int = 0  # optimiser steps so far
    best: float = math.inf  # lowest validation NMAE so far
    loss_sum: float = 0.0  # training loss summed over this epoch's steps (this rank)
    loss_count: int = 0
    epoch_seconds: float = 0.0


def _batches(n: int, batch_size: int, seed: int, epoch: int, ranks: _Ranks) -> list[np.ndarray]:
    """Sample indices of each batch of this rank in ``epoch``: equal shards of a seeded permutation."""
    order = np.random.default_rng([seed, epoch]).permutation(n)
    shard = order[: n - n % ranks.world][ranks.rank :: ranks.world]
    return [shard[i : i + batch_size] for i in range(0, len(shard), batch_size)]


# ---------------------------------------------------------------------- training
def train(
    train_samples: list[DensitySample],
    val_samples: list[DensitySample],
    run_dir: str | Path,
    config: TrainConfig = TrainConfig(),
    *,
    model_config: ElectraConfig | None = None,
    cache: GridCache | None = None,
    resume: bool = False,
    init: ElectraDensityModel | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train an ELECTRA model; see the module docstring for the run folder.

    Parameters
    ----------
    train_samples, val_samples : list of DensitySample
        Training and validation structures (validation: full-grid NMAE after every epoch).
    run_dir : path
        Run folder; must not hold a checkpoint unless ``resume``.
    config : TrainConfig
    model_config : ElectraConfig, optional
        Default :func:`model_config_for` the samples; a resumed run keeps its own.
    cache : GridCache, optional
        Reference grids; default ``run_dir/../cache``.
    resume : bool
        Continue from ``run_dir/checkpoint.pt``.
    init : ElectraDensityModel, optional
        Fine-tune: start from a copy of this trained model's weights and configuration
        (its elements must cover the samples': :meth:`ElectraDensityModel.grown` adds
        missing ones, as ``electra-train --init`` does); excludes ``model_config``. A resumed
        fine-tuning run needs no ``init`` again: the checkpoint holds the weights.
    progress : bool
        Show tqdm bars on stderr (rank 0).
    """
    start = time.monotonic()
    if not train_samples or not val_samples:
        raise InvalidInputError("training and validation samples: expected at least one of each")
    if init is not None:
        if model_config is not None:
            raise InvalidInputError("model config: a fine-tuned model keeps the configuration of its init model")
        missing = sorted({int(z) for s in train_samples + val_samples for z in s.atoms.numbers} - init.elements)
        if missing:
            raise UnknownElementError(
                f"init model {init.name!r}: lacks elements {missing} of the training data; add them with "
                "init.grown(elements)"
            )
    ranks = _Ranks.start(config.device)
    try:
        run = _Run(train_samples, val_samples, Path(run_dir), config, model_config, cache, resume, progress, ranks,
                   init)
        stopped = run.loop(deadline=None if config.max_minutes is None else start + 60 * config.max_minutes)
        ranks.barrier()
        p = run.progress
        return TrainResult(p.best, p.epoch, p.step, time.monotonic() - start, stopped, run.finish())
    finally:
        ranks.stop()


class _Run:
    """One training run on one rank: model, optimiser, progress, and the loop."""

    def __init__(self, train_samples, val_samples, run_dir, config, model_config, cache, resume, progress, ranks,
                 init):
        from tqdm import tqdm

        if len(train_samples) < ranks.world:
            raise InvalidInputError(f"{len(train_samples)} training samples for {ranks.world} processes")
        self.train_samples, self.val_samples, self.run_dir = train_samples, val_samples, run_dir
        self.config, self.ranks, self.writer = config, ranks, ranks.rank == 0
        self.bar = functools.partial(tqdm, disable=not progress or not self.writer, file=sys.stderr, dynamic_ncols=True)
        self.cache = GridCache(run_dir.parent / "cache") if cache is None else cache
        self.loss = config.loss if config.loss != "auto" else ("grid" if ranks.device.type == "cuda" else "probe")
        self.names = [s.name for s in train_samples]
        chosen = np.random.default_rng([config.seed, 1]).permutation(len(train_samples))[: config.monitor_train]
        self.monitored = [train_samples[i] for i in sorted(chosen)]
        self.dipoles: dict[str, np.ndarray | None] = {}
        self.nuclear: dict[str, tuple[np.ndarray, float] | None] = {}
        if self.writer:
            run_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            self.restore(model_config)
        else:
            if (run_dir / CHECKPOINT).exists():
                raise InvalidInputError(f"{run_dir / CHECKPOINT}: a run exists here; resume it or use another folder")
            if init is not None:
                module = copy.deepcopy(init.module).float()
                self.model = ElectraDensityModel(module, device=ranks.device)
            else:
                model_config = model_config or model_config_for(train_samples + val_samples)
                self.model = ElectraDensityModel.new(model_config, device=ranks.device, seed=config.seed)
            self.optimizer, self.scheduler = _optimiser(self.model, config)
            self.average = _average(self.model, config)
            self.progress = _Progress()
            if self.writer:
                (run_dir / CONFIG).write_text(json.dumps(config.to_dict(), indent=2) + "\n")
                _append_log(run_dir, None)
        self.net = self.model.module
        if ranks.world > 1:
            device_ids = [ranks.device.index] if ranks.device.type == "cuda" else None
            self.net = torch.nn.parallel.DistributedDataParallel(self.net, device_ids=device_ids)
        mine = (train_samples + val_samples)[ranks.rank :: ranks.world]
        for sample in self.bar(mine, desc="reference grids", unit="grid", leave=False):
            self.cache.values(sample)
        ranks.barrier()

    def loop(self, deadline: float | None) -> str | None:
        """Train until the last epoch, ``max_steps`` or ``deadline``; returns the stop reason."""
        p = self.progress
        val = p.best
        while p.epoch < self.config.epochs:
            stopped, complete = self.epoch(deadline, val)
            if stopped is not None and not complete:
                improved = not math.isfinite(p.best)  # a stopped run still leaves a best model
                if improved:
                    p.best = self.validate(self.val_samples)[0]
                self.save(improved)
                return stopped
            t0 = time.monotonic()
            val, val_dipole = self.validate(self.val_samples)
            train_nmae = self.validate(self.monitored)[0] if self.monitored else math.nan
            p.epoch_seconds += time.monotonic() - t0
            improved, p.best = val < p.best, min(p.best, val)
            loss_sum, loss_count = self.ranks.sum([p.loss_sum, float(p.loss_count)])
            row = (p.epoch + 1, p.step, loss_sum / loss_count, train_nmae, val, val_dipole / DEBYE,
                   self.scheduler.get_last_lr()[0], p.epoch_seconds)  # fmt: skip
            self.scheduler.step()
            p.epoch, p.batch, p.loss_sum, p.loss_count, p.epoch_seconds = p.epoch + 1, 0, 0.0, 0, 0.0
            if self.writer:
                _append_log(self.run_dir, row)
            self.save(improved)
            if stopped is not None:  # the limit fell on the epoch's last step: it was closed as any other
                return stopped
        return None

    def epoch(self, deadline: float | None, val: float) -> tuple[str | None, bool]:
        """Run the rest of the current epoch; returns the stop reason (None if none) and whether
        the epoch ran to its end."""
        config, p, ranks = self.config, self.progress, self.ranks
        batches = _batches(len(self.train_samples), config.batch_size, config.seed, p.epoch, ranks)
        with self.bar(total=len(batches), initial=p.batch, desc=f"epoch {p.epoch + 1}/{config.epochs}",
                      unit="step") as bar:
            while p.batch < len(batches):
                batch = [self.train_samples[i] for i in batches[p.batch]]
                rng = np.random.default_rng([config.seed, p.epoch, p.batch, ranks.rank])
                t0 = time.monotonic()
                loss = self.step(batch, rng)
                seconds = time.monotonic() - t0
                p.step, p.batch, p.epoch_seconds = p.step + 1, p.batch + 1, p.epoch_seconds + seconds
                p.loss_sum, p.loss_count = p.loss_sum + loss, p.loss_count + 1
                bar.update()
                bar.set_postfix(loss=f"{p.loss_sum / p.loss_count:.4f}", val=f"{val:.4f}",
                                structures_s=f"{len(batch) * ranks.world / seconds:.2f}")
                stopped = None
                if config.max_steps is not None and p.step >= config.max_steps:
                    stopped = "steps"
                elif deadline is not None and time.monotonic() > deadline:
                    stopped = "time"
                if ranks.sum([float(stopped is not None)])[0] > 0:  # all ranks stop at the same step
                    return stopped or "time", p.batch == len(batches)
                if p.step % config.checkpoint_every == 0:
                    self.save(False)
        return None, True

    def step(self, batch: list[DensitySample], rng: np.random.Generator) -> float:
        """One optimiser step on ``batch``; returns the batch's loss."""
        config = self.config
        mixtures = self.net(self.model.graph([s.atoms for s in batch])).split()
        losses = []
        for mixture, sample in zip(mixtures, batch):
            values = self.cache.values(sample)
            if self.loss == "grid":
                loss = grid_nmae(mixture, sample, values)
            else:
                loss = probe_nmae(mixture, sample, values, config.probes, rng, config.uniform_fraction)
            reference = self.dipole(sample) if config.dipole_weight > 0 else None
            if reference is not None:
                loss = loss + config.dipole_weight * dipole_error(mixture, sample, reference)
            nuclei = self.nuclei(sample, values) if config.nuclear_weight > 0 else None
            if nuclei is not None:
                loss = loss + config.nuclear_weight * nuclear_error(mixture, sample, *nuclei)
            losses.append(loss)
        loss = torch.stack(losses).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.module.parameters(), config.clip_norm)
        self.optimizer.step()
        if self.average is not None:
            self.average.update()
        return float(loss.detach())

    def dipole(self, sample: DensitySample) -> np.ndarray | None:
        """The exact reference dipole of ``sample`` (e * Angstrom), computed once; None if unknown."""
        if sample.name not in self.dipoles:
            self.dipoles[sample.name] = None if sample.reference_dipole is None else sample.reference_dipole()
        return self.dipoles[sample.name]

    def nuclei(self, sample: DensitySample, values: np.ndarray) -> tuple[np.ndarray, float] | None:
        """(exact density at the nuclei, sum |rho_ref| over the grid) of ``sample``, computed once; None if unknown."""
        if sample.name not in self.nuclear:
            known = sample.reference_nuclei is not None
            self.nuclear[sample.name] = (sample.reference_nuclei(), float(np.abs(values).sum())) if known else None
        return self.nuclear[sample.name]

    def validate(self, samples: list[DensitySample]) -> tuple[float, float]:
        """Mean full-grid NMAE and mean dipole error (e * Angstrom; NaN if no sample has a
        reference dipole) over ``samples`` (all ranks)."""
        shard = samples[self.ranks.rank :: self.ranks.world]
        module = self.model.module
        module.eval()
        nmae = dipole = dipoles = 0.0
        with torch.no_grad(), self.averaged():
            for s in shard:
                mixture = module(self.model.graph([s.atoms]))
                nmae += grid_nmae(mixture, s, self.cache.values(s)).item()
                reference = self.dipole(s)
                if reference is not None:
                    dipole, dipoles = dipole + dipole_error(mixture, s, reference).item(), dipoles + 1
        module.train()
        nmae, count, dipole, dipoles = self.ranks.sum([nmae, float(len(shard)), dipole, dipoles])
        return nmae / count, dipole / dipoles if dipoles else math.nan

    def averaged(self):
        """Context in which the model holds the averaged weights (a no-op without ``ema``)."""
        return contextlib.nullcontext() if self.average is None else self.average.swapped()

    def finish(self) -> ElectraDensityModel:
        """The model to return: with ``ema``, its weights become the averages for good."""
        if self.average is not None:
            self.average.apply()
        return self.model

    def save(self, best: bool) -> None:
        """Write the checkpoint, and the model to ``best/`` if ``best`` (rank 0 only)."""
        if not self.writer:
            return
        if best:
            with self.averaged():
                self.model.save(self.run_dir / BEST)
        state = {
            "model": self.model.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "progress": dataclasses.asdict(self.progress),
            "train_config": self.config.to_dict(),
            "model_config": self.model.config.to_dict(),
            "samples": self.names,
            "ema": [] if self.average is None else self.average.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
        }
        with atomic_path(self.run_dir / CHECKPOINT) as tmp:
            torch.save(state, tmp)

    def restore(self, model_config: ElectraConfig | None) -> None:
        """Model, optimiser, scheduler, progress and RNG from the checkpoint, checked against the request."""
        path = self.run_dir / CHECKPOINT
        if not path.is_file():
            raise FileFormatError(f"{path}: no checkpoint to resume from")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as err:
            raise FileFormatError(f"{path}: not a readable checkpoint ({type(err).__name__})") from None
        try:
            saved_model = ElectraConfig.from_dict(state["model_config"])
            saved = TrainConfig.from_dict(state["train_config"]).to_dict()
        except (KeyError, TypeError, ValueError) as err:
            raise FileFormatError(f"{path}: invalid checkpoint ({type(err).__name__}: {err})") from None
        changed = sorted(k for k, v in self.config.to_dict().items() if k not in _RESUMABLE and saved[k] != v)
        if changed:
            raise InvalidInputError(f"{path}: cannot resume with changed settings {changed}")
        if model_config is not None and model_config != saved_model:
            raise InvalidInputError(f"{path}: cannot resume with a different model configuration")
        if state["samples"] != self.names:
            raise InvalidInputError(f"{path}: the training samples differ from those of the checkpoint")
        self.model = ElectraDensityModel(ElectraModel(saved_model), device=self.ranks.device)
        self.model.module.load_state_dict(state["model"])
        self.optimizer, self.scheduler = _optimiser(self.model, self.config)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.average = _average(self.model, self.config)
        if self.average is not None:
            self.average.load_state_dict(state.get("ema", []))
        self.progress = _Progress(**state["progress"])
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])


def _optimiser(model: ElectraDensityModel, config: TrainConfig):
    """AdamW (amsgrad) and its per-epoch exponential learning-rate decay.

    With ``config.train_elements`` it sees only the parameters holding entries of those
    elements (only their core rows with ``train_core_only``; the others stop requiring
    gradients), their other entries' gradients are masked to zero and weight decay is off:
    AdamW then leaves those entries exactly as they are (zero first moment, zero update).
    """
    params = list(model.module.parameters())
    weight_decay = config.weight_decay
    if config.train_elements:
        masks = model.module.element_masks(config.train_elements, config.train_core_only)
        named = dict(model.module.named_parameters())
        params = [named[name] for name in masks]
        for name, param in named.items():
            param.requires_grad_(name in masks)
        for name, mask in masks.items():
            named[name].register_hook(lambda grad, mask=mask: grad * mask)
        weight_decay = 0.0
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=weight_decay, amsgrad=True)
    return optimizer, torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=config.lr_decay)


def _average(model: ElectraDensityModel, config: TrainConfig) -> WeightAverage | None:
    """The run's weight average, None without ``config.ema``."""
    return WeightAverage(model.module, config.ema) if config.ema > 0 else None


def _append_log(run_dir: Path, row: tuple | None) -> None:
    """Start ``log.csv`` with its header (``row`` None) or append one epoch's row."""
    with open(run_dir / LOG, "w" if row is None else "a", newline="") as fh:
        if row is None:
            csv.writer(fh).writerow(
                ["epoch", "step", "train_loss", "train_nmae", "val_nmae", "val_dipole_debye", "lr", "seconds"]
            )
        else:
            epoch, step, *values, seconds = row
            csv.writer(fh).writerow([epoch, step, *(f"{v:.6g}" for v in values), f"{seconds:.1f}"])
