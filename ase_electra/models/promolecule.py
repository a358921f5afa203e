"""The promolecule: a superposition of spherical neutral-atom densities, the baseline model.

Each element's PBE/def2-SVP atomic density is a sum of isotropic normalised Gaussians
(``promolecule.json``, fitted by :mod:`ase_electra.models.fit_promolecule`), and a
structure's density is the sum of its atoms' Gaussians centred on the atoms. Every
learned model must beat it; its table also initialises learned models
(:func:`atomic_gaussians`).

Legend: N atoms, K Gaussians, G Gaussians per element (padded), E table rows.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
import torch
from ase import Atoms

from ..errors import FileFormatError, InvalidInputError
from ..gaussians import GaussianMixture
from .base import check_structures

__all__ = ["AtomicGaussians", "atomic_gaussians", "table_metadata", "PromoleculeModel"]

_TABLE = "promolecule.json"


@dataclass(frozen=True)
class AtomicGaussians:
    """One element's spherical atomic density rho(r) = sum_k w_k N(r | atom, s_k^2 I).

    Parameters
    ----------
    weights : ndarray, shape (G,), electrons
        Positive weights summing to the atomic number.
    sigmas : ndarray, shape (G,), Angstrom
        Standard deviation per axis of each Gaussian, increasing (narrow to wide).
    l1_error : float
        Fit error ``int 4 pi r^2 |rho_fit - rho| dr / Z`` against the atomic PBE density.

    Examples
    --------
    >>> h = AtomicGaussians(np.array([0.4, 0.6]), np.array([0.2, 0.5]))
    >>> float(h.weights.sum())
    1.0
    """

    weights: np.ndarray
    sigmas: np.ndarray
    l1_error: float = math.nan

    def __post_init__(self) -> None:
        w = np.array(self.weights, dtype=np.float64)
        s = np.array(self.sigmas, dtype=np.float64)
        if w.ndim != 1 or len(w) == 0 or s.shape != w.shape:
            raise InvalidInputError(f"weights, sigmas: expected equal shapes (G,), got {w.shape}, {s.shape}")
        if not (np.isfinite(w).all() and np.isfinite(s).all()):
            raise InvalidInputError("weights, sigmas: non-finite values")
        if (w <= 0).any() or (s <= 0).any():
            raise InvalidInputError(f"weights, sigmas: expected > 0, got minima {w.min():.3g}, {s.min():.3g}")
        if (np.diff(s) < 0).any():
            raise InvalidInputError(f"sigmas: expected narrow to wide, got {s.tolist()}")
        w.setflags(write=False)
        s.setflags(write=False)
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "sigmas", s)


@cache
def _load_table() -> dict:
    try:
        text = resources.files(__package__).joinpath(_TABLE).read_text()
        return json.loads(text)
    except (OSError, json.JSONDecodeError) as exc:
        raise FileFormatError(f"{_TABLE}: cannot read the promolecule table ({exc})") from exc


@cache
def _atomic_gaussians() -> dict[int, AtomicGaussians]:
    table = {}
    try:
        for key, entry in _load_table()["elements"].items():
            table[int(key)] = AtomicGaussians(
                np.asarray(entry["weights"]), np.asarray(entry["sigmas"]), float(entry["l1_error"])
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise FileFormatError(f"{_TABLE}: malformed promolecule table ({exc})") from exc
    return table


def atomic_gaussians() -> dict[int, AtomicGaussians]:
    """The package's promolecule table: atomic number -> :class:`AtomicGaussians` (H to Kr).

    Returns a new dict each call; the values are immutable and shared.
    """
    return dict(_atomic_gaussians())


def table_metadata() -> dict:
    """How the table was made: level of theory, basis, command, date."""
    return dict(_load_table()["metadata"])


class PromoleculeModel:
    """Superposition of the fitted spherical atomic densities (a :class:`DensityModel`).

    Charged structures (``atoms.info['charge']``, electrons removed) keep the neutral
    atoms' shapes with all weights scaled by ``n_electrons / sum(Z)``, so every structure
    integrates to its electron count; a charge leaving no electrons raises
    :class:`InvalidInputError`.

    Parameters
    ----------
    device : str or torch.device
        Where the mixture is built.
    dtype : torch.dtype
        Floating dtype of the mixture.
    """

    name = "promolecule"

    def __init__(self, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float64) -> None:
        if not dtype.is_floating_point:
            raise InvalidInputError(f"dtype: expected a floating dtype, got {dtype}")
        table = atomic_gaussians()
        self.device = torch.device(device)
        self.dtype = dtype
        self.elements = frozenset(table)
        rows = max(table) + 1
        width = max(len(a.weights) for a in table.values())
        weights = np.zeros((rows, width))  # (E, G); zero where padded
        sigmas = np.ones((rows, width))  # (E, G)
        for z, atom in table.items():
            weights[z, : len(atom.weights)] = atom.weights
            sigmas[z, : len(atom.sigmas)] = atom.sigmas
        self._weights = torch.as_tensor(weights, dtype=dtype, device=self.device)
        self._sigmas = torch.as_tensor(sigmas, dtype=dtype, device=self.device)
        self._mask = self._weights > 0  # (E, G)
        self._counts = self._mask.sum(1)  # (E,)

    def predict(self, structures: list[Atoms]) -> GaussianMixture:
        """Promolecule density of each structure, as one batched mixture.

        Parameters
        ----------
        structures : list of Atoms
            Positions in Angstrom; ``atoms.info['charge']`` (default 0) sets the electron count.

        Returns
        -------
        GaussianMixture with ``n_structures == len(structures)``: per atom, its element's
        Gaussians (narrow to wide) centred on it, atoms in order; Angstrom, on ``device``.
        """
        if len(structures) == 0:
            raise InvalidInputError("structures: expected at least one structure, got none")
        check_structures(structures, self.elements, self.name)
        scale = [self._charge_scale(i, atoms) for i, atoms in enumerate(structures)]
        numbers = torch.as_tensor(np.concatenate([a.numbers for a in structures]), device=self.device)  # (N,)
        positions = torch.as_tensor(
            np.concatenate([a.positions for a in structures]), dtype=self.dtype, device=self.device
        )  # (N, 3)
        n_atoms = torch.tensor([len(a) for a in structures], device=self.device)
        atom_scale = torch.repeat_interleave(torch.tensor(scale, dtype=self.dtype, device=self.device), n_atoms)
        mask = self._mask[numbers]  # (N, G)
        weights = (self._weights[numbers] * atom_scale[:, None])[mask]  # (K,)
        sigmas = self._sigmas[numbers][mask]  # (K,)
        centres = positions[:, None, :].expand(-1, mask.shape[1], -1)[mask]  # (K, 3)
        eye = torch.eye(3, dtype=self.dtype, device=self.device)
        per_atom = self._counts[numbers]  # (N,)
        sizes = [int(c.sum()) for c in torch.split(per_atom, n_atoms.tolist())]
        return GaussianMixture(weights, centres, sigmas[:, None, None] * eye, tuple(sizes))

    @staticmethod
    def _charge_scale(index: int, atoms: Atoms) -> float:
        """Factor n_electrons / sum(Z) for ``atoms.info['charge']``."""
        charge = atoms.info.get("charge", 0)
        label = atoms.info.get("name", f"structure {index}")
        try:
            charge = float(charge)
        except (TypeError, ValueError):
            raise InvalidInputError(f"{label}: info['charge'] must be a number, got {charge!r}") from None
        if not math.isfinite(charge):
            raise InvalidInputError(f"{label}: info['charge'] must be finite, got {charge}")
        protons = float(atoms.numbers.sum())
        if charge >= protons:
            raise InvalidInputError(
                f"{label}: charge {charge} leaves no electrons ({protons:g} protons)"
            )
        return (protons - charge) / protons

    def __repr__(self) -> str:
        return (
            f"PromoleculeModel(elements={len(self.elements)}, device={self.device}, dtype={self.dtype})"
        )
