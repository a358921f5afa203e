"""Train a tiny ELECTRA model for a few steps on the bundled reference record, then predict with it.

    python examples/train_tiny.py OUT [--epochs 10]

A demonstration of the training API, not a useful model: one molecule
(examples/data/qm9_005128.npz, PBE/def2-SVP, needs PySCF) serves for training and
validation alike, on a coarse 0.3 Angstrom grid, with a network of 8 channels and one
layer. Writes OUT/run (the run folder: train_config.json, checkpoint.pt, log.csv and the
best model in OUT/run/best) and OUT/qm9_005128.cube predicted by the trained model. Real
training: electra-train DATA -o RUN on a folder of records (see electra-train --help).
"""

import argparse
from pathlib import Path

from ase.io import read

from ase_electra import ElectraCalculator
from ase_electra.datasets import GridCache, find_samples
from ase_electra.io import write_density
from ase_electra.models import load_model
from ase_electra.train import TrainConfig, grid_nmae, model_config_for, train

DATA = Path(__file__).resolve().parent / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument("--epochs", type=int, default=10, help="one optimiser step per epoch here")
    args = parser.parse_args()

    # Reference records (*.npz) in the folder, each with a box grid of 0.3 A spacing, 3 A margin.
    samples = find_samples(DATA, spacing=0.3, margin=3.0)
    cache = GridCache(args.out / "cache")  # reference densities on those grids, computed once

    # A tiny network for the samples' elements; 2048 probe points per step estimate the NMAE loss.
    model_config = model_config_for(samples, {"channels": 8, "layers": 1, "floating_heavy": 4, "floating_light": 2})
    config = TrainConfig(epochs=args.epochs, lr=5e-3, loss="probe", probes=2048, device="cpu")
    run = args.out / "run"
    result = train(samples, samples, run, config, model_config=model_config, cache=cache, progress=False,
                   resume=(run / "checkpoint.pt").exists())  # a rerun continues the same run

    # The starting point every model is measured against: the promolecule, on the same grid.
    sample = samples[0]
    baseline = grid_nmae(load_model("promolecule").predict([sample.atoms]), sample, cache.values(sample))
    print(f"{result.steps} steps in {result.seconds:.1f} s: full-grid NMAE {100 * result.best_val_nmae:.2f} % "
          f"(promolecule {100 * float(baseline):.2f} %)")

    # Predict with the trained model: a run folder loads its best model.
    atoms = read(DATA / "qm9_005128.xyz")
    atoms.calc = ElectraCalculator(model=run, device="cpu", spacing=0.3, margin=3.0)
    write_density(args.out / "qm9_005128.cube", atoms.calc.get_density(atoms))
    print(f"{atoms.calc.get_number_of_electrons():.3f} electrons -> {args.out / 'qm9_005128.cube'}")


if __name__ == "__main__":
    main()
