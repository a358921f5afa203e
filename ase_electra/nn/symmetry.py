"""Symmetry breaking: inertia-frame starting features, and debiasing of vector channels.

An equivariant network keeps its outputs inside the symmetry of its input. ELECTRA starts
each atom's vector features from the axes of a local moment-of-inertia tensor

    I_i = sum_j Z_j f(d_ij) (|r_ij|^2 Id - r_ij r_ij^T)

(Z as masses, f the smooth cutoff so atoms enter the neighbourhood continuously). An
eigenvector e_a has no sign of its own, so it is multiplied by an odd function of e_a:

    f_a = e_a * g_a * (t_a + (1 - |t_a|) t'_a),
    t_a  = tanh(e_a . c_i / tau)               c_i: Z f-weighted centroid of the neighbours - r_i
    t'_a = tanh(m3_a (e_a . G_a) / tau')        G_a: matching axis of the whole structure's inertia
                                                tensor, m3_a its third mass moment (skewness)

which is the method's sign rule (point towards the centre of mass when the projection
exceeds tau = 0.01 A, otherwise follow the global axis) made continuous. f_a is the same
for e_a and -e_a, so it is a proper vector, and it fades to zero wherever the sign or the
axis is undefined, instead of being chosen by the eigensolver's rounding:

- g_a = prod_b gap_ab^2 / (gap_ab^2 + delta^2), gap_ab = |lambda_a - lambda_b| / lambda_max,
  vanishes for degenerate eigenvalues (single atoms, spherical tops such as methane's
  carbon, the two perpendicular axes of a linear molecule);
- t_a and t'_a vanish on mirror-symmetric environments (benzene's out-of-plane axis,
  the centre of CO2); the global fallback is off for periodic structures.

So the start is O(3)-equivariant for every input, symmetric inputs give symmetric
densities, and an atom's frame follows the molecule when the molecule is rotated.

Crystals have no global frame, and at a site of cubic symmetry (rocksalt, zincblende,
fluorite, fcc and bcc metals) every f_a and the centroid vanish and no message can make
a vector or an anisotropic matrix: the density is a sum of spherical atoms. With
``lattice=True`` the unit vectors of the structure's periodic lattice vectors (zero along
non-periodic axes and for molecules) join every atom's starting vectors. They rotate with
the structure, so the start stays rotation-equivariant, and give cubic sites the
directions their bond charges need; the price is that the density depends on the cell
chosen (a primitive and a conventional cell of one crystal differ), though not on
supercells of it, whose lattice vectors point the same way. All of
it is computed in float64 without gradients: the frames are piecewise-smooth functions
of geometry treated as constants in backpropagation, so degenerate eigenvalues can never
produce NaN gradients.

Debiasing (after each block): u is the dominant eigenvector of the channel mean of
v_c v_c^T (detached); each channel loses a learned fraction w_c in [0, 0.9] of its
projection on u and is rescaled to its old length. w_c is a sigmoid MLP of invariants and
is faded out (like g_a) when the dominant eigenvalue is degenerate.

Legend: N atoms, E edges, S structures, C channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..graph import Graph
from .radial import polynomial_cutoff
from .tensors import TensorFeatures, soft_norm

__all__ = ["FrameFeatures", "frame_features", "degeneracy_weights", "Debias", "N_FRAME_SCALARS", "N_LATTICE_VECTORS"]

N_FRAME_SCALARS = 11
N_FRAME_VECTORS = 4
N_LATTICE_VECTORS = 3
N_FRAME_MATRICES = 5
_TINY = 1e-12


@dataclass(frozen=True, eq=False)
class FrameFeatures:
    """Starting features of each atom, float64, no gradient.

    scalars : (N, 11) invariants; vectors : (N, 4, 3) gated axes f_1..f_3 and the
    centroid offset c_i / r_c; matrices : (N, 5, 3, 3) isotropic and deviatoric parts of
    I_i / (sum_j Z_j f_j r_c^2), and the antisymmetric f_a f_b^T - f_b f_a^T.
    """

    scalars: torch.Tensor
    vectors: torch.Tensor
    matrices: torch.Tensor


def degeneracy_weights(eigenvalues: torch.Tensor, tolerance: float) -> torch.Tensor:
    """Per-axis weights in [0, 1) that vanish when an eigenvalue is degenerate.

    eigenvalues : (..., 3), ascending, >= 0. Returns (..., 3).
    """
    scale = eigenvalues.abs().amax(-1, keepdim=True) + _TINY  # (..., 1)
    gap = (eigenvalues.unsqueeze(-1) - eigenvalues.unsqueeze(-2)).abs() / scale.unsqueeze(-1)  # (..., 3, 3)
    factor = gap**2 / (gap**2 + tolerance**2)
    eye = torch.eye(3, dtype=torch.bool, device=eigenvalues.device)
    return torch.where(eye, torch.ones_like(factor), factor).prod(-1)  # (..., 3)


@torch.no_grad()
def frame_features(
    graph: Graph,
    cutoff: float,
    sign_length: float = 0.01,
    sign_moment: float = 0.01,
    degeneracy: float = 0.02,
    lattice: bool = False,
) -> FrameFeatures:
    """Inertia-frame starting features of every atom (see the module docstring).

    Parameters
    ----------
    graph : Graph
    cutoff : float, Angstrom
        Radius of the local neighbourhood (the graph's edges are used, smoothly cut off).
    sign_length : float, Angstrom
        tau: projections of the centroid offset much shorter than this leave the sign open.
    sign_moment : float
        tau': the same for the global third moment (dimensionless, in [-1, 1]).
    degeneracy : float
        delta: relative eigenvalue gap below which an axis fades out.
    lattice : bool
        Append the unit periodic lattice vectors (``N_LATTICE_VECTORS`` more vectors).
    """
    f64 = torch.float64
    pos = graph.positions.detach().to(f64)
    source, target = graph.edge_index
    r = pos[source] + graph.shifts.detach().to(f64) - pos[target]  # (E, 3)
    d2 = (r * r).sum(-1)  # (E,)
    w = graph.numbers[source].to(f64) * polynomial_cutoff(d2.sqrt(), cutoff)  # (E,)
    n = graph.n_atoms
    eye = torch.eye(3, dtype=f64, device=pos.device)
    rr = r.unsqueeze(-1) * r.unsqueeze(-2)  # (E, 3, 3)
    inertia = pos.new_zeros(n, 3, 3).index_add(0, target, w[:, None, None] * (d2[:, None, None] * eye - rr))
    mass = pos.new_zeros(n).index_add(0, target, w)  # (N,)
    centroid = pos.new_zeros(n, 3).index_add(0, target, w[:, None] * r) / (mass[:, None] + _TINY)  # (N, 3)

    lam, axes = torch.linalg.eigh(inertia)  # (N, 3), (N, 3, 3) columns ascending
    axes = axes.transpose(-1, -2)  # (N, 3, 3): row a = e_a
    gap_weight = degeneracy_weights(lam, degeneracy)  # (N, 3)
    t_local = torch.tanh((axes @ centroid.unsqueeze(-1)).squeeze(-1) / sign_length)  # (N, 3)

    g_axes, g_moment, g_weight = _global_axes(graph, pos, degeneracy)  # (S, 3, 3), (S, 3), (S, 3)
    b = graph.batch
    along = (axes * g_axes[b]).sum(-1)  # (N, 3): e_a . G_a
    t_global = torch.tanh(g_moment[b] * along / sign_moment) * g_weight[b]  # (N, 3)
    sign = t_local + (1.0 - t_local.abs()) * t_global  # (N, 3), odd in e_a
    f = axes * (gap_weight * sign).unsqueeze(-1)  # (N, 3, 3): row a = f_a

    scale = mass * cutoff**2 + _TINY  # (N,)
    inertia_n = inertia / scale[:, None, None]  # (N, 3, 3), eigenvalues in [0, 2]
    iso = torch.diagonal(inertia_n, dim1=-2, dim2=-1).sum(-1) / 3.0  # (N,)
    dev = inertia_n - iso[:, None, None] * eye
    anti = [
        f[:, a, :, None] * f[:, b_, None, :] - f[:, b_, :, None] * f[:, a, None, :]
        for a, b_ in ((0, 1), (1, 2), (2, 0))
    ]
    matrices = torch.stack([iso[:, None, None] * eye, dev, *anti], dim=1)  # (N, 5, 3, 3)

    vectors = torch.cat([f, (centroid / cutoff).unsqueeze(1)], dim=1)  # (N, 4, 3)
    if lattice:
        cells = graph.cells.detach().to(f64)  # (S, 3, 3) rows a, b, c
        unit = cells / (cells.norm(dim=-1, keepdim=True) + _TINY) * graph.pbc.to(f64).unsqueeze(-1)
        vectors = torch.cat([vectors, unit[b]], dim=1)  # (N, 7, 3)
    scalars = torch.cat(
        [
            lam / (lam.sum(-1, keepdim=True) + _TINY),  # normalised principal moments
            gap_weight,
            f.norm(dim=-1),  # |f_a| = g_a |sign_a|
            torch.log1p(mass)[:, None],
            (centroid.norm(dim=-1) / cutoff)[:, None],
        ],
        dim=1,
    )  # (N, 11)
    return FrameFeatures(scalars, vectors, matrices)


def _global_axes(
    graph: Graph, pos: torch.Tensor, degeneracy: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Principal axes (S, 3, 3) (rows), third moments (S, 3) and weights (S, 3) per structure.

    Weights are zero for structures with any periodic axis (no global frame there).
    """
    s, b = graph.n_structures, graph.batch
    z = graph.numbers.to(pos.dtype)  # (N,)
    total = pos.new_zeros(s).index_add(0, b, z)  # (S,)
    com = pos.new_zeros(s, 3).index_add(0, b, z[:, None] * pos) / (total[:, None] + _TINY)  # (S, 3)
    x = pos - com[b]  # (N, 3)
    x2 = (x * x).sum(-1)  # (N,)
    eye = torch.eye(3, dtype=pos.dtype, device=pos.device)
    per_atom = z[:, None, None] * (x2[:, None, None] * eye - x.unsqueeze(-1) * x.unsqueeze(-2))  # (N, 3, 3)
    inertia = pos.new_zeros(s, 3, 3).index_add(0, b, per_atom)
    lam, axes = torch.linalg.eigh(inertia)
    axes = axes.transpose(-1, -2)  # (S, 3, 3): row a = G_a
    proj = (x.unsqueeze(1) * axes[b]).sum(-1)  # (N, 3)
    m3 = pos.new_zeros(s, 3).index_add(0, b, z[:, None] * proj**3)  # (S, 3)
    norm3 = pos.new_zeros(s).index_add(0, b, z * x2**1.5)  # (S,)
    moment = m3 / (norm3[:, None] + _TINY)  # (S, 3), in [-1, 1]
    molecular = ~graph.pbc.any(-1)  # (S,)
    weight = degeneracy_weights(lam, degeneracy) * molecular[:, None].to(pos.dtype)
    return axes, moment, weight


class Debias(nn.Module):
    """Remove a learned fraction of each vector channel's component along the atom's dominant direction.

    Parameters
    ----------
    channels : int
    max_fraction : float
        Upper bound on the removed fraction, < 1 so rescaling stays bounded (by 1 / (1 - max_fraction)).
    degeneracy : float
        Relative gap between the two largest eigenvalues below which debiasing fades out.
    """

    def __init__(self, channels: int, max_fraction: float = 0.9, degeneracy: float = 0.02) -> None:
        super().__init__()
        if not 0.0 < max_fraction < 1.0:
            raise ValueError(f"max_fraction: expected in (0, 1), got {max_fraction}")
        self.channels = channels
        self.max_fraction = float(max_fraction)
        self.degeneracy = float(degeneracy)
        self.gate = nn.Sequential(nn.Linear(3 * channels, channels), nn.SiLU(), nn.Linear(channels, channels))
        with torch.no_grad():
            self.gate[-1].bias.fill_(-2.0)  # start by removing about 10 %

    def forward(self, x: TensorFeatures) -> TensorFeatures:
        v = x.vectors  # (N, C, 3)
        with torch.no_grad():
            vd = v.detach().to(torch.float64)
            mean_outer = (vd.unsqueeze(-1) * vd.unsqueeze(-2)).mean(1)  # (N, 3, 3)
            lam, vecs = torch.linalg.eigh(mean_outer)
            u = vecs[..., 2].to(v.dtype)  # (N, 3), dominant direction, sign irrelevant
            scale = lam[:, 2] + _TINY
            gap = (lam[:, 2] - lam[:, 1]) / scale
            fade = (gap**2 / (gap**2 + self.degeneracy**2)).to(v.dtype)  # (N,)
        proj = (v * u[:, None, :]).sum(-1)  # (N, C)
        inputs = torch.cat(
            [x.scalars, soft_norm(proj[..., None], (-1,)), soft_norm(v, (-1,))], dim=1
        )  # (N, 3C)
        fraction = self.max_fraction * torch.sigmoid(self.gate(inputs)) * fade[:, None]  # (N, C)
        out = v - (fraction * proj)[..., None] * u[:, None, :]  # (N, C, 3)
        eps = 1e-12
        rescale = torch.sqrt(((v * v).sum(-1) + eps) / ((out * out).sum(-1) + eps))  # (N, C)
        return TensorFeatures(x.scalars, out * rescale[..., None], x.matrices)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, max_fraction={self.max_fraction}, degeneracy={self.degeneracy}"
