"""Start PySCF Kohn-Sham calculations from a predicted density.

A model gives rho(r) as a Gaussian mixture in real space, not as a density matrix in the
atomic-orbital (AO) basis, so the guess goes through a Fock matrix (Harris functional):

    F[rho] = h_core + J[rho] + V_xc[rho],      F C = S C e,      D = 2 C_occ C_occ^T

* J: rho is fitted to the mean field's density-fitting basis in the Coulomb metric,
  d = (P|Q)^-1 (Q|rho), then J_uv = sum_P (uv|P) d_P. (Q|rho) is analytic: every Gaussian
  is written as isotropic ones (exactly one for isotropic Gaussians), which PySCF integrates
  as s functions. (Projections <chi_Q|rho> by quadrature would need the overlap metric,
  whose J errors, ~1e-2 Hartree on QM9 molecules, cost three extra SCF cycles.)
* V_xc: rho and its analytic gradient on a PySCF DFT grid (level 1 by default, coarser than
  the SCF's own) go through PySCF's libxc interface (``NumInt.eval_xc_eff``) and
  AO-product code, as in ``numint.nr_rks``.

Guess methods (``method=``), measured with the shipped model on QM9 validation molecules
(``benchmarks/scf_cycles.py``, PBE/def2-SVP, conv_tol 1e-9):

* ``"harris"``: one diagonalisation of F[rho_pred] (the default). 20 molecules: 11.1 SCF
  cycles on average against 12.3 from PySCF's 'minao', same energies.
* ``"projection"``: each atom's Becke share of rho is fitted by least squares with products
  of that atom's AOs (a superposition-of-atoms density matrix, as PySCF's 'atom' guess, not
  idempotent; occupying its natural orbitals instead measured worse). 4 molecules: 11.5
  cycles, as harris on the same 4 (minao 12.25).

Open-shell mean fields (UKS/UHF, ROKS/ROHF) get ``(2, n, n)`` guesses: one spin-free Fock
matrix with ``mol.nelec`` alpha and beta orbitals occupied. Hybrid, meta-GGA, non-local and
Hartree-Fock mean fields get their guess Fock matrix from PBE (exact exchange needs orbitals).

Units: the mixture lives in Angstrom and e/Angstrom^3; PySCF in bohr and e/bohr^3. The
conversions are in :func:`density_on_grid` and :func:`_isotropic_parts`.

Legend: n AOs, A auxiliary functions, P grid points, K Gaussians, Q point-Gaussian pairs.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from ase import Atoms

from .errors import InvalidInputError
from .evaluate import density_and_gradient
from .gaussians import DEFAULT_N_SIGMA, GaussianMixture
from .models.base import DensityModel

__all__ = [
    "BOHR",
    "GUESS_METHODS",
    "GUESS_GRID_LEVEL",
    "atoms_from_mole",
    "mean_field",
    "density_on_grid",
    "coulomb_matrix",
    "xc_matrix",
    "harris_fock",
    "predicted_guess",
    "converge_from_prediction",
    "PYSCF_GUESSES",
    "GuessRun",
    "run_scf",
]

#: Angstrom per bohr (CODATA 2018, as ASE and PySCF use).
BOHR = 0.529177210903

#: PySCF's own initial guesses that :func:`run_scf` compares with.
PYSCF_GUESSES = ("minao", "atom", "huckel")

#: Accepted values of ``method`` in :func:`predicted_guess`.
GUESS_METHODS = ("harris", "projection")

#: PySCF grid level of the Harris guess's V_xc: on the first 8 QM9 validation molecules it gave
#: the same SCF cycles as the mean field's default level-3 grid, each one, at about half the
#: guess's cost (``benchmarks/scf_cycles.py --guess-grid-level -1 --limit 8``).
GUESS_GRID_LEVEL = 1

#: Functional used for the guess Fock matrix when the mean field's own cannot be built from rho.
_FALLBACK_XC = "pbe"
_POINTS_PER_BLOCK = 8192
_J3C_BYTES = 256 * 1024**2


def atoms_from_mole(mol) -> Atoms:
    """The structure of a PySCF molecule: positions in Angstrom, ``info['charge']`` set."""
    if mol.has_ecp():
        raise InvalidInputError("basis: ECPs are not supported; the predicted density is all-electron")
    from pyscf import gto

    numbers = [gto.charge(mol.atom_pure_symbol(i)) for i in range(mol.natm)]
    atoms = Atoms(numbers=numbers, positions=mol.atom_coords(unit="Angstrom"))
    atoms.info["charge"] = int(mol.charge)
    return atoms


def mean_field(
    atoms: Atoms,
    *,
    xc: str = "pbe",
    basis: str = "def2-svp",
    charge: int = 0,
    spin: int = 0,
    conv_tol: float = 1e-9,
    density_fit: bool = True,
    verbose: int = 0,
):
    """A PySCF Kohn-Sham object for ``atoms``: RKS if ``spin == 0``, else UKS.

    Parameters
    ----------
    atoms : ase.Atoms
        Positions in Angstrom (converted to bohr by PySCF).
    spin : int
        Number of unpaired electrons, 2S; its parity must match the electron count.
    density_fit : bool
        Density fitting for J, as in the reference data (auxiliary basis chosen by PySCF).
    """
    from pyscf import dft, gto

    label = atoms.info.get("name", atoms.get_chemical_formula())
    n_electrons = int(atoms.numbers.sum()) - int(charge)
    if n_electrons <= 0 or spin < 0 or (n_electrons - spin) % 2 or spin > n_electrons:
        raise InvalidInputError(
            f"{label}: {n_electrons} electrons cannot have spin {spin} (2S; use an odd spin for odd counts)"
        )
    try:
        mol = gto.M(
            atom=[(int(z), tuple(p)) for z, p in zip(atoms.numbers, atoms.positions)],
            basis=basis, charge=charge, spin=spin, unit="Angstrom", verbose=verbose,
        )
    except (KeyError, RuntimeError, ValueError) as exc:
        raise InvalidInputError(f"{label}: PySCF cannot build basis {basis!r}: {exc}") from exc
    try:
        dft.libxc.parse_xc(xc)
    except (KeyError, ValueError) as exc:
        raise InvalidInputError(f"xc: unknown functional {xc!r} (expected a PySCF/libxc name such as 'pbe')") from exc
    mf = dft.RKS(mol, xc=xc) if spin == 0 else dft.UKS(mol, xc=xc)
    if density_fit:
        mf = mf.density_fit()
    mf.conv_tol = conv_tol
    return mf


def density_on_grid(mixture: GaussianMixture, coords: np.ndarray, n_sigma: float = DEFAULT_N_SIGMA) -> np.ndarray:
    """Density and gradient of a one-structure mixture at PySCF grid points (analytic).

    Parameters
    ----------
    mixture : GaussianMixture
        One structure, Angstrom.
    coords : ndarray, shape (P, 3), bohr
    n_sigma : float
        Cut-off of each Gaussian (Mahalanobis distance), as in :func:`~ase_electra.evaluate_points`.

    Returns
    -------
    ndarray, shape (4, P), atomic units: rho (e/bohr^3) and d rho / dx, dy, dz (e/bohr^4).
    """
    rho = density_and_gradient(mixture, np.asarray(coords) * BOHR, n_sigma=n_sigma).cpu().numpy()  # A units
    rho[0] *= BOHR**3  # e/A^3 -> e/bohr^3
    rho[1:] *= BOHR**4  # e/A^4 -> e/bohr^4
    return rho


def coulomb_matrix(mf, mixture: GaussianMixture) -> np.ndarray:
    """Coulomb matrix J_uv = (uv|rho) of a mixture, density-fitted, shape (n, n), Hartree.

    rho is fitted in the Coulomb metric, d = (P|Q)^-1 (Q|rho), with (Q|rho) analytic:
    each Gaussian is a sum of isotropic ones (:func:`_isotropic_parts`), which PySCF
    integrates as normalised s functions. A density-fitted mean field's own tensor gives J
    when it is already in memory (hybrid functionals, or built by the caller); otherwise
    three-centre integrals over the mean field's auxiliary basis (PySCF's default for others).
    """
    from pyscf import df, gto, lib

    mol = mf.mol
    with_df = _incore_df(mf)
    if with_df is not None:
        auxmol = with_df.auxmol
    else:
        _, xc = _functional(mf)
        auxmol = df.addons.make_auxmol(mol, _auxbasis(mf, xc))
    centres, exponents, weights = _isotropic_parts(mixture)
    rhs = np.zeros(auxmol.nao)  # (Q|rho)
    for start in range(0, len(weights), _POINTS_PER_BLOCK):
        sl = slice(start, start + _POINTS_PER_BLOCK)
        parts = gto.fakemol_for_charges(centres[sl], expnt=exponents[sl])
        rhs += gto.mole.intor_cross("int2c2e", auxmol, parts) @ weights[sl]
    metric = auxmol.intor("int2c2e", hermi=1)
    if with_df is not None:
        # The mean field's tensor B = X (P|uv), with metric^-1 = X^T X: J = B^T (X rhs).
        j_tril = with_df._cderi.T @ _cderi_transform(auxmol, metric, rhs)
        return lib.unpack_tril(j_tril)
    d = _coulomb_solve(metric, rhs)  # (A,)
    j_tril = np.zeros(mol.nao * (mol.nao + 1) // 2)
    aux_loc = auxmol.ao_loc_nr()
    per_shell = max(1, _J3C_BYTES // (8 * len(j_tril) * int(np.diff(aux_loc).max())))
    for a0 in range(0, auxmol.nbas, per_shell):  # bounded memory: a few auxiliary shells at a time
        a1 = min(a0 + per_shell, auxmol.nbas)
        j3c = df.incore.aux_e2(mol, auxmol, intor="int3c2e", aosym="s2ij",
                               shls_slice=(0, mol.nbas, 0, mol.nbas, a0, a1))  # (n(n+1)/2, A')
        j_tril += j3c @ d[aux_loc[a0] : aux_loc[a1]]
    return lib.unpack_tril(j_tril)


def xc_matrix(mf, rho: np.ndarray, grids=None) -> np.ndarray:
    """Exchange-correlation matrix of a density given on a DFT grid, shape (n, n), Hartree.

    Parameters
    ----------
    mf : pyscf.scf.hf.SCF
        Supplies the molecule, functional (see :func:`_functional`) and grid.
    rho : ndarray, shape (4, P), atomic units
        Density and gradient at ``grids.coords`` (see :func:`density_on_grid`).
    grids : pyscf.dft.gen_grid.Grids, optional
        The grid of ``rho``; default the mean field's.
    """
    from pyscf.dft.numint import NBINS, _dot_ao_ao_sparse, _scale_ao_sparse

    mol = mf.mol
    grids = _grid(mf) if grids is None else grids
    ni, xc = _functional(mf)
    xctype = ni._xc_type(xc)
    # The screened AO products of numint.nr_rks (PySCF's own XC matrix), for the same speed.
    ao_loc = mol.ao_loc_nr()
    nbins = NBINS * 2 - int(NBINS * np.log(grids.cutoff * 1e2) / np.log(grids.cutoff))
    pair_mask = mol.get_overlap_cond() < -np.log(ni.cutoff)
    vmat = np.zeros((mol.nao, mol.nao))
    p0 = 0
    for ao, mask, weight, _ in ni.block_loop(mol, grids, mol.nao, deriv=1):
        p1 = p0 + len(weight)
        r = rho[:, p0:p1]
        vxc = ni.eval_xc_eff(xc, r if xctype == "GGA" else r[0], deriv=1, xctype=xctype)[1]
        wv = weight * vxc.reshape(-1, len(weight))  # (1 or 4, P)
        wv[0] *= 0.5  # the matrix is symmetrised below
        aow = _scale_ao_sparse(ao[: len(wv)], wv, mask, ao_loc)  # (P, n)
        _dot_ao_ao_sparse(ao[0], aow, None, nbins, mask, pair_mask, ao_loc, hermi=0, out=vmat)
        p0 = p1
    return vmat + vmat.T


def harris_fock(mf, mixture: GaussianMixture, rho: np.ndarray | None = None, grids=None) -> np.ndarray:
    """Kohn-Sham matrix h + J + V_xc of a predicted density, shape (n, n), Hartree.

    ``rho`` is the mixture on ``grids`` (:func:`density_on_grid`), computed if not given.
    """
    grids = _grid(mf) if grids is None else grids
    rho = density_on_grid(mixture, grids.coords) if rho is None else rho
    return mf.get_hcore(mf.mol) + coulomb_matrix(mf, mixture) + xc_matrix(mf, rho, grids)


def predicted_guess(mf, model: DensityModel, *, method: str = "harris", mixture: GaussianMixture | None = None,
                    grid_level: int | None = GUESS_GRID_LEVEL):
    """Initial density matrix for ``mf.kernel(dm0=...)`` from a model's predicted density.

    Parameters
    ----------
    mf : pyscf.scf.hf.SCF
        Restricted (RKS/RHF) or open-shell (UKS/UHF, ROKS/ROHF) molecular mean field, all-electron.
    model : DensityModel
        Predicts the density of ``atoms_from_mole(mf.mol)``; unknown elements raise its
        :class:`~ase_electra.errors.UnknownElementError`.
    method : {"harris", "projection"}
        See the module docstring.
    mixture : GaussianMixture, optional
        An already predicted density of this molecule (Angstrom); skips the model call.
    grid_level : int or None
        PySCF grid level on which the Harris guess evaluates V_xc; None uses the mean field's
        own grid. The projection always uses the mean field's grid.

    Returns
    -------
    ndarray, shape (n, n) for restricted, (2, n, n) for open-shell mean fields; electrons,
    trace(D S) equal to the electron count (per spin: ``mol.nelec``). Harris guesses are
    idempotent (D S D = 2 D, or D for one spin); projections are not.
    """
    if method not in GUESS_METHODS:
        raise InvalidInputError(f"method: expected one of {', '.join(GUESS_METHODS)}, got {method!r}")
    spins = _spin_channels(mf)
    if mixture is None:
        with torch.no_grad():
            mixture = model.predict([atoms_from_mole(mf.mol)]).structure(0)
    if method == "projection":
        grids = _grid(mf)
        dm = _onsite_projection(mf.mol, grids, density_on_grid(mixture, grids.coords)[0])
        dm *= mf.mol.nelectron / np.einsum("ij,ji->", dm, mf.get_ovlp())
        return dm if spins == 1 else np.stack([dm * n / mf.mol.nelectron for n in mf.mol.nelec])
    fock = harris_fock(mf, mixture, grids=_grid(mf) if grid_level is None else _coarse_grid(mf.mol, grid_level))
    return _occupy(fock, mf.get_ovlp(), mf.mol, spins)


def converge_from_prediction(mf, model: DensityModel, *, method: str = "harris"):
    """Run ``mf`` to self-consistency from :func:`predicted_guess` and return it."""
    mf.kernel(dm0=predicted_guess(mf, model, method=method))
    return mf


@dataclass(frozen=True)
class GuessRun:
    """One SCF run from one initial guess.

    ``wall_seconds``/``cpu_seconds`` cover the model's prediction, the guess and the SCF
    (not the model's loading); ``cpu_seconds`` is the process CPU time of all threads.
    ``guess_nmae`` compares the guess density matrix's density with the converged one, and
    ``model_nmae`` the predicted mixture itself (predicted guesses only); NMAE =
    sum_g w_g |rho - rho_conv| / sum_g w_g rho_conv on the run's DFT grid (Becke weights w_g).
    ``history`` holds, per SCF cycle, the energy change (Hartree) and the orbital-gradient
    norm PySCF tests for convergence; :meth:`cycles_to` reads other thresholds from it.
    """

    structure: str
    guess: str
    cycles: int
    converged: bool
    energy: float
    wall_seconds: float
    cpu_seconds: float
    guess_nmae: float
    model_nmae: float | None = None
    history: tuple[tuple[float, float], ...] = ()

    def as_dict(self) -> dict:
        return asdict(self)

    def cycles_to(self, conv_tol: float, conv_tol_grad: float | None = None) -> int | None:
        """Cycles this run needed to pass a looser threshold, as PySCF tests it.

        PySCF stops at the first cycle with |E - E_previous| < ``conv_tol`` and gradient norm
        < ``conv_tol_grad`` (default sqrt(conv_tol)); the cycles do not depend on the
        threshold until then. None if the run never passed it.
        """
        grad = np.sqrt(conv_tol) if conv_tol_grad is None else conv_tol_grad
        return next((i for i, (de, g) in enumerate(self.history, 1) if de < conv_tol and g < grad), None)


def run_scf(atoms: Atoms, guess: str, *, model: DensityModel | None = None, label: str | None = None,
            method: str = "harris", grid_level: int | None = GUESS_GRID_LEVEL, **settings) -> GuessRun:
    """Converge a Kohn-Sham calculation of ``atoms`` from one guess and report the cost.

    Parameters
    ----------
    atoms : ase.Atoms
        Positions in Angstrom; ``atoms.info['name']`` names the structure.
    guess : str
        ``"predicted"`` (needs ``model``; built with ``method`` and ``grid_level``, see
        :func:`predicted_guess`) or a PySCF ``init_guess`` of :data:`PYSCF_GUESSES`.
    label : str, optional
        Name of the guess in the report; default the model's name or ``guess``.
    **settings
        Keywords of :func:`mean_field` (xc, basis, charge, spin, conv_tol, ...).
    """
    if guess != "predicted" and guess not in PYSCF_GUESSES:
        raise InvalidInputError(f"guess: expected 'predicted' or one of {', '.join(PYSCF_GUESSES)}, got {guess!r}")
    if guess == "predicted" and model is None:
        raise InvalidInputError("guess: 'predicted' needs a model")
    mf = mean_field(atoms, **settings)
    wall, cpu = time.perf_counter(), time.process_time()
    mixture = None
    if guess == "predicted":
        structure = atoms_from_mole(mf.mol)
        structure.info["name"] = atoms.info.get("name", atoms.get_chemical_formula())
        with torch.no_grad():
            mixture = model.predict([structure]).structure(0)
        dm0 = predicted_guess(mf, model, method=method, mixture=mixture, grid_level=grid_level)
    else:
        dm0 = mf.get_init_guess(key=guess)
    history = []
    mf.callback = lambda env: history.append((abs(env["e_tot"] - env["last_hf_e"]), float(env["norm_gorb"])))
    mf.kernel(dm0=dm0)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    grids = _grid(mf)
    rho = _dm_density(mf, mf.make_rdm1(), grids)
    norm = float(grids.weights @ np.abs(rho))

    def nmae(other: np.ndarray) -> float:
        return float(grids.weights @ np.abs(other - rho)) / norm

    return GuessRun(
        structure=atoms.info.get("name", atoms.get_chemical_formula()),
        guess=label or (model.name if guess == "predicted" else guess),
        cycles=int(mf.cycles), converged=bool(mf.converged), energy=float(mf.e_tot),
        wall_seconds=wall, cpu_seconds=cpu, guess_nmae=nmae(_dm_density(mf, dm0, grids)),
        model_nmae=None if mixture is None else nmae(density_on_grid(mixture, grids.coords)[0]),
        history=tuple(history),
    )


def _dm_density(mf, dm: np.ndarray, grids) -> np.ndarray:
    """Total density (P,), e/bohr^3, of a (n, n) or (2, n, n) density matrix on ``grids``."""
    ni = getattr(mf, "_numint", None)
    dm = dm if dm.ndim == 2 else dm[0] + dm[1]
    return np.concatenate([ni.eval_rho(mf.mol, ao, dm, mask, hermi=1)
                           for ao, mask, _, _ in ni.block_loop(mf.mol, grids, mf.mol.nao, deriv=0)])


def _isotropic_parts(mixture: GaussianMixture, max_nodes: int = 16):
    """Each Gaussian as a weighted sum of isotropic ones, in bohr.

    N(mu, Sigma) = N(0, s^2 I) convolved with N(mu, Sigma - s^2 I), s^2 the smallest eigenvalue
    of Sigma; the second factor (rank <= 2) is sampled by Gauss-Hermite nodes along its axes.
    Isotropic Gaussians give one part each, exactly.

    Returns
    -------
    centres (M, 3) bohr, exponents (M,) 1/bohr^2 of exp(-a r^2), weights (M,) electrons.
    """
    m = mixture.detach().to("cpu", torch.float64)
    lam, axes = np.linalg.eigh(m.covariances.numpy() / BOHR**2)  # (K, 3) ascending, (K, 3, 3)
    s2 = lam[:, 0]
    extra = np.sqrt(np.clip(lam[:, 1:] - s2[:, None], 0.0, None))  # (K, 2), bohr
    ratio = extra / np.sqrt(s2)[:, None]
    nodes = np.where(ratio < 1e-6, 1, np.minimum(max_nodes, 2 + np.ceil(5.0 * ratio))).astype(int)  # (K, 2)
    centres, exponents, weights = [], [], []
    for n1, n2 in {tuple(n) for n in nodes}:
        sel = (nodes[:, 0] == n1) & (nodes[:, 1] == n2)
        x1, w1 = np.polynomial.hermite_e.hermegauss(n1)
        x2, w2 = np.polynomial.hermite_e.hermegauss(n2)
        x = np.stack(np.meshgrid(x1, x2, indexing="ij"), -1).reshape(-1, 2)  # (N, 2)
        w = np.outer(w1 / w1.sum(), w2 / w2.sum()).ravel()  # (N,)
        offsets = np.einsum("kan,kn,jn->kja", axes[sel][:, :, 1:], extra[sel], x)  # (K', N, 3)
        centres.append(((m.centres.numpy()[sel] / BOHR)[:, None, :] + offsets).reshape(-1, 3))
        exponents.append(np.repeat(0.5 / s2[sel], len(w)))
        weights.append(np.outer(m.weights.numpy()[sel], w).ravel())
    return np.concatenate(centres), np.concatenate(exponents), np.concatenate(weights)


def _spin_channels(mf) -> int:
    """1 for restricted closed-shell mean fields, 2 for UHF/ROHF-type ones."""
    from pyscf import scf

    if getattr(mf.mol, "dimension", 0) or not isinstance(mf, scf.hf.SCF):
        raise InvalidInputError("mean field: expected a molecular PySCF SCF object")
    if isinstance(mf, (scf.uhf.UHF, scf.rohf.ROHF)):
        return 2
    if isinstance(mf, scf.ghf.GHF) or not isinstance(mf, scf.hf.RHF):
        raise InvalidInputError(f"mean field: {type(mf).__name__} is not supported (use RKS, UKS or ROKS)")
    if mf.mol.nelectron % 2:
        raise InvalidInputError(
            f"molecule: {mf.mol.nelectron} electrons (odd) in a restricted closed-shell mean field; use UKS"
        )
    return 1


def _functional(mf):
    """NumInt and an LDA/GGA functional to build the guess Fock matrix with."""
    from pyscf import dft

    ni = getattr(mf, "_numint", None) or dft.numint.NumInt()
    xc = getattr(mf, "xc", None)
    if xc is None or ni._xc_type(xc) not in ("LDA", "GGA") or ni.libxc.is_hybrid_xc(xc) or ni.libxc.is_nlc(xc):
        xc = _FALLBACK_XC
    return ni, xc


def _grid(mf):
    """The mean field's DFT grid (built here if needed), or a default one for Hartree-Fock."""
    from pyscf import dft

    grids = getattr(mf, "grids", None) or dft.gen_grid.Grids(mf.mol)
    if grids.coords is None:
        grids.build(with_non0tab=True)
    return grids


def _coarse_grid(mol, level: int):
    """A PySCF DFT grid of ``level`` for ``mol``, built."""
    from pyscf import dft

    grids = dft.gen_grid.Grids(mol)
    grids.level = level
    return grids.build(with_non0tab=True)


def _auxbasis(mf, xc: str):
    """The mean field's own density-fitting basis, else PySCF's default for its basis and xc."""
    from pyscf import df

    with_df = getattr(mf, "with_df", None)
    return getattr(with_df, "auxbasis", None) or df.make_auxbasis(mf.mol, xc=xc)


def _eval_ao(mol, coords: np.ndarray) -> np.ndarray:
    return mol.eval_gto("GTOval_cart" if mol.cart else "GTOval_sph", coords)


def _incore_df(mf):
    """The mean field's density-fitting object if its tensor is already in memory, else None.

    The tensor is not built here: for pure functionals PySCF computes J directly and never
    stores it, and the guess must not change how (or in how much memory) the SCF runs.
    """
    from pyscf import df

    with_df = getattr(mf, "with_df", None)
    if not isinstance(with_df, df.DF) or not isinstance(with_df._cderi, np.ndarray) or with_df.auxmol is None:
        return None
    return with_df


def _cderi_transform(auxmol, metric: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """X rhs for PySCF's in-memory DF tensor B = X (P|uv) (``df.incore.cholesky_eri``).

    PySCF takes X = L^-1 from the Cholesky factor of the metric, or, if the metric is not
    positive definite, X = w^-1/2 V^T over eigenvalues above its linear-dependence threshold;
    the same decomposition is repeated here.
    """
    import scipy.linalg
    from pyscf.df import incore

    try:
        low = scipy.linalg.cholesky(metric, lower=True)
    except scipy.linalg.LinAlgError:
        return incore._eig_decompose(auxmol, metric, incore.LINEAR_DEP_THR) @ rhs
    return scipy.linalg.solve_triangular(low, rhs, lower=True)


def _coulomb_solve(metric: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """metric^-1 rhs for the Coulomb metric (A, A), dropping near-null directions if singular."""
    import scipy.linalg

    try:
        return scipy.linalg.cho_solve(scipy.linalg.cho_factor(metric), rhs)
    except np.linalg.LinAlgError:
        w, v = np.linalg.eigh(metric)
        keep = w > 1e-10 * w[-1]
        return v[:, keep] @ ((v[:, keep].T @ rhs) / w[keep])


def _occupy(fock: np.ndarray, s: np.ndarray, mol, spins: int) -> np.ndarray:
    """Aufbau density matrix of ``fock``: (n, n), or (2, n, n) with mol.nelec per spin."""
    from pyscf.scf import hf

    _, c = hf.eig(fock, s)
    if spins == 1:
        occ = c[:, : mol.nelectron // 2]
        return 2.0 * occ @ occ.T
    return np.stack([c[:, :n] @ c[:, :n].T for n in mol.nelec])


def _onsite_projection(mol, grids, rho: np.ndarray) -> np.ndarray:
    """Least-squares fit of each atom's Becke share of rho with products of its own AOs.

    ``grids.weights = quadrature_weights * p_A`` on the points of atom A, so the target
    p_A rho is fitted in the quadrature metric; the blocks sum to a symmetric (n, n) matrix.
    """
    dm = np.zeros((mol.nao, mol.nao))
    slices = mol.aoslice_by_atom()
    for atom in range(mol.natm):
        on = (grids.atm_idx == atom) & (grids.quadrature_weights > 0)
        quad = grids.quadrature_weights[on]
        target = grids.weights[on] / quad * rho[on]
        shl0, shl1, i0, i1 = slices[atom]
        ao = mol.eval_gto("GTOval_cart" if mol.cart else "GTOval_sph", grids.coords[on], shls_slice=(shl0, shl1))
        iu, iv = np.triu_indices(i1 - i0)
        design = ao[:, iu] * ao[:, iv] * np.sqrt(quad)[:, None]  # (P, m(m+1)/2)
        pairs = np.linalg.lstsq(design, target * np.sqrt(quad), rcond=1e-10)[0]
        block = np.zeros((i1 - i0, i1 - i0))
        block[iu, iv] = np.where(iu == iv, pairs, 0.5 * pairs)
        dm[i0:i1, i0:i1] = block + np.triu(block, 1).T
    return dm
