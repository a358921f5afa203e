"""Network building blocks: radial basis, Cartesian tensor layers, symmetry breaking, heads, model."""

from .heads import GaussianHeads
from .model import ElectraConfig, ElectraModel
from .radial import RadialBasis
from .symmetry import Debias, frame_features
from .tensors import TensorBlock, TensorFeatures

__all__ = [
    "Debias",
    "ElectraConfig",
    "ElectraModel",
    "GaussianHeads",
    "RadialBasis",
    "TensorBlock",
    "TensorFeatures",
    "frame_features",
]
