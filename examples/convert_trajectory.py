"""Turn a short trajectory into one cube file per frame with the electra-density library function.

    python examples/convert_trajectory.py OUT [--frames 4] [--png]

Makes an MD-like trajectory of ethanol (atoms oscillating about equilibrium along a
random mass-weighted displacement, like one vibrational mode), writes it as
OUT/ethanol_md.xyz, then converts it exactly as
``electra-density OUT/ethanol_md.xyz -o OUT/densities --spacing 0.25 --margin 3``
would: OUT/densities/ethanol_md_<frame>.cube (and .png pictures with --png). The grid is
coarse (0.25 Angstrom) to keep this fast; use 0.1 for real work. Rerunning skips the
frames already written.
"""

import argparse
from pathlib import Path

import numpy as np
from ase.build import molecule
from ase.io import write

from ase_electra.convert import convert
from ase_electra.models import load_model


def trajectory(n_frames: int, amplitude: float = 0.08, seed: int = 0) -> list:
    """Ethanol frames over one period of an oscillation along a random mass-weighted direction (Angstrom)."""
    atoms = molecule("CH3CH2OH")
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=atoms.positions.shape) / np.sqrt(atoms.get_masses())[:, None]
    direction -= direction.mean(0)  # no overall drift
    direction *= amplitude / np.abs(direction).max()  # largest displacement: amplitude
    frames = []
    for t in np.linspace(0.0, 2 * np.pi, n_frames, endpoint=False):
        frame = atoms.copy()
        frame.positions += np.sin(t) * direction
        frames.append(frame)
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--model", default="promolecule", help="'default', 'promolecule' or a model folder")
    parser.add_argument("--png", action="store_true", help="also write a picture per frame")
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    traj = args.out / "ethanol_md.xyz"
    write(traj, trajectory(args.frames))  # extended xyz, all frames in one file

    summary = convert([traj], args.out / "densities", load_model(args.model), fmt="cube", spacing=0.25,
                      margin=3.0, batch_size=2, png=args.png)
    print(summary.line(args.out / "densities"))


if __name__ == "__main__":
    main()
