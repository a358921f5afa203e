"""ase-electra: machine-learned electron densities as Gaussian mixtures on grids.

Data flows Atoms -> model (``ase_electra.models``) -> :class:`GaussianMixture` ->
``ase_electra.evaluate.evaluate`` on a :class:`Grid` -> :class:`Density` -> file
(``ase_electra.io``). Units inside the package
are Angstrom and electrons per cubic Angstrom.

``GaussianMixture`` and ``ElectraCalculator`` need torch and are imported on first use,
so command-line ``--help`` and file tools start without loading torch.
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
    "ElectraCalculator",
    "ElectraError",
    "FileFormatError",
    "GaussianMixture",
    "Grid",
    "GridTooLargeError",
    "InvalidInputError",
    "UnknownElementError",
]

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "GaussianMixture":
        return import_module(".gaussians", __name__).GaussianMixture
    if name == "ElectraCalculator":
        return import_module(".calculator", __name__).ElectraCalculator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
