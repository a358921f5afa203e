"""Training structures with elements past fluorine: B, Si, P, S, Cl and Br in QM9-like molecules,
small molecules of every element, and rattled copies; one frame per xyz file, for electra-label.

    make heteroatoms          # all of the below, into data/heteroatoms/ (HETERO=folder to change it)
    python benchmarks/heteroatom_structures.py -o data/heteroatoms/structures --count 600
    electra-label data/heteroatoms/structures/train/*.xyz -o data/heteroatoms/records/train \\
        --conv-tol 1e-8 --grid-level 1
    electra-label data/heteroatoms/structures/val/*.xyz -o data/heteroatoms/records/val \\
        --conv-tol 1e-8 --grid-level 1

Needs RDKit and qm9pack (``pip install rdkit qm9pack``; neither is a dependency of
ase-electra). Three kinds of structure, written to ``<out>/train/`` and ``<out>/val/``:

- ``sub_<index>.xyz``: the QM9 molecule ``<index>`` (its SMILES, from a qm9pack CSV; test
  indices, ending in 9, are never read) with one or two substitutions drawn from those its
  atoms allow: O -> S, N -> P, H on C -> Cl or Br, a saturated C -> Si, a saturated neutral
  N -> B (a borane, closed-shell). Only neutral, closed-shell molecules that RDKit
  sanitises are kept; the geometry is RDKit's ETKDG conformer optimised with MMFF94, or UFF
  where MMFF lacks parameters. ``--count`` of them, QM9 molecules taken in a seeded order.
- ``small_<formula>_<scale>.xyz``: 2-6-atom molecules of H, B, C, N, O, F, Si, P, S, Cl and Br
  (hydrides, diatomics, fluorides, chlorides, ...) at their equilibrium geometry (scale 100:
  ASE's G2 geometry where the G2 set has the molecule, else the force field's as above; UFF
  puts multiple bonds such as N2's 0.36 Angstrom too long, which G2 avoids) and with every
  coordinate scaled about the centroid by 0.95 and 1.05 (all bond lengths compressed or
  stretched by 5 %).
- ``sub_<index>_r<k>.xyz``: ``--rattled`` copies of each substituted molecule with seeded
  normal noise on every coordinate, of a standard deviation drawn from 0.02-0.08 Angstrom
  (as the shared ``qm9-rattled`` data).

Split: a substituted molecule and its copies follow their QM9 parent (index ending in 8:
validation, as the shared data; else training); a small molecule is validation when the
SHA-1 of its SMILES ends in a digit 8 (its scaled copies with it). Everything is seeded
(``--seed``), so a rerun writes the same files. Prints the structures and atoms per element.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.util
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import write

#: Small molecules, 2-6 atoms with hydrogens, neutral and closed-shell: SMILES and the name of
#: the molecule in ASE's G2 set, whose geometry is taken where there is one ("": RDKit's).
SMALL = {
    "[H][H]": "H2", "B": "", "FB(F)F": "BF3", "ClB(Cl)Cl": "BCl3", "BrB(Br)Br": "", "FB": "", "OBO": "", "NB": "",
    "C": "CH4", "C#C": "C2H2", "C=C": "C2H4", "[C-]#[O+]": "CO", "O=C=O": "CO2", "C=O": "H2CO", "C#N": "HCN",
    "FC(F)(F)F": "CF4", "ClC(Cl)(Cl)Cl": "CCl4", "BrC(Br)(Br)Br": "", "CF": "", "CCl": "CH3Cl", "CBr": "",
    "C=S": "", "S=C=S": "CS2", "O=C=S": "OCS", "[C-]#[S+]": "CS", "O=C(F)F": "COF2", "N#CCl": "", "N#CBr": "",
    "N": "NH3", "N#N": "N2", "FN(F)F": "NF3", "ClN(Cl)Cl": "", "NCl": "", "NN": "N2H4", "N=O": "", "NO": "",
    "FN=NF": "", "[N-]=[N+]=O": "N2O", "ClN=O": "ClNO",
    "O": "H2O", "OO": "H2O2", "OF": "", "FOF": "F2O", "OCl": "HOCl", "ClOCl": "", "OBr": "", "[O-][O+]=O": "O3",
    "F": "HF", "FF": "F2", "FCl": "ClF", "FBr": "", "FCl(F)F": "ClF3",
    "[SiH4]": "SiH4", "[SiH3]F": "", "[SiH3]Cl": "", "[SiH3]Br": "", "F[Si](F)(F)F": "SiF4",
    "Cl[Si](Cl)(Cl)Cl": "SiCl4", "[SiH2]=O": "", "O[SiH3]": "", "[Si-]#[O+]": "SiO",
    "P": "PH3", "P#P": "P2", "FP(F)F": "PF3", "ClP(Cl)Cl": "", "BrP(Br)Br": "", "C#P": "", "PCl": "", "N#P": "",
    "O=P(Cl)(Cl)Cl": "", "O=P(F)(F)F": "", "PP": "",
    "S": "SH2", "SS": "", "O=S=O": "SO2", "O=S(=O)=O": "", "FSF": "", "ClSCl": "", "BrSBr": "", "CS": "CH3SH",
    "SCl": "", "ClSSCl": "", "FS(F)(F)F": "",
    "Cl": "HCl", "ClCl": "Cl2", "ClBr": "", "Br": "", "BrBr": "",
}
SCALES = (0.95, 1.0, 1.05)
RATTLE = (0.02, 0.08)  # range of the noise's standard deviation, Angstrom
ELEMENTS = ("H", "B", "C", "N", "O", "F", "Si", "P", "S", "Cl", "Br")


@dataclass(frozen=True)
class Structure:
    """One frame to write: ``<split>/<name>.xyz``."""

    name: str
    split: str
    atoms: Atoms


def qm9_csv() -> Path:
    """qm9pack's first data CSV, found without importing qm9pack (its import needs pkg_resources)."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("qm9pack is needed: pip install qm9pack (or pass --qm9-csv)")
    return Path(spec.submodule_search_locations[0]) / "data" / "qm9_part1.csv"


