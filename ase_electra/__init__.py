"""ase-electra: machine-learned electron densities as Gaussian mixtures on grids.

Data flows Atoms -> model -> :class:`GaussianMixture` -> :func:`evaluate` on a
:class:`Grid` -> :class:`Density` -> file (``ase_electra.io``). Units inside the package
are Angstrom and electrons per cubic Angstrom.
"""

from .density import Density
from .errors import (
    ElectraError,
    FileFormatError,
    GridTooLargeError,
    InvalidInputError,
    UnknownElementError,
)
from .evaluate import evaluate, evaluate_points
from .gaussians import GaussianMixture
from .grid import Grid

__all__ = [
    "Density",
    "ElectraError",
    "FileFormatError",
    "GaussianMixture",
    "Grid",
    "GridTooLargeError",
    "InvalidInputError",
    "UnknownElementError",
    "evaluate",
    "evaluate_points",
]

__version__ = "0.1.0"
