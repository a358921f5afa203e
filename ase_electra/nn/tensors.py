"""Cartesian tensor features and the HotPP-style layers that act on them.

Each atom carries C channels of rank-0, rank-1 and rank-2 Cartesian tensors. Under a
rotation or reflection Q, scalars stay, vectors become Q v and matrices Q M Q^T; every
layer here commutes with that action (O(3)-equivariant), because it only mixes channels,
multiplies by invariants, and contracts with the unit bond vector u_ij.

A message of output rank o from a neighbour tensor x of rank a and filter rank r is
x (x) u^(x)r with k = (a + r - o) / 2 of x's last indices contracted with u; it exists for
|a - r| <= o <= a + r with a + r - o even (HotPP, ``hotpp/layer/equivalent.py``). With
ranks <= 2 and r <= 2 these are the 11 paths of :func:`message_paths`, e.g. vector from
scalar (s u), scalar from vector (v . u), matrix from vector (v u^T), vector from
matrix (M u).

Legend: N atoms, E edges, C channels, B radial basis functions, P message paths.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "TensorFeatures",
    "Edges",
    "Path",
    "message_paths",
    "TensorLinear",
    "TensorMessage",
    "GatedNonlinearity",
    "TensorBlock",
    "soft_norm",
]

RANKS = (0, 1, 2)


@dataclass(frozen=True, eq=False)
class TensorFeatures:
    """Per-atom features of rank 0, 1 and 2.

    scalars : (N, C); vectors : (N, C, 3); matrices : (N, C, 3, 3).
    """

    scalars: torch.Tensor
    vectors: torch.Tensor
    matrices: torch.Tensor

    def rank(self, r: int) -> torch.Tensor:
        """The rank-``r`` block, shape (N, C) + (3,) * r."""
        return (self.scalars, self.vectors, self.matrices)[r]

    @classmethod
    def from_ranks(cls, blocks: list[torch.Tensor]) -> TensorFeatures:
        return cls(*blocks)

    def __add__(self, other: TensorFeatures) -> TensorFeatures:
        return TensorFeatures(
            self.scalars + other.scalars, self.vectors + other.vectors, self.matrices + other.matrices
        )

    @property
    def channels(self) -> int:
        return self.scalars.shape[1]


@dataclass(frozen=True, eq=False)
class Edges:
    """Geometry of the edges j -> i a message layer needs.

    source, target : (E,) int64; unit : (E, 3) unit vectors u_ij; radial : (E, B) radial
    basis (already multiplied by the smooth cutoff); n_atoms : number of target atoms.
    """

    source: torch.Tensor
    target: torch.Tensor
    unit: torch.Tensor
    radial: torch.Tensor
    n_atoms: int


@dataclass(frozen=True)
class Path:
    """One message path: input rank ``a``, filter rank ``r``, output rank ``o``."""

    a: int
    r: int
    o: int

    def __post_init__(self) -> None:
        if not (abs(self.a - self.r) <= self.o <= self.a + self.r and (self.a + self.r - self.o) % 2 == 0):
            raise ValueError(f"message path: rank {self.a} x filter rank {self.r} cannot give rank {self.o}")

    @property
    def contractions(self) -> int:
        """Index pairs contracted between x and u^(x)r."""
        return (self.a + self.r - self.o) // 2


def message_paths(max_rank: int = 2, max_filter_rank: int = 2) -> tuple[Path, ...]:
    """All allowed paths with feature ranks <= ``max_rank`` and filter rank <= ``max_filter_rank``."""
    if max_rank != 2:
        raise ValueError(f"max_rank: only 2 is supported, got {max_rank}")
    if not 0 <= max_filter_rank <= 3:
        raise ValueError(f"max_filter_rank: expected 0..3, got {max_filter_rank}")
    return tuple(
        Path(a, r, o)
        for a in RANKS
        for r in range(max_filter_rank + 1)
        for o in RANKS
        if abs(a - r) <= o <= a + r and (a + r - o) % 2 == 0
    )


def contract_with_unit(x: torch.Tensor, unit: torch.Tensor, r: int, k: int) -> torch.Tensor:
    """x (x) u^(x)r with x's last ``k`` indices contracted against u.

    x : (E, C) + (3,) * a; unit : (E, 3). Returns (E, C) + (3,) * (a + r - 2k).
    """
    for _ in range(k):
        u = unit.reshape(unit.shape[0], *([1] * (x.dim() - 2)), 3)  # (E, 1, ..., 3)
        x = (x * u).sum(-1)
    for _ in range(r - k):
        u = unit.reshape(unit.shape[0], *([1] * (x.dim() - 1)), 3)  # (E, 1, ..., 1, 3)
        x = x.unsqueeze(-1) * u
    return x


def soft_norm(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """sqrt(|x|^2 + 1) - 1 over ``dims``: a norm-like invariant, smooth (and NaN-free) at 0."""
    return torch.sqrt((x * x).sum(dims) + 1.0) - 1.0


class TensorLinear(nn.Module):
    """Channel mixing per rank, y_c = sum_c' W^(rank)_cc' x_c'; bias on scalars only."""

    def __init__(self, c_in: int, c_out: int, init_scale: float = 1.0) -> None:
        super().__init__()
        self.c_in, self.c_out = c_in, c_out
        self.linears = nn.ModuleList([nn.Linear(c_in, c_out, bias=(rank == 0)) for rank in RANKS])
        if init_scale != 1.0:
            with torch.no_grad():
                for lin in self.linears:
                    lin.weight.mul_(init_scale)

    def forward(self, x: TensorFeatures) -> TensorFeatures:
        blocks = []
        for rank, lin in zip(RANKS, self.linears, strict=True):
            t = x.rank(rank)  # (N, C_in) + (3,) * rank
            t = t.movedim(1, -1)  # (N, 3..., C_in)
            blocks.append(lin(t).movedim(-1, 1))  # (N, C_out, 3...)
        return TensorFeatures.from_ranks(blocks)

    def extra_repr(self) -> str:
        return f"c_in={self.c_in}, c_out={self.c_out}, ranks={RANKS}"


