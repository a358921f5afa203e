"""Training crystals: elements in their ground-state lattices and binaries and ternaries in common
prototypes, strained and rattled; one periodic structure per extxyz file, for electra-label (GPAW).

    make crystals             # all of the below, into data/crystals/ (CRYSTALS=folder to change it)
    python benchmarks/crystal_structures.py -o data/crystals/structures
    electra-label data/crystals/structures/val/*.xyz -o data/crystals/records/val
    electra-label data/crystals/structures/train/*.xyz -o data/crystals/records/train

Compounds (``COMPOUNDS``): the non-magnetic elements ASE's ``bulk`` knows with their reference
lattices (Li, Be, C, Na, Mg, Al, Si, K, Ca, Ti, Cu, Zn, Ge, Sc, V), rocksalt, zincblende, wurtzite,
(anti)fluorite, CsCl, rutile and cubic perovskite compounds of elements up to Br, and two layered
crystals (graphite, hexagonal BN), at experimental lattice constants, and slabs. Each compound gives five
structures, named ``<formula>_<prototype>_<variant>.xyz``:

- ``v096``, ``v100``, ``v104``: the primitive cell scaled isotropically by 0.96, 1.00 and 1.04
  in length (about -12 % to +12 % in volume);
- ``c105``: the third lattice vector stretched by 5 % (a tetragonal or hexagonal distortion);
- ``r1``: the primitive cell (doubled along its shortest vector when it holds one atom) with
  seeded normal noise of 0.05 Angstrom on every coordinate (MD-like; lowest symmetry, so the
  most k-points and the costliest to label).

Slabs (``SLABS``: fcc (111) and (100), bcc (110) and hcp (0001) metal surfaces and rocksalt (100)
surfaces of four atomic layers, graphene and a hexagonal BN monolayer; pbc True, True, False,
6 Angstrom of vacuum on each side along c) give ``v100`` and ``r1`` only.

Every structure is translated by a seeded random vector (a slab in its plane and by up to
0.3 Angstrom along c) so that no nucleus sits on a point of the sampling grid (a point on a nucleus makes grid-point NMAE one cusp's value); GPAW labels
the symmetric structure and samples the density at the translated points. Split: the compounds
in ``VALIDATION`` (one of most prototypes, each of whose elements also trains in other
compounds) are validation, all five structures with them. Everything is seeded (``--seed``); a rerun writes the same
files. Prints the count per split and the atoms per element.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
import ase.build
from ase.build import bulk
from ase.io import write
from ase.spacegroup import crystal

#: (formula, prototype, a, c) in Angstrom; c only where the prototype has one. "element" takes
#: ASE's reference lattice for the element.
COMPOUNDS: list[tuple[str, str, float, float]] = [
    *[(el, "element", 0.0, 0.0) for el in ("Li", "Be", "C", "Na", "Mg", "Al", "Si", "K", "Ca", "Ti", "Cu", "Zn")],
    ("LiH", "rocksalt", 4.08, 0), ("LiF", "rocksalt", 4.03, 0), ("LiCl", "rocksalt", 5.13, 0),
    ("NaF", "rocksalt", 4.63, 0), ("NaCl", "rocksalt", 5.64, 0), ("NaBr", "rocksalt", 5.98, 0),
    ("KF", "rocksalt", 5.35, 0), ("KCl", "rocksalt", 6.29, 0), ("KBr", "rocksalt", 6.60, 0),
    ("MgO", "rocksalt", 4.21, 0), ("CaO", "rocksalt", 4.81, 0), ("MgS", "rocksalt", 5.20, 0),
    ("CaS", "rocksalt", 5.69, 0), ("CaSe", "rocksalt", 5.92, 0), ("TiC", "rocksalt", 4.33, 0), ("TiN", "rocksalt", 4.24, 0),
    ("SiC", "zincblende", 4.36, 0), ("BN", "zincblende", 3.615, 0), ("BP", "zincblende", 4.54, 0),
    ("AlP", "zincblende", 5.46, 0), ("AlAs", "zincblende", 5.66, 0), ("GaP", "zincblende", 5.45, 0),
    ("GaAs", "zincblende", 5.65, 0), ("ZnS", "zincblende", 5.41, 0), ("ZnSe", "zincblende", 5.67, 0),
    ("CuCl", "zincblende", 5.41, 0), ("CuBr", "zincblende", 5.69, 0), ("BeS", "zincblende", 4.86, 0),
    ("AlN", "wurtzite", 3.11, 4.98), ("GaN", "wurtzite", 3.19, 5.19), ("ZnO", "wurtzite", 3.25, 5.21),
    ("BeO", "wurtzite", 2.70, 4.38),
    ("CaF2", "fluorite", 5.46, 0), ("Li2O", "antifluorite", 4.61, 0), ("Li2S", "antifluorite", 5.71, 0),
    ("Na2S", "antifluorite", 6.54, 0),
    ("CuZn", "cesiumchloride", 2.95, 0),
    ("TiO2", "rutile", 4.594, 2.959), ("MgF2", "rutile", 4.621, 3.052), ("SiO2", "rutile", 4.18, 2.67),
    ("CaTiO3", "perovskite", 3.84, 0), ("KMgF3", "perovskite", 3.99, 0), ("KZnF3", "perovskite", 4.06, 0),
    ("C", "graphite", 2.46, 6.71), ("BN", "hexagonal", 2.50, 6.66),
    *[(el, "element", 0.0, 0.0) for el in ("Ge", "Sc", "V")],
    ("ScN", "rocksalt", 4.52, 0), ("VC", "rocksalt", 4.16, 0), ("GeO2", "rutile", 4.395, 2.859),
    ("Al", "fcc111", 4.05, 0), ("Cu", "fcc111", 3.61, 0), ("Al", "fcc100", 4.05, 0), ("Cu", "fcc100", 3.61, 0),
    ("Na", "bcc110", 4.23, 0), ("Li", "bcc110", 3.49, 0), ("Mg", "hcp0001", 3.21, 5.21), ("Ti", "hcp0001", 2.95, 4.69),
    ("MgO", "rocksalt100", 4.21, 0), ("NaCl", "rocksalt100", 5.64, 0), ("LiF", "rocksalt100", 4.03, 0),
    ("C", "graphene", 2.46, 0), ("BN", "monolayer", 2.50, 0),
    # 2026-12-08: more compounds and prototypes (after the ones above, so their files stay as they were)
    ("LiBr", "rocksalt", 5.50, 0), ("NaH", "rocksalt", 4.88, 0), ("KH", "rocksalt", 5.70, 0),
    ("MgSe", "rocksalt", 5.46, 0), ("VN", "rocksalt", 4.14, 0), ("ZnO", "rocksalt", 4.28, 0),
    ("AlN", "rocksalt", 4.05, 0),
    ("BAs", "zincblende", 4.78, 0), ("BeSe", "zincblende", 5.14, 0), ("GaN", "zincblende", 4.50, 0),
    ("AlN", "zincblende", 4.38, 0), ("ZnO", "zincblende", 4.60, 0), ("SiGe", "zincblende", 5.54, 0),
    ("ZnS", "wurtzite", 3.82, 6.26), ("SiC", "wurtzite", 3.08, 5.05),
    ("Li2Se", "antifluorite", 6.00, 0), ("Na2O", "antifluorite", 5.55, 0), ("K2O", "antifluorite", 6.44, 0),
    ("Mg2Si", "antifluorite", 6.35, 0), ("Be2C", "antifluorite", 4.34, 0),
    ("ScH2", "fluorite", 4.78, 0), ("TiH2", "fluorite", 4.45, 0), ("VH2", "fluorite", 4.27, 0),
    ("NiAl", "cesiumchloride", 2.887, 0), ("CuBe", "cesiumchloride", 2.70, 0), ("TiFe", "cesiumchloride", 2.976, 0),
    ("ScCu", "cesiumchloride", 3.256, 0),
    ("ZnF2", "rutile", 4.70, 3.13), ("MgH2", "rutile", 4.50, 3.01),
    ("ClOLi3", "perovskite", 3.91, 0), ("BrOLi3", "perovskite", 4.02, 0),  # antiperovskites Li3OCl, Li3OBr
    ("Cu2O", "cuprite", 4.27, 0),
    ("MgB2", "diboride", 3.086, 3.524), ("AlB2", "diboride", 3.006, 3.252), ("TiB2", "diboride", 3.029, 3.229),
    ("TiS2", "layered", 3.41, 5.70), ("TiSe2", "layered", 3.54, 6.01),
    ("MgO2H2", "hydroxide", 3.15, 4.77), ("CaO2H2", "hydroxide", 3.59, 4.91),
    ("Al3Sc", "L12", 4.10, 0), ("Li3N", "nitride", 3.65, 3.88), ("NH4Cl", "ammonium", 3.87, 0),
    ("Cu", "bcc", 2.865, 0), ("Al", "bcc", 3.21, 0), ("Ti", "bcc", 3.28, 0), ("Mg", "fcc", 4.53, 0),
    ("Li", "fcc", 4.40, 0), ("K", "fcc", 6.59, 0),
    *[(el, "element", 0.0, 0.0) for el in ("Ne", "Ar", "Kr")],
]

#: Slab prototypes: four atomic layers (graphene and BN one) with SLAB_VACUUM on each side along c.
SLABS = frozenset({"fcc111", "fcc100", "bcc110", "hcp0001", "rocksalt100", "graphene", "monolayer"})
SLAB_VACUUM = 6.0
SLAB_VARIANTS = ("v100", "r1")

#: Rutile's oxygen (fluorine, hydrogen) coordinate u, per formula.
RUTILE_U = {"TiO2": 0.305, "MgF2": 0.303, "SiO2": 0.306, "GeO2": 0.307, "ZnF2": 0.303, "MgH2": 0.304}

#: Heights (fractions of c) of the anions in CdI2-type layered crystals and of O and H in the hydroxides.
LAYER_Z = {"TiS2": 0.25, "TiSe2": 0.25, "MgO2H2": (0.22, 0.42), "CaO2H2": (0.23, 0.43)}

#: N-H bond of the ammonium ion, Angstrom.
AMMONIUM_NH = 1.03

#: Validation compounds, ``<formula>_<prototype>``.
VALIDATION = frozenset({
    "Al_element", "Al_fcc111", "Ti_element", "KBr_rocksalt", "BeS_zincblende", "ZnSe_zincblende", "GaN_wurtzite",
    "Li2S_antifluorite", "MgF2_rutile", "KZnF3_perovskite",
})

VARIANTS = ("v100", "v096", "v104", "c105", "r1")


@dataclass(frozen=True)
class Structure:
    name: str
    split: str
    atoms: Atoms


def primitive(formula: str, prototype: str, a: float, c: float) -> Atoms:
    """The compound's primitive (or conventional, for rutile and perovskite) cell at its lattice constants."""
    if prototype == "element":
        return bulk(formula)
    if prototype in ("rocksalt", "zincblende", "fluorite", "cesiumchloride", "fcc", "bcc"):
        return bulk(formula, prototype, a=a)
    if prototype == "antifluorite":  # the anion on the fluorite cation site
        counts = Counter(Atoms(formula).get_chemical_symbols())
        cation, anion = (next(el for el, n in counts.items() if n == k) for k in (2, 1))
        return bulk(f"{anion}{cation}2", "fluorite", a=a)
    if prototype == "wurtzite":
        return bulk(formula, "wurtzite", a=a, c=c)
    if prototype == "rutile":
        metal, anion = formula[:-2], formula[-2]
        u = RUTILE_U[formula]
        return crystal([metal, anion], basis=[(0, 0, 0), (u, u, 0)], spacegroup=136, cellpar=[a, a, c, 90, 90, 90])
    if prototype == "perovskite":
        a_site, b_site, anion = _perovskite_sites(formula)
        positions = np.array([(0, 0, 0), (0.5, 0.5, 0.5), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)]) * a
        return Atoms([a_site, b_site, anion, anion, anion], positions=positions, cell=np.eye(3) * a, pbc=True)
    if prototype == "graphite":
        return crystal(["C", "C"], basis=[(0, 0, 0.25), (1 / 3, 2 / 3, 0.25)], spacegroup=194,
                       cellpar=[a, a, c, 90, 90, 120])
    if prototype == "hexagonal":  # h-BN, AA' stacking
        return crystal(["B", "N"], basis=[(1 / 3, 2 / 3, 0.25), (2 / 3, 1 / 3, 0.25)], spacegroup=194,
                       cellpar=[a, a, c, 90, 90, 120])
    if prototype == "cuprite":  # Cu2O: O on a bcc lattice, Cu between pairs of O
        return crystal(["O", "Cu"], basis=[(0.25, 0.25, 0.25), (0, 0, 0)], spacegroup=224, setting=2,
                       cellpar=[a, a, a, 90, 90, 90])
    if prototype == "diboride":  # AlB2 type: metal layers between graphite-like boron sheets
        return crystal([formula[:-2], "B"], basis=[(0, 0, 0), (1 / 3, 2 / 3, 0.5)], spacegroup=191,
                       cellpar=[a, a, c, 90, 90, 120])
    if prototype == "layered":  # CdI2 type: one metal layer between two anion layers
        metal, anion = Atoms(formula).get_chemical_symbols()[:2]
        return crystal([metal, anion], basis=[(0, 0, 0), (1 / 3, 2 / 3, LAYER_Z[formula])], spacegroup=164,
                       cellpar=[a, a, c, 90, 90, 120])
    if prototype == "hydroxide":  # brucite: the CdI2 type with O-H pointing out of the layers
        z_o, z_h = LAYER_Z[formula]
        metal = Atoms(formula).get_chemical_symbols()[0]
        return crystal([metal, "O", "H"], basis=[(0, 0, 0), (1 / 3, 2 / 3, z_o), (1 / 3, 2 / 3, z_h)],
                       spacegroup=164, cellpar=[a, a, c, 90, 90, 120])
    if prototype == "L12":  # Cu3Au type: the minority atom on the corners, the majority on the faces
        symbols = Atoms(formula).get_chemical_symbols()
        majority, minority = symbols[0], symbols[-1]
        positions = np.array([(0, 0, 0), (0, 0.5, 0.5), (0.5, 0, 0.5), (0.5, 0.5, 0)]) * a
        return Atoms([minority] + [majority] * 3, positions=positions, cell=np.eye(3) * a, pbc=True)
    if prototype == "nitride":  # Li3N: Li2N layers with Li between them
        return crystal(["N", "Li", "Li"], basis=[(0, 0, 0), (0, 0, 0.5), (1 / 3, 2 / 3, 0)], spacegroup=191,
                       cellpar=[a, a, c, 90, 90, 120])
    if prototype == "ammonium":  # NH4Cl: CsCl type, the ion's H along four of the cube's diagonals
        centre = np.full(3, a / 2)
        bonds = np.array([(1, 1, 1), (1, -1, -1), (-1, 1, -1), (-1, -1, 1)]) * AMMONIUM_NH / np.sqrt(3)
        return Atoms(["Cl", "N"] + ["H"] * 4, positions=np.vstack([np.zeros(3), centre, centre + bonds]),
                     cell=np.eye(3) * a, pbc=True)
    if prototype in SLABS:
        return slab(formula, prototype, a, c)
    raise ValueError(f"unknown prototype {prototype!r}")


