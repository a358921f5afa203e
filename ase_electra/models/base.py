"""The one interface every density model implements."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from ase import Atoms

from ..errors import FileFormatError, InvalidInputError, UnknownElementError
from ..gaussians import GaussianMixture

__all__ = ["DensityModel", "load_model", "check_structures", "check_for_model", "model_identity"]


@runtime_checkable
class DensityModel(Protocol):
    """Maps a batch of structures to their densities as one batched Gaussian mixture.

    ``predict(structures)`` returns a mixture with ``n_structures == len(structures)``
    whose structure s integrates analytically to the electron count of
    ``structures[s]`` (sum of atomic numbers minus any ``atoms.info['charge']``).
    Positions are read in Angstrom; the mixture is in Angstrom, on ``device``.
    """

    name: str
    elements: frozenset[int]
    device: torch.device

    def predict(self, structures: list[Atoms]) -> GaussianMixture: ...


def model_identity(model: DensityModel) -> str:
    """``model.name``, and for trained models (those with a ``digest()``) 12 hex digits of their
    parameters' digest: ``electra:default@3f2a...``. Outputs record it (``RunSettings.model``), so
    a rerun rewrites files that other weights made under the same name (a retrained run folder,
    a new shipped default)."""
    digest = getattr(model, "digest", None)
    return model.name if digest is None else f"{model.name}@{digest()[:12]}"


def check_structures(structures: list[Atoms], elements: frozenset[int], model_name: str) -> None:
    """Raise a one-line error for empty, non-finite or unsupported structures."""
    for i, atoms in enumerate(structures):
        label = atoms.info.get("name", f"structure {i}")
        if len(atoms) == 0:
            raise InvalidInputError(f"{label}: structure has no atoms")
        if not torch.isfinite(torch.as_tensor(atoms.positions)).all():
            raise InvalidInputError(f"{label}: non-finite atomic positions")
        unknown = sorted(set(atoms.get_chemical_symbols()) - {_symbol(z) for z in elements})
        if unknown:
            raise UnknownElementError(
                f"{label}: element(s) {', '.join(unknown)} not supported by model {model_name!r}"
            )


def check_for_model(model: DensityModel, structures: list[Atoms]) -> None:
    """:func:`check_structures` against the model that predicts each structure: for a model
    made of parts (``model.part(atoms)``: the shipped default sends molecules to one and
    periodic structures to another) that part's elements and name, else ``model``'s."""
    for atoms in structures:
        part = model.part(atoms) if hasattr(model, "part") else model
        check_structures([atoms], part.elements, part.name)


def _symbol(z: int) -> str:
    from ase.data import chemical_symbols

    return chemical_symbols[z]


def load_model(spec: str | Path = "promolecule", device: str | torch.device = "cpu") -> DensityModel:
    """Load a model by name or path.

    Parameters
    ----------
    spec : str or Path
        ``"default"`` (the ELECTRA models shipped with the package, one for molecules and
        one for periodic structures: :class:`~.shipped.ShippedModel`), ``"promolecule"``
        (superposition of atomic densities), or a trained ELECTRA model: a run folder
        (``electra-train -o RUN``), a model folder or its ``.safetensors`` file.
    device : str or torch.device
        Where the model runs.
    """
    if str(spec) == "default":
        from .shipped import ShippedModel

        return ShippedModel.load(device)
    if str(spec) == "promolecule":
        from .promolecule import PromoleculeModel

        return PromoleculeModel(device=device)
    path = Path(spec)
    if (path / "best" / "config.json").is_file() and not (path / "config.json").is_file():
        path = path / "best"  # a training run folder: its best model
    if path.is_dir() or path.suffix == ".safetensors":
        from .electra import ElectraDensityModel

        return ElectraDensityModel.load(path, device=device)
    raise InvalidInputError(
        f"model: {str(spec)!r} is neither 'default', 'promolecule' nor a trained model folder or .safetensors file"
    )