class TensorMessage(nn.Module):
    """Sum over neighbours j of filter_p(d_ij) * path_p(x_j, u_ij), per output rank.

    The filters come from a bias-free MLP of the radial basis, so they vanish with it
    at the cutoff. With ``node_filters`` its hidden layer is also modulated by both atoms'
    scalars, h = SiLU(W_r rbf) * (1 + W_n [s_i, s_j]) (W_n starts at zero), so the filter
    of a bond depends on what the two atoms are and see, as published for ELECTRA; it
    still vanishes at the cutoff. Sums are divided by ``avg_neighbours`` to keep features O(1).
    """

    def __init__(
        self,
        channels: int,
        n_basis: int,
        radial_hidden: int = 32,
        max_filter_rank: int = 2,
        avg_neighbours: float = 10.0,
        node_filters: bool = False,
    ) -> None:
        super().__init__()
        self.paths = message_paths(2, max_filter_rank)
        self.channels = channels
        self.avg_neighbours = float(avg_neighbours)
        self.filters = nn.Sequential(
            nn.Linear(n_basis, radial_hidden, bias=False),
            nn.SiLU(),
            nn.Linear(radial_hidden, len(self.paths) * channels, bias=False),
        )
        self.node = nn.Linear(2 * channels, radial_hidden) if node_filters else None
        if self.node is not None:
            nn.init.zeros_(self.node.weight)
            nn.init.zeros_(self.node.bias)

    def _filters(self, x: TensorFeatures, edges: Edges) -> torch.Tensor:
        """Per-edge, per-path, per-channel filters, (E, P, C)."""
        hidden = self.filters[1](self.filters[0](edges.radial))  # (E, H)
        if self.node is not None:
            pair = torch.cat([x.scalars[edges.target], x.scalars[edges.source]], dim=1)  # (E, 2C)
            hidden = hidden * (1.0 + self.node(pair))
        return self.filters[2](hidden).view(-1, len(self.paths), self.channels)

    def forward(self, x: TensorFeatures, edges: Edges) -> TensorFeatures:
        n_edges = edges.source.shape[0]
        filters = self._filters(x, edges)  # (E, P, C)
        # x_j with k indices contracted against u, shared by all paths that need it
        contracted: dict[tuple[int, int], torch.Tensor] = {(a, 0): x.rank(a)[edges.source] for a in RANKS}
        for a, k in sorted({(p.a, p.contractions) for p in self.paths}):
            for kk in range(1, k + 1):
                if (a, kk) not in contracted:
                    contracted[(a, kk)] = contract_with_unit(contracted[(a, kk - 1)], edges.unit, 1, 1)
        # filter-weighted sums grouped by (output rank, number q of outer factors of u)
        grouped: dict[tuple[int, int], torch.Tensor] = {}
        for p, path in enumerate(self.paths):
            q = path.r - path.contractions
            y = contracted[(path.a, path.contractions)]  # (E, C) + (3,) * (o - q)
            term = filters[:, p].reshape((n_edges, self.channels) + (1,) * (path.o - q)) * y
            key = (path.o, q)
            grouped[key] = grouped[key] + term if key in grouped else term
        blocks = []
        for o in RANKS:
            message = torch.zeros(
                (n_edges, self.channels) + (3,) * o, dtype=x.scalars.dtype, device=x.scalars.device
            )
            for (oo, q), y in grouped.items():
                if oo == o:
                    message = message + contract_with_unit(y, edges.unit, q, 0)  # y (x) u^(x)q
            agg = torch.zeros(
                (edges.n_atoms,) + message.shape[1:], dtype=message.dtype, device=message.device
            )
            blocks.append(agg.index_add(0, edges.target, message) / self.avg_neighbours)  # (N, C, 3...)
        return TensorFeatures.from_ranks(blocks)

    def extra_repr(self) -> str:
        paths = ", ".join(f"{p.a}x{p.r}->{p.o}" for p in self.paths)
        return f"channels={self.channels}, avg_neighbours={self.avg_neighbours}, paths=[{paths}]"


