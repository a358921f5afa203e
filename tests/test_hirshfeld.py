"""The local Hirshfeld quadrature against brute force: every atom at every point, no cut-off.

``hirshfeld_charges`` meets only the atoms, grid points and Becke cells within reach
(``ase_electra/properties/_kernels.py``); the references here sum over all of them with
NumPy, as the package did before.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from ase.data import covalent_radii
from scipy.spatial.distance import cdist

from ase_electra.gaussians import GaussianMixture
from ase_electra.models import load_model
from ase_electra.properties import hirshfeld_charges, hirshfeld_weights
from ase_electra.properties._kernels import _exp
from ase_electra.properties.hirshfeld import NARROW
from ase_electra.properties.quadrature import becke_grid, becke_partition, becke_shells, gaussian_nodes

pytestmark = pytest.mark.usefixtures("one_thread")


def alkane(n: int) -> Atoms:
    """All-trans CnH2n+2 along x (C-C 1.54 A, C-H 1.09 A, tetrahedral angles)."""
    half = math.radians(109.47) / 2
    carbons = np.array([[1.54 * math.sin(half) * i, 1.54 * math.cos(half) * (i % 2), 0.0] for i in range(n)])
    positions, symbols = list(carbons), ["C"] * n
    for i, c in enumerate(carbons):
        away = np.array([0.0, -1.0 if i % 2 == 0 else 1.0, 0.0])
        for z in (1.0, -1.0):
            positions.append(c + 1.09 * (math.cos(half) * away + math.sin(half) * np.array([0.0, 0.0, z])))
            symbols.append("H")
    for end, sign in ((0, -1.0), (n - 1, 1.0)):
        away = np.array([0.0, -1.0 if end % 2 == 0 else 1.0, 0.0])
        positions.append(carbons[end] + 1.09 * (math.sin(half) * np.array([sign, 0.0, 0.0]) - math.cos(half) * away))
        symbols.append("H")
    return Atoms(symbols, positions=positions)


def dense_becke(points: np.ndarray, owner: np.ndarray, numbers: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Becke's (1988) partition weight of ``owner`` at ``points``, every atom a cell and a factor everywhere."""
    n = len(numbers)
    radii = covalent_radii[numbers]
    chi = radii[:, None] / radii[None, :]
    u = (chi - 1.0) / (chi + 1.0)
    a = np.clip(u / (u * u - 1.0), -0.5, 0.5)  # (N, N)
    separation = cdist(positions, positions) + np.eye(n)
    out = np.empty(len(points))
    for start in range(0, len(points), 2000):
        d = cdist(points[start:start + 2000], positions)  # (p, N)
        nu = (d[:, :, None] - d[:, None, :]) / separation
        nu = nu + a * (1.0 - nu * nu)
        for _ in range(3):
            nu = nu * (1.5 - 0.5 * nu * nu)
        s = 0.5 * (1.0 - nu)
        s[:, np.arange(n), np.arange(n)] = 1.0
        cell = s.prod(axis=2)  # (p, N)
        out[start:start + 2000] = cell[np.arange(len(d)), owner[start:start + 2000]] / cell.sum(axis=1)
    return out


