"""Start a PySCF Kohn-Sham calculation from the predicted density and compare with PySCF's guess.

    python examples/scf_from_prediction.py OUT [--molecule CH3CH2OH] [--basis def2-svp]

Builds an ordinary PySCF mean field (density-fitted PBE), gets its initial density matrix
from the shipped model (``ase_electra.scf.predicted_guess``), converges it, saving the
result to the PySCF checkpoint OUT/<molecule>.chk, and runs the same calculation from
PySCF's default 'minao' guess. Prints the SCF cycles and energies (Hartree) of both.
Needs PySCF: pip install 'ase-electra[reference]'.
"""

import argparse
from pathlib import Path

from ase.build import molecule
from pyscf import dft, gto

from ase_electra.models import load_model
from ase_electra.scf import predicted_guess


def mean_field(name: str, basis: str):
    atoms = molecule(name)
    mol = gto.M(atom=[(a.symbol, tuple(a.position)) for a in atoms], basis=basis, unit="Angstrom")
    return dft.RKS(mol, xc="pbe").density_fit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument("--molecule", default="CH3CH2OH", help="a name ase.build.molecule knows")
    parser.add_argument("--basis", default="def2-svp", help="PySCF basis set name")
    parser.add_argument("--model", default="default", help="'default', 'promolecule' or a model folder")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    mf = mean_field(args.molecule, args.basis)
    mf.chkfile = str(args.out / f"{args.molecule}.chk")
    mf.kernel(dm0=predicted_guess(mf, load_model(args.model)))  # the predicted guess
    reference = mean_field(args.molecule, args.basis)
    reference.kernel()  # PySCF's default guess, 'minao'
    print(f"{args.molecule}: predicted guess {mf.cycles} cycles, E = {mf.e_tot:.8f} Ha")
    print(f"{args.molecule}: minao guess     {reference.cycles} cycles, E = {reference.e_tot:.8f} Ha")
    print(f"checkpoint: {mf.chkfile}")


if __name__ == "__main__":
    main()