class GatedNonlinearity(nn.Module):
    """SiLU on scalars; x * sigmoid(a_c |x_c|^2 + b_c(s)) on vectors and matrices.

    The gate offset b_c is a linear function of the atom's scalars, so scalars can switch
    tensor channels on and off; a_c is learned per channel and rank.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.norm_weight = nn.Parameter(torch.zeros(2, channels))
        self.gate = nn.Linear(channels, 2 * channels)

    def forward(self, x: TensorFeatures) -> TensorFeatures:
        offsets = self.gate(x.scalars).view(-1, 2, self.channels)  # (N, 2, C)
        v2 = (x.vectors * x.vectors).sum(-1)  # (N, C)
        m2 = (x.matrices * x.matrices).sum((-2, -1))  # (N, C)
        gv = torch.sigmoid(self.norm_weight[0] * v2 + offsets[:, 0])  # (N, C)
        gm = torch.sigmoid(self.norm_weight[1] * m2 + offsets[:, 1])  # (N, C)
        return TensorFeatures(
            nn.functional.silu(x.scalars), x.vectors * gv[..., None], x.matrices * gm[..., None, None]
        )

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


class TensorBlock(nn.Module):
    """One interaction: linear -> messages -> linear (+ tensor invariants into scalars) -> gate, residual."""

    def __init__(
        self,
        channels: int,
        n_basis: int,
        radial_hidden: int = 32,
        max_filter_rank: int = 2,
        avg_neighbours: float = 10.0,
        node_filters: bool = False,
    ) -> None:
        super().__init__()
        self.pre = TensorLinear(channels, channels)
        self.message = TensorMessage(channels, n_basis, radial_hidden, max_filter_rank, avg_neighbours, node_filters)
        self.post = TensorLinear(channels, channels)
        self.invariants = nn.Linear(3 * channels, channels, bias=False)
        self.activation = GatedNonlinearity(channels)

    def forward(self, x: TensorFeatures, edges: Edges) -> TensorFeatures:
        y = self.post(self.message(self.pre(x), edges))
        trace = torch.diagonal(y.matrices, dim1=-2, dim2=-1).sum(-1)  # (N, C)
        inv = torch.cat(
            [soft_norm(y.vectors, (-1,)), trace, soft_norm(y.matrices, (-2, -1))], dim=1
        )  # (N, 3C)
        y = TensorFeatures(y.scalars + self.invariants(inv), y.vectors, y.matrices)
        return x + self.activation(y)