def brute_force_charges(mixture: GaussianMixture, numbers: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Hirshfeld charges with every Gaussian at every point of the whole Becke grid and every atom's weight there."""
    m = mixture.to(dtype=torch.float64)
    width = torch.linalg.eigvalsh(m.covariances)[:, -1].sqrt().numpy()
    electrons = np.zeros(len(numbers))
    core, wide = (torch.as_tensor(np.flatnonzero(mask)) for mask in (width <= NARROW, width > NARROW))
    cores = GaussianMixture(m.weights[core], m.centres[core], m.scale_tril[core])
    nodes, rule = gaussian_nodes(cores)  # (K, J, 3), (J,)
    w = hirshfeld_weights(numbers, positions, nodes.reshape(-1, 3)).reshape(*nodes.shape[:2], -1)  # (K, J, N)
    electrons += cores.weights.numpy() @ np.einsum("j,kjn->kn", rule, w) / rule.sum()
    points, v, owner = becke_shells(numbers, positions)
    v = v * dense_becke(points, owner, numbers, positions)
    wides = GaussianMixture(m.weights[wide], m.centres[wide], m.scale_tril[wide])
    white = wides.whitening()
    a, mu = (white.transpose(-1, -2) @ white).numpy(), wides.centres.numpy()  # (K, 3, 3) precision, (K, 3)
    b = np.einsum("kab,kb->ka", a, mu)
    # -|L^-1 (r - mu)|^2 / 2 = monomials(r) @ form: x^2, y^2, z^2, xy, xz, yz, x, y, z, 1
    form = np.stack([-0.5 * a[:, 0, 0], -0.5 * a[:, 1, 1], -0.5 * a[:, 2, 2], -a[:, 0, 1], -a[:, 0, 2], -a[:, 1, 2],
                     b[:, 0], b[:, 1], b[:, 2], -0.5 * (b * mu).sum(-1) + wides.log_normalisation().numpy()])
    shares = np.zeros((wides.n_gaussians, len(numbers)))  # (K, N)
    for start in range(0, len(points), 4000):
        pts = points[start:start + 4000]
        x, y, z = pts.T
        monomials = np.stack([x * x, y * y, z * z, x * y, x * z, y * z, x, y, z, np.ones_like(x)], axis=1)
        g = np.exp(monomials @ form)  # (p, K)
        shares += (g * v[start:start + 4000, None]).T @ hirshfeld_weights(numbers, positions, pts)
    electrons += wides.weights.numpy() @ (shares / shares.sum(axis=1, keepdims=True))
    return numbers - electrons


def test_charges_equal_brute_force(default_model):
    atoms = molecule("CH3CH2OH")
    mixture = default_model.predict([atoms])
    fast = hirshfeld_charges(mixture, atoms.numbers, atoms.positions)
    # the cut-offs move charges by 1.7e-8 e here; charges are quoted to 1e-6 e
    np.testing.assert_allclose(fast, brute_force_charges(mixture, atoms.numbers, atoms.positions), rtol=0, atol=1e-7)


def test_becke_partition_equals_all_atoms_on_a_long_chain():
    atoms = alkane(10)  # 13 A long: the cells at a point leave out atoms beyond 12 A
    points, _, owner = becke_shells(atoms.numbers, atoms.positions)
    pick = np.random.default_rng(1).choice(len(points), 4000, replace=False)
    local = becke_partition(points[pick], owner[pick], atoms.numbers, atoms.positions)
    np.testing.assert_allclose(local, dense_becke(points[pick], owner[pick], atoms.numbers, atoms.positions),
                               rtol=0, atol=1e-12)
    every = np.repeat(points[pick[:300]], len(atoms), axis=0)  # each point once per atom
    total = becke_partition(every, np.tile(np.arange(len(atoms)), 300), atoms.numbers, atoms.positions)
    np.testing.assert_allclose(total.reshape(300, -1).sum(axis=1), 1.0, rtol=0, atol=1e-14)


def test_becke_grid_integrates_the_promolecule():
    atoms = alkane(10)
    points, weights = becke_grid(atoms.numbers, atoms.positions)
    density = load_model("promolecule").predict([atoms]).at(torch.as_tensor(points), n_sigma=12.0).numpy()
    assert abs(weights @ density - atoms.numbers.sum()) < 1e-3 * atoms.numbers.sum()


def test_exp_matches_the_library():
    x = np.concatenate([np.linspace(-708.0, 709.0, 20001), np.random.default_rng(2).uniform(-40.0, 5.0, 5000)])
    ours = np.array([_exp(v) for v in x])
    np.testing.assert_allclose(ours, np.exp(x), rtol=3e-13, atol=0)
