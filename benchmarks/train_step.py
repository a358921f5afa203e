"""Seconds per optimiser step of CPU training, with the torch and the compiled (numba) evaluator.

    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python benchmarks/train_step.py
    python benchmarks/train_step.py --model-config '{"floating_heavy": 32, "floating_light": 8}'

One step is what ``electra-train`` does per structure with the probe loss (its CPU default):
the network predicts the mixture, ``--probes`` importance-sampled probe points are drawn
from the cached reference grid, the mixture is evaluated there, and the NMAE estimate is
back-propagated into the network and AdamW takes a step. The structure is the example
molecule (qm9_005128, 15 atoms) on its 0.1 Angstrom grid with 4 Angstrom margin; the
model is a fresh one of the shipped model's configuration unless ``--model-config``
overrides fields. Stages are timed separately; the first ``--warmup`` steps (numba's
kernel loading) are not counted. Both evaluators run the same steps from the same seed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ase_electra.datasets import GridCache, find_samples, sample_probes
from ase_electra.evaluate import evaluate_points
from ase_electra.models.electra import ElectraDensityModel, default_config

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "weights" / "default" / "config.json"
STAGES = ("network", "probes", "evaluate", "backward+step")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--probes", type=int, default=4096)
    parser.add_argument("--model-config", default="{}", help="JSON object of config fields to override")
    args = parser.parse_args(argv)
    sample = find_samples(ROOT / "examples" / "data")[0]
    with tempfile.TemporaryDirectory() as folder:
        values = np.array(GridCache(folder).values(sample))
    shipped = json.loads(SHIPPED.read_text())
    counts = {"floating_heavy": max(shipped["n_floating"]), "floating_light": min(shipped["n_floating"])}
    fields = {k: v for k, v in shipped.items() if k not in ("elements", "n_core", "n_floating")}
    config = default_config(elements=tuple(shipped["elements"]), **{**fields, **counts, **json.loads(args.model_config)})
    print(f"torch {torch.__version__}, {torch.get_num_threads()} torch threads; {sample.name}, {args.probes} probes, "
          f"{args.steps} timed steps after {args.warmup}; config overrides {json.dumps(json.loads(args.model_config))}")
    print(f"{'evaluator':9} {'gaussians':>9} {'parameters':>10} " + " ".join(f"{s:>13}" for s in STAGES)
          + f" {'s/step':>8}")
    for backend in ("torch", "numba"):
        model = ElectraDensityModel.new(config, seed=0)
        net = model.module
        optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, amsgrad=True)
        rng = np.random.default_rng(0)
        times: list[tuple[float, ...]] = []
        for step in range(args.warmup + args.steps):
            t0 = time.perf_counter()
            mixture = net(model.graph([sample.atoms])).split()[0]
            t1 = time.perf_counter()
            probes = sample_probes(values, sample.grid, args.probes, rng)
            t2 = time.perf_counter()
            pred = evaluate_points(mixture, probes.points, backend=backend)
            weights = torch.as_tensor(probes.weights, dtype=pred.dtype)
            loss = (weights * (pred - torch.as_tensor(probes.reference, dtype=pred.dtype)).abs()).sum() / probes.total
            t3 = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimizer.step()
            t4 = time.perf_counter()
            if step >= args.warmup:
                times.append((t1 - t0, t2 - t1, t3 - t2, t4 - t3))
        medians = [statistics.median(column) for column in zip(*times)]
        n_params = sum(p.numel() for p in net.parameters())
        print(f"{backend:9} {mixture.n_gaussians:9d} {n_params:10,d} " + " ".join(f"{m:13.4f}" for m in medians)
              + f" {sum(medians):8.4f}")


if __name__ == "__main__":
    main()
