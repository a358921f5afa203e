"""ElectraDensityModel: the ELECTRA network behind the :class:`DensityModel` interface.

A saved model is a folder holding ``config.json`` (an :class:`ElectraConfig` dict) and
``model.safetensors`` (the state dict). Loading reads both without unpickling anything.
A fresh model starts from the promolecule table of ``models/promolecule.py``; a trained one
learns new elements from there too (:meth:`ElectraDensityModel.grown`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from ase import Atoms
from ase.data import chemical_symbols

from ..errors import FileFormatError, InvalidInputError
from ..gaussians import GaussianMixture
from ..graph import Graph
from ..io._atomic import atomic_path
from ..nn.heads import AtomicReference
from ..nn.model import ElectraConfig, ElectraModel
from .base import check_structures

__all__ = ["ElectraDensityModel", "default_config", "CONFIG_FILE", "WEIGHTS_FILE"]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
_FORMAT = "ase-electra/electra-1"


def _reference_table() -> Mapping[int, AtomicReference]:
    """The promolecule table fresh models are initialised from."""
    from .promolecule import atomic_gaussians

    return atomic_gaussians()


def default_config(**kwargs) -> ElectraConfig:
    """The small CPU-friendly default: all elements of the promolecule table (H..Kr).

    Keyword arguments go to :meth:`ElectraConfig.for_reference`.
    """
    return ElectraConfig.for_reference(_reference_table(), **kwargs)


class ElectraDensityModel:
    """Density model wrapping an :class:`ElectraModel`.

    Parameters
    ----------
    module : ElectraModel
    device : str or torch.device
        Where the network runs; the module is moved there.
    name : str
        Shown in messages.
    """

    def __init__(
        self, module: ElectraModel, device: str | torch.device = "cpu", name: str = "electra"
    ) -> None:
        self.device = torch.device(device)
        self.module = module.to(self.device)
        self.name = name
        self.elements = frozenset(module.config.elements)

    @property
    def config(self) -> ElectraConfig:
        return self.module.config

    @classmethod
    def new(
        cls,
        config: ElectraConfig | None = None,
        *,
        reference: Mapping[int, AtomicReference] | None = None,
        device: str | torch.device = "cpu",
        seed: int | None = None,
    ) -> ElectraDensityModel:
        """An untrained model initialised to the promolecule (``reference``, default the package table)."""
        reference = _reference_table() if reference is None else reference
        config = ElectraConfig.for_reference(reference) if config is None else config
        if seed is not None:
            torch.manual_seed(seed)
        return cls(ElectraModel(config, reference), device=device)

    def grown(
        self, elements: Iterable[int], reference: Mapping[int, AtomicReference] | None = None
    ) -> ElectraDensityModel:
        """A copy that also supports ``elements`` and predicts exactly what this model does for
        structures of its own elements (:meth:`ElectraModel.grown
        <ase_electra.nn.model.ElectraModel.grown>`): each new element starts as its
        promolecule (``reference``, default the package table, H..Kr) seen by the network as
        its analogue among the known elements. Named ``<name>+<new symbols>``."""
        reference = _reference_table() if reference is None else reference
        new = sorted({int(z) for z in elements} - self.elements)
        name = f"{self.name}+{','.join(chemical_symbols[z] for z in new)}" if new else self.name
        return ElectraDensityModel(self.module.grown(new, reference), device=self.device, name=name)

    def with_cusps(self, elements: Iterable[int]) -> ElectraDensityModel:
        """A copy in which each of ``elements`` has one more, narrower core Gaussian for the density
        spike at its nucleus (:meth:`ElectraModel.with_cusps <ase_electra.nn.model.ElectraModel.with_cusps>`);
        named ``<name>+cusps``."""
        return ElectraDensityModel(self.module.with_cusps(elements), device=self.device, name=f"{self.name}+cusps")

    def blended(self, other: ElectraDensityModel, weight: float) -> ElectraDensityModel:
        """The model whose parameters are ``(1 - weight) * self + weight * other``.

        Both must have one configuration, as a model and its fine-tune (``electra-train
        --init``) have. Between the two, such a blend keeps more of the first model's
        accuracy on its own data than the fine-tune does while keeping most of what the
        fine-tune learned (weight-space ensembling, Wortsman et al., CVPR 2022, "WiSE-FT").
        Named ``<self>~<other>@<weight>``.
        """
        if not 0.0 <= weight <= 1.0:
            raise InvalidInputError(f"blend weight: expected a number in [0, 1], got {weight}")
        if self.config.to_dict() != other.config.to_dict():
            raise InvalidInputError(f"cannot blend {self.name} and {other.name}: their configurations differ")
        mine, theirs = self.module.state_dict(), other.module.state_dict()
        state = {}
        for key, value in mine.items():
            if value.is_floating_point():
                state[key] = torch.lerp(value, theirs[key].to(value), weight)
            elif torch.equal(value, theirs[key].to(value.device)):
                state[key] = value
            else:
                raise InvalidInputError(f"cannot blend {self.name} and {other.name}: they differ in {key}")
        module = ElectraModel(self.config).to(next(v.dtype for v in mine.values() if v.is_floating_point()))
        module.load_state_dict(state, strict=True)
        return ElectraDensityModel(module, device=self.device, name=f"{self.name}~{other.name}@{weight:g}")

    def digest(self) -> str:
        """SHA-256 (hex) of the parameters and buffers: two models predict alike if their digests agree."""
        sha = hashlib.sha256()
        for key, value in sorted(self.module.state_dict().items()):
            sha.update(key.encode())
            sha.update(value.detach().cpu().contiguous().numpy().tobytes())
        return sha.hexdigest()

    # ------------------------------------------------------------------ prediction
    def graph(self, structures: list[Atoms]) -> Graph:
        """The neighbour graph of ``structures`` on ``device``, float64 (the network casts bond vectors)."""
        return Graph.from_atoms(structures, self.config.cutoff, dtype=torch.float64, device=self.device)

    def predict(self, structures: list[Atoms]) -> GaussianMixture:
        """Densities of ``structures`` as one batched mixture (Angstrom, on ``device``, no gradients)."""
        structures = list(structures)
        check_structures(structures, self.elements, self.name)
        graph = self.graph(structures)
        was_training = self.module.training
        self.module.eval()
        try:
            with torch.no_grad():
                return self.module(graph)
        finally:
            self.module.train(was_training)

    # ------------------------------------------------------------------ files
    def save(self, folder: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``folder`` (created); returns it.

        Each file is written to a temporary name in the folder, then renamed into place.
        """
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.module.state_dict().items()}
        with atomic_path(folder / WEIGHTS_FILE) as tmp:
            save_file(state, str(tmp), metadata={"format": _FORMAT})
        with atomic_path(folder / CONFIG_FILE) as tmp:
            tmp.write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> ElectraDensityModel:
        """Load a model saved by :meth:`save`: its folder, or the ``model.safetensors`` in it."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = Path(path)
        folder = path if path.is_dir() else path.parent
        weights = path if path.is_file() else folder / WEIGHTS_FILE
        config_path = folder / CONFIG_FILE
        for p in (weights, config_path):
            if not p.is_file():
                raise FileFormatError(
                    f"{p}: missing (an ELECTRA model folder holds {CONFIG_FILE} and {WEIGHTS_FILE})"
                )
        try:
            config = ElectraConfig.from_dict(json.loads(config_path.read_text()))
        except (json.JSONDecodeError, TypeError, ValueError) as err:
            raise FileFormatError(f"{config_path}: not a valid ELECTRA config ({err})") from None
        try:
            state = load_file(str(weights))
        except (SafetensorError, OSError) as err:
            raise FileFormatError(f"{weights}: not a readable safetensors file ({err})") from None
        module = ElectraModel(config)
        floats = {v.dtype for v in state.values() if v.is_floating_point()}
        if len(floats) == 1:
            module = module.to(floats.pop())
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0]
            raise FileFormatError(f"{weights}: weights do not match {config_path.name} ({first})") from None
        return cls(module, device=device, name=f"electra:{folder.name}")

    def __repr__(self) -> str:
        c = self.config
        return f"ElectraDensityModel(name={self.name!r}, elements={len(c.elements)}, device={self.device})"
