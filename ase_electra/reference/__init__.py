"""Reference densities: records, and the codes that label structures with them.

* :mod:`~ase_electra.reference.records`: the record file format and :func:`load_record` /
  :func:`save_record`. :class:`ReferenceRecord` holds a molecule's Kohn-Sham orbitals
  (exact density anywhere), :class:`PeriodicRecord` a crystal's all-electron density
  sampled on its cell grid.
* :mod:`~ase_electra.reference.pyscf`: molecules labelled with PySCF (:func:`label_structure`).
* :mod:`~ase_electra.reference.gpaw`: crystals labelled with GPAW (:func:`label_crystal`).
* :mod:`~ase_electra.reference.label`: batches of structure files, behind ``electra-label``.
* :mod:`~ase_electra.reference.qm9`: names and splits of the shared QM9 records.

PySCF and GPAW are imported only when a calculation or an evaluation needs them.
"""

from ..errors import SCFNotConvergedError
from .gpaw import label_crystal
from .label import check_structure, label_files, plan_labels
from .pyscf import label_structure
from .qm9 import SPLITS, list_records, qm9_index, split_of
from .records import BOHR, PeriodicRecord, ReferenceRecord, load_record, save_record

__all__ = [
    "BOHR",
    "SPLITS",
    "PeriodicRecord",
    "ReferenceRecord",
    "SCFNotConvergedError",
    "check_structure",
    "label_crystal",
    "label_files",
    "label_structure",
    "list_records",
    "load_record",
    "plan_labels",
    "qm9_index",
    "save_record",
    "split_of",
]
