"""benchmarks/heteroatom_structures.py: the common molecules are neutral, closed-shell, small enough,
named once, and leave out the molecules that issue 24 names as refused."""

from __future__ import annotations

import pytest

from .conftest import load_benchmark

Chem = pytest.importorskip("rdkit.Chem")  # an extra of `make heteroatoms`, not of the package

#: Thiophene, DMSO, chlorobenzene, cysteine, trimethyl phosphate, tetramethylsilane,
#: phenylboronic acid and bromobenzene: kept unseen.
NAMED = ("c1ccsc1", "CS(C)=O", "Clc1ccccc1", "NC(CS)C(=O)O", "COP(=O)(OC)OC", "C[Si](C)(C)C",
         "OB(O)c1ccccc1", "Brc1ccccc1")


@pytest.fixture(scope="module")
def module():
    return load_benchmark("heteroatom_structures")


def test_common_molecules_are_valid_and_leave_the_named_ones_out(module):
    canonical = [Chem.CanonSmiles(smiles) for smiles in module.COMMON]
    assert len(set(canonical)) == len(canonical) == len(set(module.COMMON.values()))
    assert not set(canonical) & {Chem.CanonSmiles(smiles) for smiles in NAMED}
    heteroatoms = {"B", "Si", "P", "S", "Cl", "Br"}
    for smiles in module.COMMON:
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        symbols = {atom.GetSymbol() for atom in mol.GetAtoms()}
        assert symbols & heteroatoms and symbols <= set(module.ELEMENTS), smiles
        assert mol.GetNumAtoms() <= 34 and not any(atom.GetFormalCharge() for atom in mol.GetAtoms()), smiles
        assert sum(atom.GetAtomicNum() for atom in mol.GetAtoms()) % 2 == 0, smiles  # closed shell


def test_common_structures_split_by_hash_and_rattle_with_their_molecule(module):
    structures = list(module.common_structures(rattled=1, seed=0))[:20]
    by_name = {s.name: s for s in structures}
    for s in structures:
        if s.name.endswith("_r0"):
            parent = by_name[s.name[:-3]]
            assert s.split == parent.split == module.hashed_split(parent.atoms.info["smiles"])
            assert 0.0 < abs(s.atoms.positions - parent.atoms.positions).max() < 0.5