def slab(formula: str, prototype: str, a: float, c: float) -> Atoms:
    """A slab periodic along a and b, SLAB_VACUUM (Angstrom) of vacuum on each side along c."""
    layers, vacuum = (1, 1, 4), SLAB_VACUUM
    if prototype in ("fcc111", "fcc100", "bcc110", "hcp0001"):
        out = getattr(ase.build, prototype)(formula, layers, a=a, vacuum=vacuum, **({"c": c} if c else {}))
        out.info.clear()  # ASE's adsorbate sites: not structure data
        return out
    if prototype == "graphene":
        return ase.build.graphene("C2", a=a, vacuum=vacuum)
    if prototype == "monolayer":  # hexagonal BN, one layer
        return ase.build.graphene(formula, a=a, vacuum=vacuum)
    # rocksalt (100): a square cell of side a / sqrt(2), one cation and one anion per layer, a / 2 apart
    side = a / np.sqrt(2)
    cation, anion = Atoms(formula).get_chemical_symbols()
    symbols, positions = [], []
    for k in range(4):
        pair = (cation, anion) if k % 2 == 0 else (anion, cation)
        symbols += pair
        positions += [(0.0, 0.0, k * a / 2), (side / 2, side / 2, k * a / 2)]
    out = Atoms(symbols, positions=positions, cell=[side, side, 0.0], pbc=(True, True, False))
    out.center(vacuum=vacuum, axis=2)
    return out


