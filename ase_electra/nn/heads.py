"""Gaussian heads: per-atom tensor features -> a charge-conserving, non-negative Gaussian mixture.

Each atom of element Z owns ``n_core[Z]`` core Gaussians and ``n_floating[Z]`` floating
Gaussians (padded to the element maximum here, padding masked out):

- core: centred on the nucleus, isotropic, per-element learned width
  sigma = sigma_0 (f + 2 (1 - f) sigmoid(theta)), bounded in [f, 2 - f] sigma_0 with
  f = ``core_range``; they hold the tight, nearly atomic 1s core (and the hydrogen cusp).
- floating: centre r_i + sum_c W_kc v_c (rank-1 outputs), covariance
  Sigma = floor^2 Id + zeta P,  P = 3 (Id + T T^T) / (3 + |T|_F^2),  T = sum_c U_kc M_c,
  zeta = softplus(scalar head): size, shape and orientation are all learned; P has trace
  3 and is positive definite, so Sigma >= floor^2 Id, and it is smooth at T = 0
  (T T^T / |T|^2 would not be).
- weights: one logit per Gaussian (per-element bias + scalar head for floating ones, a
  per-element parameter for core ones), and w_k = N_e softmax_k(logits) over all Gaussians
  of the structure. So w_k > 0 and sum_k w_k = N_e (the structure's electron count) hold
  exactly, analytically, for every input and parameter value.

Initialisation from a promolecule table (element -> isotropic Gaussians with weights
summing to Z): the narrowest components holding at most the noble-gas core's electrons
(:func:`count_core`) fill the core slots, the rest are spread over the floating slots;
logit biases are log(weight) and widths the atomic ones, while the feature-dependent
parts start small (``init_scale``). The untrained model is
then the promolecule (rescaled by N_e / sum Z for ions) plus small displacements.

Legend: N atoms, C channels, M slots per atom (core Mc + floating Mf), K Gaussians, S structures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Protocol

import numpy as np
import torch
from torch import nn

from ..errors import InvalidInputError
from ..gaussians import GaussianMixture
from ..graph import Graph
from .tensors import TensorFeatures

__all__ = [
    "AtomicReference",
    "GaussianHeads",
    "split_reference",
    "assign_slots",
    "count_core",
    "core_electrons",
    "widening_map",
]


class AtomicReference(Protocol):
    """Isotropic atomic Gaussians: ``weights`` (electrons) and ``sigmas`` (Angstrom), narrow to wide."""

    weights: np.ndarray
    sigmas: np.ndarray


def core_electrons(z: int) -> int:
    """Electrons of the preceding noble-gas shell: 0 for H, He; 2 for Li..Ne; 10 for Na..Ar; ..."""
    return max((c for c in (0, 2, 10, 18, 36, 54, 86) if c < z), default=0)


def count_core(reference: AtomicReference, z: int) -> int:
    """Number of core components of element ``z``: the narrowest ones whose weights sum to at
    most :func:`core_electrons`, and never all of them.

    With the PBE/def2-SVP table this selects the 1s shell of C..F (sigma <= 0.11 A, 1.8 e),
    the n <= 2 shells of Na..Ar (9-9.9 e), and nothing for H and He.
    """
    weights = np.asarray(reference.weights, dtype=np.float64)[np.argsort(reference.sigmas, kind="stable")]
    cumulative = np.cumsum(weights)
    k = int((cumulative <= core_electrons(z) + 1e-9).sum())
    return min(k, len(weights) - 1)


def split_reference(
    reference: AtomicReference, n_core: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Core (the ``n_core`` narrowest) and valence components: (w_core, s_core, w_val, s_val)."""
    w = np.asarray(reference.weights, dtype=np.float64)
    s = np.asarray(reference.sigmas, dtype=np.float64)
    order = np.argsort(s, kind="stable")
    w, s = w[order], s[order]
    n_core = min(n_core, len(s) - 1)
    return w[:n_core], s[:n_core], w[n_core:], s[n_core:]


