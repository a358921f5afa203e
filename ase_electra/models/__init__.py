"""Density models: anything that maps structures to a :class:`GaussianMixture`.

:func:`load_model` turns a name or path into a model; every command and the
calculator go through it, so a new model slots in here.
"""

from .base import DensityModel, load_model

__all__ = ["DensityModel", "load_model"]