def _perovskite_sites(formula: str) -> tuple[str, str, str]:
    symbols = Atoms(formula).get_chemical_symbols()
    counts = Counter(symbols)
    anion = next(s for s, n in counts.items() if n == 3)
    cations = [s for s in dict.fromkeys(symbols) if s != anion]
    return cations[0], cations[1], anion


def variant(atoms: Atoms, name: str, rng: np.random.Generator) -> Atoms:
    """One of ``VARIANTS`` of a primitive cell, translated by a random vector."""
    out = atoms.copy()
    if name.startswith("v"):
        out.set_cell(out.cell * int(name[1:]) / 100, scale_atoms=True)
    elif name == "c105":
        cell = out.cell.array.copy()
        cell[2] *= 1.05
        out.set_cell(cell, scale_atoms=True)
    elif name == "r1":
        if len(out) == 1:
            reps = [1, 1, 1]
            reps[int(np.argmin(out.cell.lengths()))] = 2
            out = out.repeat(reps)
        out.positions += rng.normal(0.0, 0.05, out.positions.shape)
    if out.pbc.all():
        out.positions += rng.uniform(0.0, 1.0, 3) @ out.cell.array
    else:  # a slab: anywhere in the plane, and up to 0.3 A along c, staying inside the cell
        out.positions += rng.uniform(0.0, 1.0, 3) * (1, 1, 0) @ out.cell.array + (0, 0, rng.uniform(-0.3, 0.3))
    out.wrap()
    return out