def qm9_smiles(path: Path) -> list[tuple[int, str]]:
    """(index, SMILES) of every QM9 molecule in ``path`` outside the test split (index ending in 9)."""
    csv.field_size_limit(sys.maxsize)
    with open(path, newline="") as fh:
        rows = [(int(row["Index"]), row["SMILES"]) for row in csv.DictReader(fh)]
    return [(index, smiles) for index, smiles in rows if index % 10 != 9]


def substitution_sites(mol) -> dict[str, list[int]]:
    """Atoms (indices into ``mol``, hydrogens explicit, Kekule form) each substitution may replace."""
    sites: dict[str, list[int]] = {"O>S": [], "N>P": [], "H>Cl": [], "H>Br": [], "C>Si": [], "N>B": []}
    for atom in mol.GetAtoms():
        symbol, single = atom.GetSymbol(), all(b.GetBondTypeAsDouble() == 1.0 for b in atom.GetBonds())
        if symbol == "O":
            sites["O>S"].append(atom.GetIdx())
        elif symbol == "N":
            sites["N>P"].append(atom.GetIdx())
            if single and atom.GetDegree() == 3 and not atom.GetIsAromatic():
                sites["N>B"].append(atom.GetIdx())
        elif symbol == "H" and atom.GetNeighbors()[0].GetSymbol() == "C":
            sites["H>Cl"].append(atom.GetIdx())
            sites["H>Br"].append(atom.GetIdx())
        elif symbol == "C" and single:
            sites["C>Si"].append(atom.GetIdx())
    return {kind: atoms for kind, atoms in sites.items() if atoms}


def substituted(smiles: str, rng: np.random.Generator):
    """The molecule of ``smiles`` with one or two random substitutions and explicit
    hydrogens, and their labels; None if RDKit refuses it or it is charged or open-shell."""
    from rdkit import Chem
    from rdkit.Chem import Descriptors

    mol = Chem.MolFromSmiles(smiles)
    if mol is None or any(a.GetFormalCharge() for a in mol.GetAtoms()):
        return None
    mol = Chem.AddHs(mol)
    Chem.Kekulize(mol, clearAromaticFlags=True)
    edit, labels = Chem.RWMol(mol), []
    for _ in range(rng.integers(1, 3)):
        sites = substitution_sites(edit)
        if not sites:
            break
        kinds = sorted(sites)
        kind = kinds[rng.integers(len(kinds))]
        atom = edit.GetAtomWithIdx(int(rng.choice(sites[kind])))
        atom.SetAtomicNum(Chem.GetPeriodicTable().GetAtomicNumber(kind.split(">")[1]))
        atom.SetNoImplicit(True)
        labels.append(kind)
    try:
        Chem.SanitizeMol(edit)
    except Exception:  # RDKit raises several unrelated sanitisation error types
        return None
    if Descriptors.NumRadicalElectrons(edit) or sum(a.GetAtomicNum() for a in edit.GetAtoms()) % 2:
        return None
    return edit.GetMol(), labels


