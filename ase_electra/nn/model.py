"""The ELECTRA network: Graph -> TensorFeatures -> GaussianMixture.

    inertia frames (symmetry.py) + element one-hot  ->  embedding  ->  TensorFeatures (N, C)
    -> layers x [TensorBlock (tensors.py) -> Debias (symmetry.py)]
    -> GaussianHeads (heads.py): core + floating Gaussians, weights N_e * softmax

:class:`ElectraConfig` holds every hyperparameter and round-trips through a JSON dict,
so a saved model is its config plus a state dict (see ``models/electra.py``).

A trained model learns new elements without forgetting the old ones (:meth:`ElectraModel.grown`):
a new element's one-hot column starts as a copy of its analogue's (the known element with the
same number of outer s and p electrons, :func:`analogue`), so the network sees it as that
element; its per-element head rows start from its promolecule Gaussians, shifted so that in a
hydride (:func:`calibration_hydride`) its Gaussians come out exactly as the promolecule's
weights and widths. Atoms of the old elements never read the new column or rows, so they get
the same mixture as before.

Legend: N atoms, E edges, C channels, S structures.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.data import covalent_radii
from torch import nn

from ..errors import InvalidInputError, UnknownElementError
from ..gaussians import GaussianMixture
from ..graph import Graph
from .heads import AtomicReference, GaussianHeads, core_electrons, count_core
from .radial import RadialBasis
from .symmetry import N_FRAME_MATRICES, N_FRAME_SCALARS, N_FRAME_VECTORS, N_LATTICE_VECTORS, Debias, frame_features
from .tensors import Edges, TensorBlock, TensorFeatures

__all__ = [
    "ElectraConfig", "ElectraModel", "analogue", "calibration_hydride", "floating_counts", "outer_electrons",
    "valence_electrons",
]


#: Head parameters and buffers with one row per element (the row of ``ElectraModel.element_row[z]``).
_ELEMENT_ROWS = ("core_sigma0", "core_logit", "core_theta", "float_logit", "float_size")
_CORE_ROWS = ("core_logit", "core_theta")  # the trainable core Gaussian rows: weights and widths


def valence_electrons(z: int) -> int:
    """Electrons outside the preceding noble-gas core."""
    return z - core_electrons(z)


def outer_electrons(z: int) -> int:
    """Electrons in the outer s and p shells: valence electrons less a filled 3d shell (Ga..Kr).

    >>> outer_electrons(8), outer_electrons(16), outer_electrons(35)
    (6, 6, 7)
    """
    return valence_electrons(z) - (10 if 31 <= z <= 36 else 0)


def analogue(z: int, known: tuple[int, ...]) -> int:
    """The element of ``known`` a new element ``z`` starts as: among those of its kind (H and He,
    or heavier; any if none), the one with the closest number of outer electrons, then the
    closest atomic number (S -> O, Cl and Br -> F, P -> N, Si and B -> C with H, C, N, O, F).
    """
    if not known:
        raise InvalidInputError("analogue: no known elements to start from")
    kind = [k for k in known if (k <= 2) == (z <= 2)] or list(known)
    return min(kind, key=lambda k: (abs(outer_electrons(k) - outer_electrons(z)), abs(k - z), k))


def calibration_hydride(z: int) -> Atoms:
    """Element ``z`` bonded to hydrogen atoms (Angstrom): 4 - |4 - outer electrons| of them, at least
    one, along tetrahedral directions at the sum of the covalent radii (ASE's). The structure
    :meth:`ElectraModel.grown` calibrates a new element's Gaussians on.
    """
    n = max(1, 4 - abs(4 - outer_electrons(z)))
    directions = np.array([[1, 1, 1], [-1, -1, 1], [-1, 1, -1], [1, -1, -1]]) / math.sqrt(3)
    bond = covalent_radii[z] + covalent_radii[1]
    return Atoms([z] + [1] * n, positions=np.vstack([np.zeros(3), bond * directions[:n]]))


def floating_counts(elements: tuple[int, ...], heavy: int, light: int) -> tuple[int, ...]:
    """Floating Gaussians per element: ``light`` for H and He, ``heavy`` for the rest."""
    return tuple(light if z <= 2 else heavy for z in elements)


@dataclass(frozen=True)
class ElectraConfig:
    """Hyperparameters of :class:`ElectraModel`; JSON-serialisable via :meth:`to_dict`.

    Parameters
    ----------
    elements : tuple of int
        Supported atomic numbers, ascending.
    n_core, n_floating : tuple of int
        Core (on-nucleus) and floating Gaussians per element, aligned with ``elements``.
    channels, layers : int
        Width (channels per rank) and number of message-passing blocks.
    cutoff : float, Angstrom
        Neighbour cutoff.
    n_bessel, radial_hidden : int
        Radial basis size and hidden width of the radial filter MLP.
    max_filter_rank : int
        Highest power of the bond direction in messages (2 or 3).
    avg_neighbours : float
        Divisor of message sums.
    width_floor : float, Angstrom
        Smallest standard deviation of floating Gaussians.
    core_range : float
        Core widths stay within [core_range, 2 - core_range] times their initial value.
    head_init_scale : float
        Scale of feature-dependent head weights at initialisation.
    sign_length, sign_moment, degeneracy : float
        Frame sign and degeneracy tolerances (see ``nn/symmetry.py``).
    debias : bool
        Apply a debiasing layer after every block.
    node_filters : bool
        Radial filters modulated by both atoms' scalars (``nn.tensors.TensorMessage``).
    lattice_frame : bool
        Periodic structures: the unit lattice vectors join every atom's starting vectors,
        so that sites of cubic symmetry can place and shape Gaussians off the atom
        (``nn/symmetry.py``); molecules are unaffected.
    """

    elements: tuple[int, ...]
    n_core: tuple[int, ...]
    n_floating: tuple[int, ...]
    channels: int = 32
    layers: int = 3
    cutoff: float = 4.5
    n_bessel: int = 8
    radial_hidden: int = 32
    max_filter_rank: int = 2
    avg_neighbours: float = 12.0
    width_floor: float = 0.07
    core_range: float = 0.5
    head_init_scale: float = 0.01
    sign_length: float = 0.01
    sign_moment: float = 0.01
    degeneracy: float = 0.02
    debias: bool = True
    node_filters: bool = False
    lattice_frame: bool = False

    def __post_init__(self) -> None:
        for name in ("elements", "n_core", "n_floating"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        els = self.elements
        if not els or list(els) != sorted(set(els)) or els[0] < 1:
            raise InvalidInputError(f"config elements: expected ascending unique atomic numbers, got {els}")
        for name in ("n_core", "n_floating"):
            if len(getattr(self, name)) != len(els):
                raise InvalidInputError(
                    f"config {name}: expected {len(els)} entries, got {getattr(self, name)}"
                )
        if min(self.n_core) < 0 or min(self.n_floating) < 1:
            raise InvalidInputError(
                f"config: expected n_core >= 0 and n_floating >= 1, got {self.n_core}, {self.n_floating}"
            )
        for name in ("channels", "layers", "n_bessel", "radial_hidden"):
            if int(getattr(self, name)) < 1:
                raise InvalidInputError(f"config {name}: expected >= 1, got {getattr(self, name)}")
        if self.max_filter_rank not in (2, 3):
            raise InvalidInputError(f"config max_filter_rank: expected 2 or 3, got {self.max_filter_rank}")
        for name in ("cutoff", "avg_neighbours", "width_floor", "sign_length", "sign_moment", "degeneracy"):
            if not float(getattr(self, name)) > 0:
                raise InvalidInputError(f"config {name}: expected > 0, got {getattr(self, name)}")
        if not 0.0 < self.core_range <= 1.0:
            raise InvalidInputError(f"config core_range: expected in (0, 1], got {self.core_range}")

    # ------------------------------------------------------------------ construction
    @classmethod
    def for_reference(
        cls,
        reference: Mapping[int, AtomicReference],
        elements: tuple[int, ...] | None = None,
        *,
        floating_heavy: int = 16,
        floating_light: int = 6,
        floating_per_electron: float | None = None,
        **kwargs: Any,
    ) -> ElectraConfig:
        """Config whose Gaussian counts follow a promolecule table.

        Core Gaussians per element: the table's narrowest components holding at most the
        noble-gas core's electrons (``nn.heads.count_core``).
        Floating Gaussians: ``floating_per_electron`` x valence electrons (at least 1) if
        given, else ``floating_light`` for H and He and ``floating_heavy`` for the rest.
        Other keyword arguments are config fields.
        """
        elements = tuple(sorted(reference)) if elements is None else tuple(sorted(elements))
        missing = [z for z in elements if z not in reference]
        if missing:
            raise InvalidInputError(f"elements {missing}: not in the promolecule table")
        n_core = tuple(count_core(reference[z], z) for z in elements)
        if floating_per_electron is not None:
            n_floating = tuple(max(1, round(floating_per_electron * valence_electrons(z))) for z in elements)
        else:
            n_floating = floating_counts(elements, floating_heavy, floating_light)
        return cls(elements, n_core, n_floating, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ElectraConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInputError(f"config: unknown fields {unknown}")
        return cls(**dict(data))


class ElectraModel(nn.Module):
    """Equivariant Cartesian-tensor network predicting a density as a Gaussian mixture.

    Parameters
    ----------
    config : ElectraConfig
    reference : mapping from atomic number to AtomicReference, optional
        Promolecule table the Gaussian heads start from; None when weights will be loaded.
    """

    element_row: torch.Tensor

    def __init__(self, config: ElectraConfig, reference: Mapping[int, AtomicReference] | None = None) -> None:
        super().__init__()
        self.config = c = config
        n_el = len(c.elements)
        row_of = torch.full((max(c.elements) + 1,), -1, dtype=torch.int64)
        row_of[list(c.elements)] = torch.arange(n_el)
        self.register_buffer("element_row", row_of, persistent=False)
        self.radial = RadialBasis(c.cutoff, c.n_bessel)
        self.embed_scalars = nn.Linear(n_el + N_FRAME_SCALARS + 1, c.channels)
        self.embed_vectors = nn.Linear(N_FRAME_VECTORS + N_LATTICE_VECTORS * c.lattice_frame, c.channels, bias=False)
        self.embed_matrices = nn.Linear(N_FRAME_MATRICES, c.channels, bias=False)
        self.blocks = nn.ModuleList(
            TensorBlock(c.channels, c.n_bessel, c.radial_hidden, c.max_filter_rank, c.avg_neighbours, c.node_filters)
            for _ in range(c.layers)
        )
        self.debias = nn.ModuleList(
            Debias(c.channels, degeneracy=c.degeneracy) for _ in range(c.layers if c.debias else 0)
        )
        self.heads = GaussianHeads(
            c.channels,
            c.elements,
            c.n_core,
            c.n_floating,
            c.width_floor,
            c.core_range,
            c.head_init_scale,
            reference,
        )

    @property
    def dtype(self) -> torch.dtype:
        return self.heads.core_logit.dtype

    def forward(self, graph: Graph) -> GaussianMixture:
        """Predict the density of every structure of ``graph`` (one batched mixture)."""
        graph = graph.to(device=self.heads.core_logit.device)
        return self.heads(self._features(graph), graph)

    def _features(self, graph: Graph) -> TensorFeatures:
        """Final per-atom features of ``graph`` (on this model's device), the heads' input."""
        c = self.config
        self._check_elements(graph.numbers)
        dtype = self.dtype
        r = graph.edge_vectors().to(dtype)  # (E, 3)
        d = torch.linalg.norm(r, dim=-1)  # (E,)
        source, target = graph.edge_index
        edges = Edges(source, target, r / d[:, None], self.radial(d), graph.n_atoms)
        x = self._embed(graph, dtype)
        for i, block in enumerate(self.blocks):
            x = block(x, edges)
            if c.debias:
                x = self.debias[i](x)
        return x

    def grown(self, elements: Iterable[int], reference: Mapping[int, AtomicReference]) -> ElectraModel:
        """A copy that also supports ``elements``, predicting exactly what this model does for
        structures of its own elements. This model is left as it is.

        Each new element Z takes the Gaussian counts of its :func:`analogue` A (floating) and of
        ``reference`` (core: :func:`~ase_electra.nn.heads.count_core`), and A's one-hot
        embedding column. Its head rows start from ``reference[Z]`` (split over the slots as
        a fresh model's) less the feature-dependent head outputs of Z in
        :func:`calibration_hydride`, and its logits are shifted so that in that hydride Z holds
        exactly Z electrons in the promolecule's shares and widths (floating Gaussians are
        displaced and shaped as A's would be there).

        Parameters
        ----------
        elements : iterable of int
            Atomic numbers to support; those already supported are ignored.
        reference : mapping from atomic number to AtomicReference
            Promolecule table holding every new element.
        """
        c = self.config
        new = sorted(set(int(z) for z in elements) - set(c.elements))
        missing = [z for z in new if z not in reference]
        if missing:
            raise InvalidInputError(f"elements {missing}: not in the promolecule table")
        if not new:
            return copy.deepcopy(self)
        counts = {z: (n_core, n_floating) for z, n_core, n_floating in zip(c.elements, c.n_core, c.n_floating)}
        for z in new:
            counts[z] = (count_core(reference[z], z), counts[analogue(z, c.elements)][1])
        order = tuple(sorted(counts))
        config = dataclasses.replace(
            c, elements=order, n_core=tuple(counts[z][0] for z in order), n_floating=tuple(counts[z][1] for z in order)
        )
        grown = ElectraModel(config).to(self.heads.core_logit)  # dtype and device
        state = self.state_dict()
        kept = {k: v for k, v in state.items() if not k.startswith("heads.") and k != "embed_scalars.weight"}
        kept.update({k: v for k, v in state.items() if k.startswith(("heads.scalar_head", "heads.vector_head",
                                                                        "heads.matrix_head"))})
        unmatched = grown.load_state_dict(kept, strict=False)
        assert not unmatched.unexpected_keys
        fresh = GaussianHeads(c.channels, tuple(new), tuple(counts[z][0] for z in new),
                              tuple(counts[z][1] for z in new), c.width_floor, c.core_range, reference=reference)
        fresh = fresh.to(self.heads.core_logit)
        # one-hot columns: the elements in the new order, each new one as its analogue
        source = [c.elements.index(analogue(z, c.elements) if z in new else z) for z in order]
        n_el = len(c.elements)
        head, old = grown.heads, self.heads
        with torch.no_grad():
            weight = self.embed_scalars.weight  # (C, n_el + frame scalars + 1)
            grown.embed_scalars.weight.copy_(torch.cat([weight[:, source], weight[:, n_el:]], dim=1))
            for row, z in enumerate(order):
                src, table = (fresh, new.index(z)) if z in new else (old, c.elements.index(z))
                for name in _ELEMENT_ROWS:
                    values = getattr(src, name)[table]
                    getattr(head, name)[row, : len(values)] = values
            for z in new:
                grown._calibrate(z)
        return grown

    def element_masks(self, elements: Iterable[int], core_only: bool = False) -> dict[str, torch.Tensor]:
        """The entries of this model's parameters that belong to ``elements`` alone, by parameter name.

        They are the elements' one-hot columns of ``embed_scalars.weight`` and their rows of
        the per-element head parameters; a structure without these elements never reads
        them. With ``core_only``, only their core Gaussians' widths and weights
        (``heads.core_theta``, ``heads.core_logit``). Parameters holding none of them are
        left out. Masks are bool tensors of the parameters' shapes, on their devices.
        """
        elements = sorted(set(int(z) for z in elements))
        unknown = sorted(set(elements) - set(self.config.elements))
        if unknown:
            raise InvalidInputError(f"elements {unknown}: not in the model (it has {list(self.config.elements)})")
        rows = [int(self.element_row[z]) for z in elements]
        params = dict(self.named_parameters())
        masks = {}
        if rows:
            if not core_only:
                column = torch.zeros_like(params["embed_scalars.weight"], dtype=torch.bool)
                column[:, rows] = True
                masks["embed_scalars.weight"] = column
            for name in _CORE_ROWS if core_only else _ELEMENT_ROWS:
                if f"heads.{name}" not in params:  # a buffer (core_sigma0): never trained
                    continue
                mask = torch.zeros_like(params[f"heads.{name}"], dtype=torch.bool)
                mask[rows] = True
                masks[f"heads.{name}"] = mask
        return masks

    def _calibrate(self, z: int) -> None:
        """Shift element ``z``'s head rows, set from its promolecule Gaussians, so that its atom in
        :func:`calibration_hydride` gets those weights and widths (see :meth:`grown`)."""
        from ..graph import Graph

        heads, row = self.heads, int(self.element_row[z])
        hydride = calibration_hydride(z)
        graph = Graph.from_atoms([hydride], self.config.cutoff, dtype=torch.float64).to(device=heads.core_logit.device)
        x = self._features(graph)
        h = heads.scalar_head(x.scalars[:1]).view(2, heads.mf).to(heads.float_logit)  # (2, Mf) for atom z
        heads.float_logit[row] -= h[0]
        heads.float_size[row] -= h[1]
        weights = self.heads(x, graph).weights  # (K,), atom z's Gaussians first
        own = int(heads.slot_mask[row].sum())
        hydrogen = len(hydride) - 1
        shift = torch.log(weights[own:].sum() * z / (weights[:own].sum() * hydrogen))
        heads.core_logit[row] += shift.to(heads.core_logit)
        heads.float_logit[row] += shift.to(heads.float_logit)

    def with_cusps(self, elements: Iterable[int], width: float = 0.5, share: float = 0.01) -> ElectraModel:
        """A copy in which each of ``elements`` has one more core Gaussian, on its nucleus: ``width`` times
        as wide as its narrowest core Gaussian, with ``share`` times that one's weight logit-wise (the
        structure's softmax renormalises). This model is left as it is.

        The free-atom fits behind the core Gaussians minimise a radial error that does not see
        the last few thousandths of an Angstrom, where def2-SVP's tightest s functions put a
        spike: the default's nuclei of F and P to Br sat 16-26 % low. The new slot, trained
        with the density at and around the nuclei in the loss (``--nuclear-weight``,
        ``--core-only``), holds that spike without moving the others. It takes a padding slot
        of the core table (every element has fewer than the widest element's count), so the
        parameter shapes and all other elements are unchanged.
        """
        c, heads = self.config, self.heads
        n_core = list(c.n_core)
        out = copy.deepcopy(self)
        for z in sorted({int(z) for z in elements}):
            if z not in c.elements:
                raise InvalidInputError(f"element {z}: not in the model (it has {list(c.elements)})")
            row = c.elements.index(z)
            k = n_core[row]
            if k == 0 or k >= heads.mc:
                raise InvalidInputError(f"element {z}: {k} core Gaussians, no free core slot for a cusp "
                                        f"(the table holds {heads.mc}; H has none)")
            with torch.no_grad():
                sigma = heads.core_sigma(row)[:k]
                narrowest = int(torch.argmin(sigma))
                out.heads.core_sigma0[row, k] = width * sigma[narrowest]
                out.heads.core_theta[row, k] = 0.0  # sigma = sigma0: the middle of its range
                out.heads.core_logit[row, k] = heads.core_logit[row, narrowest] + math.log(share)
                out.heads.slot_mask[row, k] = True
            n_core[row] = k + 1
        out.config = dataclasses.replace(c, n_core=tuple(n_core))
        return out

    def widened(self, n_floating: tuple[int, ...], jitter: float = 0.02, seed: int = 0) -> ElectraModel:
        """A copy with ``n_floating`` floating Gaussians per element (none fewer than now) that
        predicts the same density up to ``jitter`` (see :meth:`GaussianHeads.widened`); the
        network below the heads is copied unchanged. This model is left as it is."""
        config = dataclasses.replace(self.config, n_floating=tuple(n_floating))
        wide = ElectraModel(config).to(self.heads.core_logit)  # dtype and device
        wide.heads = self.heads.widened(config.n_floating, jitter, torch.Generator().manual_seed(seed))
        trunk = {k: v for k, v in self.state_dict().items() if not k.startswith("heads.")}
        unmatched = wide.load_state_dict(trunk, strict=False)
        assert not unmatched.unexpected_keys and all(k.startswith("heads.") for k in unmatched.missing_keys)
        return wide

    def _embed(self, graph: Graph, dtype: torch.dtype) -> TensorFeatures:
        """Initial features. The element one-hot part of ``embed_scalars`` is a column lookup,
        not a product with a one-hot vector: the same values, but exact, so a :meth:`grown`
        model (more one-hot columns) gives its old elements bit for bit the same features."""
        c = self.config
        frames = frame_features(graph, c.cutoff, c.sign_length, c.sign_moment, c.degeneracy, c.lattice_frame)
        z_total = torch.zeros_like(graph.n_electrons).index_add(0, graph.batch, graph.numbers.to(graph.dtype))
        excess = (z_total - graph.n_electrons) / graph.atoms_per_structure().to(
            graph.dtype
        )  # (S,) charge per atom
        n_el, weight = len(c.elements), self.embed_scalars.weight  # (C, n_el + frame scalars + 1)
        rest = torch.cat([frames.scalars.to(dtype), excess[graph.batch, None].to(dtype)], dim=1)  # (N, F + 1)
        scalars = nn.functional.linear(rest, weight[:, n_el:].contiguous(), self.embed_scalars.bias)  # (N, C)
        scalars = scalars + weight[:, self.element_row[graph.numbers]].T  # (N, C)
        vectors = self.embed_vectors(frames.vectors.to(dtype).transpose(1, 2)).transpose(1, 2)  # (N, C, 3)
        matrices = self.embed_matrices(frames.matrices.to(dtype).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return TensorFeatures(scalars, vectors, matrices)  # (N, C), (N, C, 3), (N, C, 3, 3)

    def _check_elements(self, numbers: torch.Tensor) -> None:
        known = (numbers < self.element_row.shape[0]) & (numbers >= 0)
        ok = known.clone()
        ok[known] = self.element_row[numbers[known]] >= 0
        if not bool(ok.all()):
            from ase.data import chemical_symbols

            bad = sorted({int(z) for z in numbers[~ok].tolist()})
            names = ", ".join(chemical_symbols[z] if z < len(chemical_symbols) else str(z) for z in bad)
            raise UnknownElementError(f"element(s) {names} not supported by this ELECTRA model")

    def extra_repr(self) -> str:
        c = self.config
        return f"elements={c.elements}, channels={c.channels}, layers={c.layers}, cutoff={c.cutoff}"