def crystal_structures(seed: int = 0) -> Iterator[Structure]:
    """Every compound's variants, in ``COMPOUNDS`` order, with seeded translations and noise."""
    rng = np.random.default_rng(seed)
    for formula, prototype, a, c in COMPOUNDS:
        key = f"{formula}_{prototype}"
        split = "val" if key in VALIDATION else "train"
        cell = primitive(formula, prototype, a, c)
        for v in SLAB_VARIANTS if prototype in SLABS else VARIANTS:
            yield Structure(f"{key}_{v}", split, variant(cell, v, rng))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", type=Path, required=True, help="folder for train/ and val/")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    structures = list(crystal_structures(args.seed))
    for split in ("train", "val"):
        (args.output / split).mkdir(parents=True, exist_ok=True)
    for s in structures:
        write(args.output / s.split / f"{s.name}.xyz", s.atoms, format="extxyz")
    splits = Counter(s.split for s in structures)
    atoms = Counter(sym for s in structures for sym in s.atoms.get_chemical_symbols())
    print(f"{len(structures)} structures ({splits['train']} train, {splits['val']} val) -> {args.output}/{{train,val}}")
    print("atoms per element: " + ", ".join(f"{el} {n}" for el, n in sorted(atoms.items())))
    print("validation compounds: " + ", ".join(sorted({s.name.rsplit('_', 1)[0] for s in structures if s.split == 'val'})))


if __name__ == "__main__":
    main()