def embed(mol, seed: int) -> Atoms | None:
    """ETKDG conformer of ``mol`` (hydrogens explicit) optimised with MMFF94, or UFF where
    MMFF lacks parameters; None if embedding or both force fields fail."""
    from rdkit.Chem import AllChem, rdDistGeom

    params = rdDistGeom.ETKDGv3()
    params.randomSeed = seed
    if AllChem.EmbedMolecule(mol, params) != 0:
        return None
    if AllChem.MMFFHasAllMoleculeParams(mol):
        AllChem.MMFFOptimizeMolecule(mol, maxIters=2000)
    elif AllChem.UFFHasAllMoleculeParams(mol):
        AllChem.UFFOptimizeMolecule(mol, maxIters=2000)
    else:
        return None
    atoms = Atoms([a.GetSymbol() for a in mol.GetAtoms()], positions=mol.GetConformer().GetPositions())
    distances = atoms.get_all_distances()[np.triu_indices(len(atoms), 1)]
    return atoms if len(atoms) == 1 or distances.min() > 0.6 else None


def substituted_structures(
    rows: list[tuple[int, str]], count: int, rattled: int, seed: int
) -> Iterator[Structure]:
    """``count`` substituted QM9 molecules (with ``rattled`` noisy copies each), in a seeded order."""
    from rdkit import Chem

    made = 0
    for i in np.random.default_rng([seed, 0]).permutation(len(rows)):
        index, smiles = rows[i]
        rng = np.random.default_rng([seed, index])
        result = substituted(smiles, rng)
        atoms = None if result is None else embed(result[0], seed + index)
        if atoms is None:
            continue
        split = "val" if index % 10 == 8 else "train"
        atoms.info.update(smiles=Chem.MolToSmiles(Chem.RemoveHs(result[0])), parent=smiles,
                          substitutions=" ".join(result[1]))
        yield Structure(f"sub_{index:06d}", split, atoms)
        for k in range(rattled):
            copy = atoms.copy()
            sigma = rng.uniform(*RATTLE)
            copy.positions += rng.normal(scale=sigma, size=copy.positions.shape)
            copy.info["rattle_sigma"] = sigma
            yield Structure(f"sub_{index:06d}_r{k}", split, copy)
        made += 1
        if made == count:
            return


def small_structures(seed: int) -> Iterator[Structure]:
    """Every molecule of :data:`SMALL` at each scale of :data:`SCALES`."""
    from ase.build import molecule
    from rdkit import Chem

    names = Counter()
    for smiles, g2_name in SMALL.items():
        atoms = molecule(g2_name) if g2_name else embed(Chem.AddHs(Chem.MolFromSmiles(smiles)), seed)
        if atoms is None:
            print(f"skipped {smiles}: no geometry", file=sys.stderr)
            continue
        formula = atoms.get_chemical_formula()
        names[formula] += 1
        stem = formula if names[formula] == 1 else f"{formula}-{names[formula]}"
        split = "val" if int(hashlib.sha1(smiles.encode()).hexdigest(), 16) % 10 == 8 else "train"
        centre = atoms.positions.mean(0)
        for scale in SCALES:
            copy = Atoms(atoms.numbers, positions=centre + scale * (atoms.positions - centre))
            copy.info["scale"] = scale
            yield Structure(f"small_{stem}_{round(100 * scale):03d}", split, copy)


def element_counts(structures: list[Structure]) -> str:
    """Table of structures and atoms per element and split."""
    lines = [f"{'element':>7} {'train':>7} {'val':>7} {'atoms':>8}"]
    for symbol in ELEMENTS:
        has = [s for s in structures if symbol in s.atoms.symbols]
        atoms = sum(s.atoms.get_chemical_symbols().count(symbol) for s in has)
        train = sum(s.split == "train" for s in has)
        lines.append(f"{symbol:>7} {train:7d} {len(has) - train:7d} {atoms:8d}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", type=Path, required=True, help="folder for train/ and val/")
    parser.add_argument("--count", type=int, default=1000, help="substituted QM9 molecules")
    parser.add_argument("--rattled", type=int, default=1, help="noisy copies per substituted molecule")
    parser.add_argument("--qm9-csv", type=Path, help="a qm9pack data CSV [default: qm9pack's qm9_part1.csv]")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")  # sanitisation failures are expected and skipped
    rows = qm9_smiles(args.qm9_csv or qm9_csv())
    structures = list(small_structures(args.seed))
    structures += substituted_structures(rows, args.count, args.rattled, args.seed)
    for split in ("train", "val"):
        (args.output / split).mkdir(parents=True, exist_ok=True)
    for s in structures:
        write(args.output / s.split / f"{s.name}.xyz", s.atoms, format="extxyz")
    small = sum(s.name.startswith("small_") for s in structures)
    print(f"{len(structures)} structures ({small} small, {len(structures) - small} substituted and rattled) "
          f"-> {args.output}/{{train,val}}")
    print(element_counts(structures))


if __name__ == "__main__":
    main()
