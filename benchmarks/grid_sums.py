"""Grid sums of point- and voxel-sampled densities against the electron count.

    NUMBA_NUM_THREADS=1 python benchmarks/grid_sums.py

Three tables, all on 0.1 Angstrom grids:

1. The widening that voxel sampling applies (``ase_electra.evaluate._voxel``), for each
   smallest index-space variance c: the worst and mean relative error of the grid sum of
   one 0.005 Angstrom Gaussian at 200 random centres, on a cubic and on a skewed periodic
   cell. This chose c = 0.5.
2. Molecules with the shipped default model (box with 4 Angstrom margin): grid sum times
   voxel volume, point and voxel sampling.
3. Crystals with the promolecule, written as CHGCAR and read back by pymatgen (sum of
   ``data['total']`` over the number of points, pymatgen's convention), as users do.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from ase.build import bulk, molecule

from ase_electra import GaussianMixture, Grid
from ase_electra.evaluate import evaluate
from ase_electra.evaluate._voxel import voxel_spread
from ase_electra.io import write_density
from ase_electra.models import load_model
from ase_electra.predict import grid_for, predict_densities

SPREADS = (1 / 12, 0.25, 0.35, 0.4, 0.45, 0.5, 0.6)
CELLS = {
    "cubic": np.eye(3) * 2.0,
    "skewed": np.array([[2.0, 0.0, 0.0], [0.9, 1.8, 0.0], [-0.5, 0.6, 2.1]]),
}


def spread_errors(cell: np.ndarray, spread: float, centres: np.ndarray) -> np.ndarray:
    """|grid sum x voxel volume - 1| of a unit 0.005 A Gaussian at each centre (P, 3), A, widened to ``spread``."""
    grid = Grid(cell, (20, 20, 20), pbc=(True, True, True))
    errors = []
    for centre in centres:
        one = GaussianMixture(torch.ones(1, dtype=torch.float64), torch.tensor(centre)[None],
                              0.005 * torch.eye(3, dtype=torch.float64)[None])
        total = evaluate(voxel_spread(one, grid, spread), grid, tolerance=0.0).sum().item() * grid.voxel_volume
        errors.append(abs(total - 1.0))
    return np.array(errors)


def main() -> None:
    rng = np.random.default_rng(0)
    print("1. grid-sum error of a 0.005 A Gaussian widened to index-space variance c (200 random centres)")
    for name, cell in CELLS.items():
        centres = rng.random((200, 3)) @ cell
        cells = [spread_errors(cell, c, centres) for c in SPREADS]
        print(f"  {name:7} " + " | ".join(f"c={c:.3f}: max {e.max():.1e} mean {e.mean():.1e}"
                                        for c, e in zip(SPREADS, cells)), flush=True)
    print("2. molecules, default model: grid sum x voxel volume, e")
    model = load_model("default")
    for name in ("H2O", "CO2", "CH3CH2OH"):
        atoms = molecule(name)
        grid = grid_for(atoms, 0.1, 4.0)
        sums = [predict_densities(model, [atoms], [grid], sampling=s)[0].values.sum() * grid.voxel_volume
                for s in ("point", "voxel")]
        print(f"  {name:9} ({int(atoms.numbers.sum())} e): point {sums[0]:.3f}, voxel {sums[1]:.4f}", flush=True)
    print("3. crystals, promolecule, CHGCAR read by pymatgen: electrons")
    from pymatgen.io.vasp import Chgcar

    promolecule = load_model("promolecule")
    crystals = {"Si": bulk("Si"), "NaCl": bulk("NaCl", "rocksalt", a=5.64), "Al": bulk("Al")}
    with tempfile.TemporaryDirectory() as tmp:
        for name, atoms in crystals.items():
            grid = grid_for(atoms, 0.1, 4.0)
            counts = []
            for sampling in ("point", "voxel"):
                (density,) = predict_densities(promolecule, [atoms], [grid], sampling=sampling)
                path = Path(tmp) / f"{name}_{sampling}.chgcar"
                write_density(path, density, format="chgcar")
                total = Chgcar.from_file(str(path)).data["total"]
                counts.append(total.sum() / total.size)
            print(f"  {name:9} ({int(atoms.numbers.sum())} e): point {counts[0]:.3f}, voxel {counts[1]:.4f}", flush=True)


if __name__ == "__main__":
    main()
