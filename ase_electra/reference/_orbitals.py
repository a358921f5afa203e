"""The density of doubly occupied molecular orbitals in PySCF's Gaussian basis, on points and grids.

rho(r) = 2 sum_k (sum_mu C[mu, k] phi_mu(r))^2 (electrons / bohr^3), with ``phi`` PySCF's
spherical AOs. Points come in Angstrom and go to PySCF in bohr; densities come back in
e/Angstrom^3 (1 bohr = :data:`BOHR` Angstrom).

Two evaluation paths give the same numbers (they agree to ~1e-14 of the peak):

* :func:`density_chunks`, for arbitrary points and grids with skewed cells, calls PySCF's
  ``eval_gto`` with its AO screening mask, in chunks of bounded memory, and multiplies only
  by the coefficients of AOs that are non-zero somewhere in the chunk.
* :func:`density_factorised`, for a grid whose cell is diagonal (every box grid from
  :meth:`Grid.for_molecule`), uses that a Cartesian Gaussian factorises along x, y and z: on
  a block of 32^3 points each Cartesian AO is one small matrix product of 1-D factors.
  Shells whose bound ``sum_p |c_p| r^l exp(-a_p r^2)`` is below 1e-15 over the whole block
  are skipped; the MOs use Cartesian coefficients ``T C`` (``T`` is PySCF's
  Cartesian-to-spherical map). About twice as fast as the ``eval_gto`` path.

Legend: P points, n spherical AOs, m Cartesian AOs, K occupied orbitals, p primitives of a shell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..grid import Grid

#: Angstrom per bohr (CODATA 2018, as ASE and PySCF use).
BOHR = 0.529177210903

#: Memory bound of one evaluation chunk (AO values and MO values), bytes.
CHUNK_BYTES = 200 * 1024**2

_AO_CUTOFF = 1e-15  # AO values below this (bohr^-3/2) count as zero; PySCF's default
_BLOCK = 32  # edge of the blocks of the factorised grid path, points
_LIBCINT_SP = {0: 0.282094791773878143, 1: 0.488602511902919921}  # libcint's s and p factors


def chunk_points(chunk_bytes: int, floats_per_point: int) -> int:
    """Points per chunk so that ``floats_per_point`` float64 each fit in ``chunk_bytes``."""
    return max(1, int(chunk_bytes) // (8 * (floats_per_point + 2)))


def density_chunks(mol, coeff: np.ndarray, chunks, n_points: int, size: int) -> np.ndarray:
    """Density (P,) e/Angstrom^3 from ``(flat slice, points (<= size, 3) Angstrom)`` chunks."""
    buffer = np.empty(mol.nao * min(size, n_points))  # AO values of one chunk, reused
    rho = np.empty(n_points)
    for flat, points in chunks:
        rho[flat] = _rho_eval_gto(mol, coeff, points / BOHR, buffer)
    return rho / BOHR**3


def _rho_eval_gto(mol, coeff: np.ndarray, coords: np.ndarray, buffer: np.ndarray) -> np.ndarray:
    """rho (P,) e/bohr^3 at ``coords`` (P, 3) bohr through PySCF's screened ``eval_gto``."""
    from pyscf.dft.gen_grid import make_mask

    mask = make_mask(mol, coords, cutoff=_AO_CUTOFF)  # (P / 56 blocks, shells), 0: shell negligible
    ao = mol.eval_gto("GTOval_sph", coords, non0tab=mask, out=buffer)  # (P, n), zero where masked
    shells = np.flatnonzero(mask.any(axis=0))
    if len(shells) < mol.nbas:
        ao_loc = mol.ao_loc_nr()
        cols = np.concatenate([np.arange(ao_loc[s], ao_loc[s + 1]) for s in shells]) if len(shells) else []
        mo = ao[:, cols] @ coeff[cols]  # (P, K)
    else:
        mo = ao @ coeff
    return 2.0 * np.einsum("pk,pk->p", mo, mo)


@dataclass(frozen=True)
class _Shell:
    """One contraction of a PySCF shell in Cartesian form (coefficients include libcint's factors)."""

    centre: np.ndarray  # (3,) bohr
    powers: list[tuple[int, int, int]]  # Cartesian exponents in PySCF order, length m_l
    exponents: np.ndarray  # (p,) bohr^-2
    coefficients: np.ndarray  # (p,)
    first: int  # index of its first Cartesian AO
    reach: float  # bohr; beyond it every Cartesian component is below _AO_CUTOFF


