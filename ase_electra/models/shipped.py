"""The shipped default: one ELECTRA model for molecules, another for periodic structures.

``load_model("default")`` returns a :class:`ShippedModel` that sends each structure by its
``pbc``: no periodic axis to ``weights/default`` (trained on PySCF densities of molecules),
any periodic axis to ``weights/crystal`` (trained on GPAW all-electron densities of crystals
and slabs; ``weights/MODEL_CARD.md``). Two models, not one: the molecular model keeps
predicting every molecule exactly as before, and the crystal model starts from the
promolecule, which on crystals is a far better start than the molecular model (measured in
the model card).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch
from ase import Atoms

from ..errors import FileFormatError
from ..gaussians import GaussianMixture
from .electra import CONFIG_FILE, WEIGHTS_FILE, ElectraDensityModel

__all__ = ["ShippedModel", "WEIGHTS_PACKAGE"]

#: The package (``weights/`` in the source tree) holding the shipped models.
WEIGHTS_PACKAGE = "ase_electra.weights"


class ShippedModel:
    """Molecules to ``molecules``, structures with any periodic axis to ``crystals``.

    Parameters
    ----------
    molecules, crystals : ElectraDensityModel
        On the same device. Their own names are kept: an element one part lacks is
        reported with the part that refused it.
    name : str
        Shown in messages about the whole.
    """

    def __init__(self, molecules: ElectraDensityModel, crystals: ElectraDensityModel, name: str = "electra:default"):
        if molecules.device != crystals.device:
            raise ValueError(f"devices differ: molecules on {molecules.device}, crystals on {crystals.device}")
        self.molecules, self.crystals, self.name = molecules, crystals, name
        self.device = molecules.device
        self.elements = molecules.elements | crystals.elements

    def digest(self) -> str:
        """The parts' :meth:`ElectraDensityModel.digest`, molecules then crystals."""
        return f"{self.molecules.digest()}{self.crystals.digest()}"

    @classmethod
    def load(cls, device: str | torch.device = "cpu") -> ShippedModel:
        """The models shipped in the package (``ase_electra/weights/default`` and ``crystal``),
        named ``electra:default (molecules)`` and ``electra:default (crystals)``.

        Raises
        ------
        FileFormatError
            If this installation lacks either model's files.
        """
        try:
            root = resources.files(WEIGHTS_PACKAGE)
        except ModuleNotFoundError:
            root = None
        parts = ("default", "crystal")
        missing = [f"{WEIGHTS_PACKAGE}/{part}/{name}" for part in parts for name in (CONFIG_FILE, WEIGHTS_FILE)
                   if root is None or not root.joinpath(part, name).is_file()]
        if missing:
            raise FileFormatError(
                f"model 'default': this installation of ase-electra lacks its shipped weights ({', '.join(missing)}); "
                "use 'promolecule' or a trained model folder"
            )
        with resources.as_file(root) as folder:
            molecules, crystals = (ElectraDensityModel.load(Path(folder) / part, device=device) for part in parts)
        molecules.name, crystals.name = "electra:default (molecules)", "electra:default (crystals)"
        return cls(molecules, crystals)

    def part(self, atoms: Atoms) -> ElectraDensityModel:
        """The model that predicts ``atoms``: ``crystals`` if any axis is periodic, else ``molecules``."""
        return self.crystals if atoms.pbc.any() else self.molecules

    def predict(self, structures: list[Atoms]) -> GaussianMixture:
        """Densities of ``structures`` as one batched mixture, in their order (Angstrom, on ``device``)."""
        structures = list(structures)
        parts = [self.part(atoms) for atoms in structures]
        if all(p is parts[0] for p in parts):
            return (parts[0] if parts else self.molecules).predict(structures)
        batches = {
            id(p): iter(p.predict([a for a, q in zip(structures, parts) if q is p]).split())
            for p in (self.molecules, self.crystals)
        }
        return GaussianMixture.concat([next(batches[id(p)]) for p in parts])

    def __repr__(self) -> str:
        return f"ShippedModel(molecules={self.molecules!r}, crystals={self.crystals!r})"