def assign_slots(weights: np.ndarray, sigmas: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Spread n isotropic components over m slots, keeping total weight (and second moments).

    m >= n: each component gets at least one slot, spare slots go to the component with
    the largest weight per slot, and a component's weight is split evenly over its slots.
    m < n: consecutive components (by width) are merged into m groups of similar size,
    each replaced by one Gaussian with the group's weight and weight-averaged variance.
    Returns (weights (m,), sigmas (m,)).
    """
    n = len(weights)
    if m == 0 or n == 0:
        return np.zeros(m), np.full(m, 0.5)
    if m >= n:
        counts = np.ones(n, dtype=int)
        for _ in range(m - n):
            counts[np.argmax(weights / counts)] += 1
        return np.repeat(weights / counts, counts), np.repeat(sigmas, counts)
    groups = np.array_split(np.arange(n), m)  # contiguous in width, sizes differ by <= 1
    out_w = np.array([weights[g].sum() for g in groups])
    out_s = np.array(
        [math.sqrt((weights[g] * sigmas[g] ** 2).sum() / max(weights[g].sum(), 1e-300)) for g in groups]
    )
    return out_w, out_s


def widening_map(old: tuple[int, ...], new: tuple[int, ...]) -> list[int]:
    """Old floating slot copied by each new slot when element row r grows from ``old[r]`` to
    ``new[r]`` floating Gaussians (slots are shared by all elements, each using its first ones).

    Slot j may only copy a slot that every element using j has (< min old[r] over new[r] > j);
    among those it takes the one with the fewest copies so far, so each old Gaussian is
    copied about equally often. Raises InvalidInputError if an element would shrink or lose
    one of its Gaussians.
    """
    if len(old) != len(new) or any(n < o for o, n in zip(old, new)):
        raise InvalidInputError(f"floating Gaussians per element: cannot go from {list(old)} to {list(new)}")
    copies = np.zeros((len(old), max(old)), dtype=int)
    mapping = []
    for j in range(max(new)):
        users = [r for r, n in enumerate(new) if n > j]
        limit = min(old[r] for r in users)
        slot = int(np.argmin(copies[users, :limit].sum(0)))
        copies[users, slot] += 1
        mapping.append(slot)
    for r, o in enumerate(old):
        if (copies[r, :o] == 0).any():
            raise InvalidInputError(
                f"floating Gaussians per element: going from {list(old)} to {list(new)} would drop some of row {r}'s"
            )
    return mapping


def _inverse_softplus(y: np.ndarray) -> np.ndarray:
    return y + np.log(-np.expm1(-y))


class GaussianHeads(nn.Module):
    """Final features -> :class:`GaussianMixture` (see the module docstring).

    Parameters
    ----------
    channels : int
    elements : tuple of int
        Atomic numbers, in the order of the rows of the per-element tables.
    n_core, n_floating : tuple of int
        Core and floating Gaussians per element (n_floating >= 1).
    width_floor : float, Angstrom
        Smallest standard deviation of a floating Gaussian along any axis.
    core_range : float
        Core widths stay within [core_range, 2 - core_range] of their initial value.
    init_scale : float
        Scale of the feature-dependent head weights at initialisation.
    reference : mapping from atomic number to AtomicReference, optional
        Promolecule table to initialise from; None gives generic values (for loading).
    """

    element_row: torch.Tensor
    slot_mask: torch.Tensor
    core_sigma0: torch.Tensor

    def __init__(
        self,
        channels: int,
        elements: tuple[int, ...],
        n_core: tuple[int, ...],
        n_floating: tuple[int, ...],
        width_floor: float,
        core_range: float = 0.5,
        init_scale: float = 0.01,
        reference: Mapping[int, AtomicReference] | None = None,
    ) -> None:
        super().__init__()
        n_el, mc, mf = len(elements), max(n_core), max(n_floating)
        self.channels, self.mc, self.mf = channels, mc, mf
        self.width_floor, self.core_range = float(width_floor), float(core_range)
        core_w, core_s = np.zeros((n_el, mc)), np.full((n_el, mc), 0.1)
        float_w, float_s = np.zeros((n_el, mf)), np.full((n_el, mf), 0.5)
        mask = np.zeros((n_el, mc + mf), dtype=bool)
        for row, z in enumerate(elements):
            mask[row, : n_core[row]] = True
            mask[row, mc : mc + n_floating[row]] = True
            if reference is None:
                core_w[row, : n_core[row]], float_w[row, : n_floating[row]] = 1.0, 1.0
                continue
            wc, sc, wv, sv = split_reference(reference[z], n_core[row])
            core_w[row, : n_core[row]], core_s[row, : n_core[row]] = assign_slots(wc, sc, n_core[row])
            float_w[row, : n_floating[row]], float_s[row, : n_floating[row]] = assign_slots(
                wv, sv, n_floating[row]
            )
        float_s = np.maximum(float_s, self.width_floor * 1.01)
        row_of = torch.full((max(elements) + 1,), -1, dtype=torch.int64)
        row_of[list(elements)] = torch.arange(n_el)
        self.register_buffer("element_row", row_of)
        self.register_buffer("slot_mask", torch.as_tensor(mask))
        self.register_buffer("core_sigma0", torch.as_tensor(core_s, dtype=torch.float32))

        def param(values: np.ndarray) -> nn.Parameter:
            return nn.Parameter(torch.as_tensor(values, dtype=torch.float32))

        tiny = 1e-30
        self.core_logit = param(np.log(np.maximum(core_w, tiny)))  # (n_el, Mc)
        self.core_theta = param(np.zeros((n_el, mc)))  # (n_el, Mc)
        self.float_logit = param(np.log(np.maximum(float_w, tiny)))  # (n_el, Mf)
        self.float_size = param(_inverse_softplus(float_s**2 - self.width_floor**2))  # (n_el, Mf), A^2
        self.scalar_head = nn.Sequential(
            nn.Linear(channels, channels), nn.SiLU(), nn.Linear(channels, 2 * mf)
        )
        self.vector_head = nn.Linear(channels, mf, bias=False)
        self.matrix_head = nn.Linear(channels, mf, bias=False)
        with torch.no_grad():
            for lin in (self.scalar_head[-1], self.vector_head, self.matrix_head):
                lin.weight.mul_(init_scale)
            self.scalar_head[-1].bias.zero_()

    def forward(self, x: TensorFeatures, graph: Graph) -> GaussianMixture:
        dtype = x.scalars.dtype
        n, mc, mf = graph.n_atoms, self.mc, self.mf
        row = self.element_row[graph.numbers]  # (N,)
        pos = graph.positions.to(dtype)  # (N, 3)
        eye = torch.eye(3, dtype=dtype, device=pos.device)

        # core: on the nucleus, isotropic, per element
        core_sigma = self.core_sigma(row).to(dtype)  # (N, Mc)
        core_tril = core_sigma[..., None, None] * eye  # (N, Mc, 3, 3)
        core_centres = pos[:, None, :].expand(n, mc, 3)

        # floating: displaced, full covariance
        heads = self.scalar_head(x.scalars).view(n, 2, mf)  # (N, 2, Mf)
        float_logit = self.float_logit[row] + heads[:, 0]  # (N, Mf)
        zeta = nn.functional.softplus(self.float_size[row] + heads[:, 1])  # (N, Mf), A^2
        offsets = torch.einsum("ncx,mc->nmx", x.vectors, self.vector_head.weight)  # (N, Mf, 3)
        t = torch.einsum("ncxy,mc->nmxy", x.matrices, self.matrix_head.weight)  # (N, Mf, 3, 3)
        tt = t @ t.transpose(-1, -2)  # (N, Mf, 3, 3)
        shape = 3.0 * (eye + tt) / (3.0 + torch.diagonal(tt, dim1=-2, dim2=-1).sum(-1))[..., None, None]
        cov = self.width_floor**2 * eye + zeta[..., None, None] * shape  # (N, Mf, 3, 3)
        cov = 0.5 * (cov + cov.transpose(-1, -2))
        float_tril = torch.linalg.cholesky(cov)

        # assemble per atom (core slots, then floating), drop padding; atoms are ordered by structure
        mask = self.slot_mask[row]  # (N, Mc + Mf)
        logits = torch.cat([self.core_logit[row].to(dtype), float_logit.to(dtype)], dim=1)[mask]  # (K,)
        centres = torch.cat([core_centres, pos[:, None, :] + offsets], dim=1)[mask]  # (K, 3)
        tril = torch.cat([core_tril, float_tril], dim=1)[mask]  # (K, 3, 3)
        structure = graph.batch[:, None].expand(n, mc + mf)[mask]  # (K,)
        weights = graph.n_electrons.to(dtype)[structure] * _segment_softmax(
            logits, structure, graph.n_structures
        )
        sizes = torch.bincount(structure, minlength=graph.n_structures).tolist()
        return GaussianMixture(weights, centres, tril, tuple(sizes))

    def core_sigma(self, rows: torch.Tensor | int) -> torch.Tensor:
        """Core Gaussian widths (Angstrom) of element table ``rows``, (..., Mc): sigma_0 times a
        factor in [core_range, 2 - core_range] set by ``core_theta`` (padding slots included)."""
        factor = self.core_range + 2.0 * (1.0 - self.core_range) * torch.sigmoid(self.core_theta[rows])
        return self.core_sigma0[rows] * factor

    def widened(self, n_floating: tuple[int, ...], jitter: float, generator: torch.Generator) -> GaussianHeads:
        """These heads with more floating Gaussians per element, predicting the same density.

        New floating slot j copies old slot ``m[j]`` (:func:`widening_map`): its head rows
        (logit, size, displacement and shape), and its per-element logit less log(copies),
        so the copies of a Gaussian share its weight. Copies of one Gaussian would get equal
        gradients forever, so the displacement and shape rows of every slot get Gaussian
        noise of ``jitter`` times the row's root mean square (0: an exact copy).
        """
        old = self.slot_mask[:, self.mc :].sum(-1).tolist()
        mapping = widening_map(tuple(old), tuple(n_floating))
        n_el, mf = len(old), max(n_floating)
        known = torch.nonzero(self.element_row >= 0).flatten()
        elements = tuple(known[torch.argsort(self.element_row[known])].tolist())
        n_core = tuple(self.slot_mask[:, : self.mc].sum(-1).tolist())
        new = GaussianHeads(self.channels, elements, n_core, tuple(n_floating), self.width_floor, self.core_range)
        new = new.to(self.float_logit)  # dtype and device
        with torch.no_grad():
            new.core_sigma0.copy_(self.core_sigma0)
            new.core_logit.copy_(self.core_logit)
            new.core_theta.copy_(self.core_theta)
            new.scalar_head[0].load_state_dict(self.scalar_head[0].state_dict())
            new.float_logit.fill_(math.log(1e-30))
            for row in range(n_el):
                m = torch.as_tensor(mapping[: n_floating[row]], device=self.float_logit.device)
                copies = torch.bincount(m, minlength=old[row]).to(self.float_logit.dtype)
                new.float_logit[row, : len(m)] = self.float_logit[row, m] - torch.log(copies[m])
            m = torch.as_tensor(mapping, device=self.float_logit.device)
            new.float_size.copy_(self.float_size[:, m])
            last, new_last = self.scalar_head[-1], new.scalar_head[-1]
            new_last.weight.copy_(last.weight.view(2, self.mf, -1)[:, m].reshape(2 * mf, -1))
            new_last.bias.copy_(last.bias.view(2, self.mf)[:, m].reshape(-1))
            for lin, new_lin in ((self.vector_head, new.vector_head), (self.matrix_head, new.matrix_head)):
                rows = lin.weight[m]
                rms = rows.pow(2).mean(-1, keepdim=True).sqrt()
                noise = torch.randn(rows.shape, generator=generator, dtype=rows.dtype).to(rows.device)
                new_lin.weight.copy_(rows + jitter * rms * noise)
        return new

    def gaussians_per_atom(self, numbers: torch.Tensor) -> torch.Tensor:
        """Number of Gaussians each atom contributes, shape of ``numbers``."""
        return self.slot_mask.sum(-1)[self.element_row[numbers]]

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, core_slots={self.mc}, floating_slots={self.mf}, "
            f"width_floor={self.width_floor}, core_range={self.core_range}"
        )


def _segment_softmax(logits: torch.Tensor, segment: torch.Tensor, n_segments: int) -> torch.Tensor:
    """Softmax of ``logits`` (K,) within each segment; each segment's values sum to 1."""
    top = torch.full((n_segments,), -torch.inf, dtype=logits.dtype, device=logits.device)
    top = top.scatter_reduce(0, segment, logits.detach(), reduce="amax", include_self=True)  # (S,)
    e = torch.exp(logits - top[segment])  # (K,)
    total = torch.zeros(n_segments, dtype=logits.dtype, device=logits.device).index_add(0, segment, e)  # (S,)
    return e / total[segment]
