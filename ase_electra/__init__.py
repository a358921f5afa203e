"""ase-electra: machine-learned electron densities as Gaussian mixtures on grids.

Data flows Atoms -> model -> :class:`GaussianMixture` -> :func:`evaluate` on a
:class:`Grid` -> :class:`Density` -> file (``ase_electra.io``). Units inside the package
are Angstrom and electrons per cubic Angstrom.

Names that need torch are imported on first use, so command-line ``--help`` and file
tools start without loading torch.
"""

from importlib import import_module

from .density import Density
from .errors import (
    ElectraError,
    FileFormatError,
    GridTooLargeError,
    InvalidInputError,
    UnknownElementError,
)
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

_LAZY = {
    "GaussianMixture": ".gaussians",
    "evaluate": ".evaluate",
    "evaluate_points": ".evaluate",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
