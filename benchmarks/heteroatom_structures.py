"""Training structures with elements past fluorine: B, Si, P, S, Cl and Br in QM9-like molecules,
small molecules of every element, common real molecules, and rattled copies; one frame per xyz
file, for electra-label.

    make heteroatoms          # all of the below, into data/heteroatoms/ (HETERO=folder to change it)
    python benchmarks/heteroatom_structures.py -o data/heteroatoms/structures --count 600
    electra-label data/heteroatoms/structures/train/*.xyz -o data/heteroatoms/records/train \\
        --conv-tol 1e-8 --grid-level 1
    electra-label data/heteroatoms/structures/val/*.xyz -o data/heteroatoms/records/val \\
        --conv-tol 1e-8 --grid-level 1

Needs RDKit and qm9pack (``pip install rdkit qm9pack``; neither is a dependency of
ase-electra). Four kinds of structure, written to ``<out>/train/`` and ``<out>/val/``:

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
- ``common_<name>.xyz``: real molecules of :data:`COMMON` (159 solvents, reagents, drug and
  pesticide fragments with B, Si, P, S, Cl or Br, 4-33 atoms), geometries as above.
- ``sub_<index>_r<k>.xyz`` and ``common_<name>_r<k>.xyz``: ``--rattled`` copies of each
  substituted and common molecule with seeded normal noise on every coordinate, of a standard
  deviation drawn from 0.02-0.08 Angstrom (as the shared ``qm9-rattled`` data).

Split: a substituted molecule and its copies follow their QM9 parent (index ending in 8:
validation, as the shared data; else training); a small or common molecule is validation when
the SHA-1 of its SMILES ends in a digit 8 (its scaled or rattled copies with it). Everything is seeded
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
#: Common molecules with B, Si, P, S, Cl or Br (solvents, reagents, drug and pesticide fragments),
#: up to 34 atoms: SMILES and a file name. The eight molecules that issue 24 names as refused
#: (thiophene, DMSO, chlorobenzene, cysteine, trimethyl phosphate, tetramethylsilane,
#: phenylboronic acid, bromobenzene) are left out, so that they stay an unseen check.
COMMON = {
    # sulfur
    "c1cscn1": "thiazole", "Cc1cccs1": "methylthiophene", "c1ccc2sccc2c1": "benzothiophene",
    "Sc1ccccc1": "thiophenol", "CSc1ccccc1": "thioanisole", "CSC": "dimethyl_sulfide", "CCSCC": "diethyl_sulfide",
    "CSSC": "dimethyl_disulfide", "CCS": "ethanethiol", "CS(=O)(=O)O": "methanesulfonic_acid",
    "O=S1(=O)CCCC1": "sulfolane", "CS(C)(=O)=O": "dimethyl_sulfone", "COS(C)(=O)=O": "methyl_mesylate",
    "NC(N)=S": "thiourea", "CC(N)=S": "thioacetamide", "CSCCC(N)C(=O)O": "methionine", "NCCS": "cysteamine",
    "NCCS(=O)(=O)O": "taurine", "Nc1ccc(cc1)S(N)(=O)=O": "sulfanilamide", "OCCS": "mercaptoethanol",
    "C1CSCN1": "thiazolidine", "C1CSCSC1": "dithiane", "C1CCSC1": "tetrahydrothiophene",
    "C=CCN=C=S": "allyl_isothiocyanate", "CN=C=S": "methyl_isothiocyanate",
    "NS(=O)(=O)c1ccccc1": "benzenesulfonamide", "NS(N)(=O)=O": "sulfamide", "COS(=O)(=O)OC": "dimethyl_sulfate",
    "C1CS1": "thiirane", "Nc1nccs1": "aminothiazole", "O=C1NS(=O)(=O)c2ccccc21": "saccharin",
    "OC(=O)CS": "thioglycolic_acid", "OC(CS)C(O)CS": "dithiothreitol", "CC(=O)SC": "methyl_thioacetate",
    "c1ccc2ncsc2c1": "benzothiazole", "CS(=O)c1ccccc1": "methyl_phenyl_sulfoxide",
    # chlorine
    "ClC(Cl)Cl": "chloroform", "ClCCl": "dichloromethane", "ClCCCl": "dichloroethane",
    "CC(=O)CCl": "chloroacetone", "OC(=O)CCl": "chloroacetic_acid", "OC(=O)C(Cl)(Cl)Cl": "trichloroacetic_acid",
    "Clc1ccccn1": "chloropyridine", "Oc1ccc(Cl)cc1": "chlorophenol", "Nc1ccc(Cl)cc1": "chloroaniline",
    "ClCc1ccccc1": "benzyl_chloride", "C=CCl": "vinyl_chloride", "C=CCCl": "allyl_chloride",
    "CC(Cl)=O": "acetyl_chloride", "N#CCCl": "chloroacetonitrile", "CCCCCl": "chlorobutane",
    "CC(C)(C)Cl": "tert_butyl_chloride", "ClCC1CO1": "epichlorohydrin", "OCCCl": "chloroethanol",
    "O=C(Cl)Cl": "phosgene", "CC(Cl)(Cl)Cl": "trichloroethane", "ClC(Cl)=C(Cl)Cl": "tetrachloroethylene",
    "ClC=C(Cl)Cl": "trichloroethylene", "N#CCCCl": "chloropropionitrile", "Oc1ccc(Cl)cc1Cl": "dichlorophenol",
    "Clc1ccccc1Cl": "dichlorobenzene", "Cc1ccc(Cl)cc1": "chlorotoluene", "OC(=O)c1ccc(Cl)cc1": "chlorobenzoic_acid",
    "COC(=O)Cl": "methyl_chloroformate", "ClCCOCCCl": "bis_chloroethyl_ether", "O=S(Cl)Cl": "thionyl_chloride",
    "O=S(=O)(Cl)Cl": "sulfuryl_chloride", "CS(=O)(=O)Cl": "mesyl_chloride", "Clc1ncncn1": "chlorotriazine",
    "Clc1cc(Cl)cc(Cl)c1": "trichlorobenzene", "CC(=O)Nc1ccc(Cl)cc1": "chloroacetanilide",
    # bromine
    "BrC(Br)Br": "bromoform", "BrCBr": "dibromomethane", "CCBr": "bromoethane", "CCCBr": "bromopropane",
    "CC(C)Br": "isopropyl_bromide", "BrCCBr": "dibromoethane", "OC(=O)CBr": "bromoacetic_acid",
    "CC(=O)CBr": "bromoacetone", "Oc1ccc(Br)cc1": "bromophenol", "Nc1ccc(Br)cc1": "bromoaniline",
    "Brc1ccccn1": "bromopyridine", "BrCc1ccccc1": "benzyl_bromide", "Cc1ccc(Br)cc1": "bromotoluene",
    "C=CCBr": "allyl_bromide", "N#CCBr": "bromoacetonitrile", "CC(C)(C)Br": "tert_butyl_bromide",
    "O=c1[nH]cc(Br)c(=O)[nH]1": "bromouracil", "ClCBr": "bromochloromethane", "OCCBr": "bromoethanol",
    "C=CBr": "vinyl_bromide", "Clc1ccc(Br)cc1": "bromochlorobenzene", "ClC(Cl)(Cl)Br": "bromotrichloromethane",
    "Brc1ccc2ccccc2c1": "bromonaphthalene", "Brc1cccs1": "bromothiophene",
    # phosphorus
    "CP(C)C": "trimethylphosphine", "CCOP(=O)(OCC)OCC": "triethyl_phosphate",
    "COP(C)(=O)OC": "dimethyl_methylphosphonate", "OP(O)(O)=O": "phosphoric_acid",
    "CP(O)(O)=O": "methylphosphonic_acid", "COP(OC)OC": "trimethyl_phosphite", "Pc1ccccc1": "phenylphosphine",
    "CPC": "dimethylphosphine", "CN(C)P(=O)(N(C)C)N(C)C": "hmpa", "OC(=O)CNCP(O)(O)=O": "glyphosate",
    "NCCOP(O)(O)=O": "phosphoethanolamine", "CCOP(=O)OCC": "diethyl_phosphite", "CCP(=O)(CC)CC": "triethylphosphine_oxide",
    "COP(=O)(Cl)Cl": "methyl_dichlorophosphate", "OC(=O)CP(O)(O)=O": "phosphonoacetic_acid",
    "COP(=O)(O)OC": "dimethyl_phosphate", "CCOP(=S)(OCC)OCC": "triethyl_thiophosphate",
    "c1ccc(cc1)P(=O)(c1ccccc1)O": "diphenylphosphinic_acid", "CCP(CC)CC": "triethylphosphine",
    "O=P(c1ccccc1)(Cl)Cl": "phenylphosphonic_dichloride",
    # silicon
    "C[Si](C)(C)O": "trimethylsilanol", "C[Si](C)(C)O[Si](C)(C)C": "hexamethyldisiloxane",
    "C[Si](C)(C)Cl": "trimethylsilyl_chloride", "C[Si](C)(Cl)Cl": "dimethyldichlorosilane",
    "C[Si](Cl)(Cl)Cl": "methyltrichlorosilane", "CCO[Si](OCC)(OCC)OCC": "teos", "CO[Si](OC)(OC)OC": "tmos",
    "C[Si](C)(C)C#C": "trimethylsilylacetylene", "[SiH3]c1ccccc1": "phenylsilane", "CC[SiH](CC)CC": "triethylsilane",
    "C=C[Si](C)(C)C": "vinyltrimethylsilane", "C=CC[Si](C)(C)C": "allyltrimethylsilane",
    "C[Si](C)(C)C#N": "trimethylsilyl_cyanide", "C[SiH2]C": "dimethylsilane", "[SiH3][SiH3]": "disilane",
    "C[Si](C)(C)N[Si](C)(C)C": "hexamethyldisilazane", "CO[Si](C)(C)OC": "dimethoxydimethylsilane",
    "C[Si](C)(C)OC(C)=O": "trimethylsilyl_acetate", "C[Si]1(C)CCCC1": "dimethylsilacyclopentane",
    # boron
    "OB(O)O": "boric_acid", "COB(OC)OC": "trimethyl_borate", "CB(O)O": "methylboronic_acid",
    "CCB(CC)CC": "triethylborane", "CB(C)C": "trimethylborane", "B1NBNBN1": "borazine",
    "CC1(C)OBOC1(C)C": "pinacolborane", "B1Oc2ccccc2O1": "catecholborane", "CN(C)B(N(C)C)N(C)C": "tris_dimethylaminoborane",
    "C=CB(O)O": "vinylboronic_acid", "OB(O)c1cccs1": "thienylboronic_acid", "CN(C)B": "dimethylaminoborane",
    "OB(O)c1ccc(F)cc1": "fluorophenylboronic_acid", "CCCCB(O)O": "butylboronic_acid", "OB(O)c1cccnc1": "pyridylboronic_acid",
    "CC1(C)OB(C=C)OC1(C)C": "vinyl_pinacol_boronate",
    # several
    "OS(=O)(=O)C(F)(F)F": "triflic_acid", "FC(F)(Cl)Cl": "dichlorodifluoromethane",
    "FC(F)(Cl)Br": "halon_1211", "FC(F)Cl": "chlorodifluoromethane", "FC(F)(F)CCl": "chlorotrifluoroethane",
    "NS(=O)(=O)c1ccc(Cl)cc1": "chlorobenzenesulfonamide", "Cc1ccc(cc1)S(Cl)(=O)=O": "tosyl_chloride",
    "CCOP(=S)(OCC)Oc1nc(Cl)c(Cl)cc1Cl": "chlorpyrifos", "FC(F)(F)C(Cl)Br": "halothane",
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
        yield from rattled_copies(atoms, f"sub_{index:06d}", split, rattled, rng)
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
        split = hashed_split(smiles)
        centre = atoms.positions.mean(0)
        for scale in SCALES:
            copy = Atoms(atoms.numbers, positions=centre + scale * (atoms.positions - centre))
            copy.info["scale"] = scale
            yield Structure(f"small_{stem}_{round(100 * scale):03d}", split, copy)


def common_structures(rattled: int, seed: int) -> Iterator[Structure]:
    """Every molecule of :data:`COMMON` that embeds, with ``rattled`` noisy copies each."""
    from rdkit import Chem

    for i, (smiles, name) in enumerate(COMMON.items()):
        atoms = embed(Chem.AddHs(Chem.MolFromSmiles(smiles)), seed + i)
        if atoms is None:
            print(f"skipped {name}: no geometry", file=sys.stderr)
            continue
        atoms.info["smiles"] = smiles
        split = hashed_split(smiles)
        yield Structure(f"common_{name}", split, atoms)
        yield from rattled_copies(atoms, f"common_{name}", split, rattled, np.random.default_rng([seed, 1, i]))


def hashed_split(smiles: str) -> str:
    """"val" when the SHA-1 of ``smiles`` ends in a digit 8 (as QM9 indices ending in 8), else "train"."""
    return "val" if int(hashlib.sha1(smiles.encode()).hexdigest(), 16) % 10 == 8 else "train"


def rattled_copies(atoms: Atoms, name: str, split: str, count: int, rng: np.random.Generator) -> Iterator[Structure]:
    """``count`` copies ``<name>_r<k>`` with normal noise on every coordinate (sigma drawn from :data:`RATTLE`)."""
    for k in range(count):
        copy = atoms.copy()
        sigma = rng.uniform(*RATTLE)
        copy.positions += rng.normal(scale=sigma, size=copy.positions.shape)
        copy.info["rattle_sigma"] = sigma
        yield Structure(f"{name}_r{k}", split, copy)


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
    parser.add_argument("--rattled", type=int, default=1, help="noisy copies per substituted and common molecule")
    parser.add_argument("--qm9-csv", type=Path, help="a qm9pack data CSV [default: qm9pack's qm9_part1.csv]")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")  # sanitisation failures are expected and skipped
    rows = qm9_smiles(args.qm9_csv or qm9_csv())
    structures = list(small_structures(args.seed))
    structures += common_structures(args.rattled, args.seed)
    structures += substituted_structures(rows, args.count, args.rattled, args.seed)
    for split in ("train", "val"):
        (args.output / split).mkdir(parents=True, exist_ok=True)
    for s in structures:
        write(args.output / s.split / f"{s.name}.xyz", s.atoms, format="extxyz")
    kinds = Counter(s.name.split("_")[0] for s in structures)
    print(f"{len(structures)} structures ({kinds['small']} small, {kinds['common']} common, {kinds['sub']} substituted; "
          f"rattled copies included) -> {args.output}/{{train,val}}")
    print(element_counts(structures))


if __name__ == "__main__":
    main()