def _cartesian_shells(mol) -> list[_Shell]:
    from pyscf import gto

    shells, first = [], 0
    radii = np.linspace(0.0, 60.0, 3001)  # bohr
    for s in range(mol.nbas):
        l, alpha = mol.bas_angular(s), mol.bas_exp(s)
        coefficients = mol.bas_ctr_coeff(s) * gto.gto_norm(l, alpha)[:, None] * _LIBCINT_SP.get(l, 1.0)  # (p, c)
        powers = [(a, b, l - a - b) for a in range(l, -1, -1) for b in range(l - a, -1, -1)]
        for c in coefficients.T:
            bound = np.abs(c) @ np.exp(-np.outer(alpha, radii**2)) * radii**l  # >= |AO| at distance r
            above = np.flatnonzero(bound >= _AO_CUTOFF)
            last = above[-1] if len(above) else -1
            reach = math.inf if last == len(radii) - 1 else float(radii[last + 1])
            shells.append(_Shell(mol.bas_coord(s), powers, alpha, c, first, reach))
            first += len(powers)
    return shells


def density_factorised(mol, coeff: np.ndarray, grid: Grid, chunk_bytes: int) -> np.ndarray:
    """Density (grid.shape) e/Angstrom^3 on a grid with a diagonal cell, block by block."""
    shells = _cartesian_shells(mol)
    coeff_cart = mol.cart2sph_coeff() @ coeff  # (m, K): MOs in Cartesian AOs
    m, n_occ = coeff_cart.shape
    edge = max(1, min(_BLOCK, int(chunk_points(chunk_bytes, m + n_occ) ** (1 / 3) + 1e-9)))  # points per axis
    axes = [(grid.origin[a] + np.arange(n) / n * grid.cell[a, a]) / BOHR for a, n in enumerate(grid.shape)]
    ao_buffer, mo_buffer = np.empty(m * edge**3), np.empty(n_occ * edge**3)  # reused by every block
    centres = np.array([s.centre for s in shells])  # (shells, 3) bohr
    reach = np.array([s.reach for s in shells])
    rho = np.empty(grid.shape)
    for i in range(0, grid.shape[0], edge):
        for j in range(0, grid.shape[1], edge):
            for k in range(0, grid.shape[2], edge):
                x, y, z = axes[0][i:i + edge], axes[1][j:j + edge], axes[2][k:k + edge]
                n = len(x) * len(y) * len(z)
                corners = np.array([[x[0], y[0], z[0]], [x[-1], y[-1], z[-1]]])
                nearest = np.clip(centres, corners.min(0), corners.max(0))  # (shells, 3)
                near = np.linalg.norm(nearest - centres, axis=1) < reach
                ao = ao_buffer[: m * n].reshape(m, n)
                rows = _cartesian_block(x, y, z, [s for s, keep in zip(shells, near) if keep], ao)
                psi = np.matmul(coeff_cart[rows].T, ao[: len(rows)], out=mo_buffer[: n_occ * n].reshape(n_occ, n))
                block = 2.0 * np.einsum("kp,kp->p", psi, psi)  # (P,)
                rho[i:i + edge, j:j + edge, k:k + edge] = block.reshape(len(x), len(y), len(z))
    return rho / BOHR**3


def _cartesian_block(x: np.ndarray, y: np.ndarray, z: np.ndarray, shells: list[_Shell], out: np.ndarray) -> np.ndarray:
    """Cartesian AOs of ``shells`` on the product grid x * y * z (bohr) into ``out`` rows.

    AO (a, b, c) = sum_p c_p [dx^a e^(-a_p dx^2)] [dy^b e^(-a_p dy^2)] [dz^c e^(-a_p dz^2)]:
    one (X*Y, p) @ (p, Z) product per AO. Returns the AO index of each row written.
    """
    n_xy, n_z = len(x) * len(y), len(z)
    rows, row = [], 0
    for shell in shells:
        dx, dy, dz = x - shell.centre[0], y - shell.centre[1], z - shell.centre[2]
        ex = shell.coefficients[:, None] * np.exp(-np.outer(shell.exponents, dx * dx))  # (p, X)
        ey = np.exp(-np.outer(shell.exponents, dy * dy))  # (p, Y)
        ez = np.exp(-np.outer(shell.exponents, dz * dz))  # (p, Z)
        for a, b, c in shell.powers:
            exy = (ex * dx**a)[:, :, None] * (ey * dy**b)[:, None, :]  # (p, X, Y)
            np.matmul(exy.reshape(len(ex), n_xy).T, ez * dz**c, out=out[row].reshape(n_xy, n_z))
            row += 1
        rows.extend(range(shell.first, shell.first + len(shell.powers)))
    return np.array(rows, dtype=np.intp)
