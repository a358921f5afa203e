"""Atoms -> Graph: the batched neighbour graph every network reads.

A :class:`Graph` holds a batch of S structures with N atoms in total. Atoms of one
structure are contiguous. Edge e connects source atom ``j = edge_index[0, e]`` to target
atom ``i = edge_index[1, e]`` (messages flow j -> i), and the bond vector is::

    r_ij = positions[j] + shifts[e] - positions[i]          (Angstrom)

so ``shifts`` is the lattice translation of the periodic image of j (zero for
molecules). Every ordered pair within the cutoff appears, including an atom and its own
periodic images, but never an atom and itself at zero distance.

Legend: N atoms, E edges, S structures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms
from ase.neighborlist import neighbor_list

from .errors import InvalidInputError

__all__ = ["Graph", "MIN_DISTANCE"]

#: Atoms closer than this (Angstrom) are rejected: bond directions would be undefined.
MIN_DISTANCE = 0.01


@dataclass(frozen=True, eq=False)
class Graph:
    """A batch of structures as one neighbour graph.

    Parameters
    ----------
    positions : Tensor, shape (N, 3), Angstrom
    numbers : Tensor, shape (N,), int64
        Atomic numbers.
    batch : Tensor, shape (N,), int64
        Structure index of each atom, non-decreasing.
    edge_index : Tensor, shape (2, E), int64
        Rows (source j, target i).
    shifts : Tensor, shape (E, 3), Angstrom
        Lattice translation added to the source position.
    cells : Tensor, shape (S, 3, 3), Angstrom
        Lattice vectors as rows (zeros for a molecule without a cell).
    pbc : Tensor, shape (S, 3), bool
    n_electrons : Tensor, shape (S,), electrons
        Sum of atomic numbers minus ``atoms.info["charge"]``.
    cutoff : float, Angstrom
        Neighbour cutoff the edges were built with.
    """

    positions: torch.Tensor
    numbers: torch.Tensor
    batch: torch.Tensor
    edge_index: torch.Tensor
    shifts: torch.Tensor
    cells: torch.Tensor
    pbc: torch.Tensor
    n_electrons: torch.Tensor
    cutoff: float

    def __post_init__(self) -> None:
        n, e, s = self.positions.shape[0], self.edge_index.shape[-1], self.cells.shape[0]
        expected = {
            "positions": (self.positions, (n, 3)),
            "numbers": (self.numbers, (n,)),
            "batch": (self.batch, (n,)),
            "edge_index": (self.edge_index, (2, e)),
            "shifts": (self.shifts, (e, 3)),
            "cells": (self.cells, (s, 3, 3)),
            "pbc": (self.pbc, (s, 3)),
            "n_electrons": (self.n_electrons, (s,)),
        }
        for name, (tensor, shape) in expected.items():
            if tuple(tensor.shape) != shape:
                raise InvalidInputError(f"graph {name}: expected {shape}, got {tuple(tensor.shape)}")
        if n > 1 and bool((self.batch[1:] < self.batch[:-1]).any()):
            raise InvalidInputError("graph batch: atoms of one structure must be contiguous and in order")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_atoms(
        cls,
        structures: Sequence[Atoms],
        cutoff: float,
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> Graph:
        """Build the neighbour graph of a batch of structures.

        Parameters
        ----------
        structures : sequence of ase.Atoms
            Positions in Angstrom; periodic along ``atoms.pbc``. ``atoms.info["charge"]``
            (electrons removed, default 0) sets the electron count.
        cutoff : float, Angstrom
            Neighbour cutoff radius.
        dtype, device
            Floating dtype and device of the returned tensors.
        """
        if not structures:
            raise InvalidInputError("structures: expected at least one structure")
        if not (np.isfinite(cutoff) and cutoff > 0):
            raise InvalidInputError(f"cutoff: expected a finite value > 0, got {cutoff}")
        positions, numbers, batch, sources, targets, shifts, cells, pbcs, n_electrons = ([] for _ in range(9))
        offset = 0
        for s, atoms in enumerate(structures):
            label = atoms.info.get("name", f"structure {s}")
            n = len(atoms)
            if n == 0:
                raise InvalidInputError(f"{label}: structure has no atoms")
            pos = np.asarray(atoms.positions, dtype=np.float64)
            if not np.isfinite(pos).all():
                raise InvalidInputError(f"{label}: non-finite atomic positions")
            cell = np.asarray(atoms.cell.array, dtype=np.float64)
            pbc = np.asarray(atoms.pbc, dtype=bool)
            if pbc.any() and abs(np.linalg.det(cell)) < 1e-9:
                raise InvalidInputError(f"{label}: periodic structure with a singular cell {cell.tolist()}")
            i, j, d, shift = _neighbours(atoms, cutoff)
            if len(d) and d.min() < MIN_DISTANCE:
                k = int(np.argmin(d))
                raise InvalidInputError(
                    f"{label}: atoms {i[k]} and {j[k]} are {d[k]:.2g} A apart (closer than {MIN_DISTANCE} A)"
                )
            electrons = float(atoms.numbers.sum()) - float(atoms.info.get("charge", 0.0))
            if not electrons >= 0:
                raise InvalidInputError(
                    f"{label}: charge {atoms.info.get('charge')} leaves {electrons} electrons (expected >= 0)"
                )
            positions.append(pos)
            numbers.append(np.asarray(atoms.numbers, dtype=np.int64))
            batch.append(np.full(n, s, dtype=np.int64))
            sources.append(j + offset)
            targets.append(i + offset)
            shifts.append(shift @ cell)
            cells.append(cell)
            pbcs.append(pbc)
            n_electrons.append(electrons)
            offset += n

        def as_float(parts: list[np.ndarray]) -> torch.Tensor:
            return torch.as_tensor(np.concatenate(parts), dtype=dtype, device=device)

        def as_long(parts: list[np.ndarray]) -> torch.Tensor:
            return torch.as_tensor(np.concatenate(parts), dtype=torch.int64, device=device)

        return cls(
            positions=as_float(positions),
            numbers=as_long(numbers),
            batch=as_long(batch),
            edge_index=torch.stack([as_long(sources), as_long(targets)]),
            shifts=as_float(shifts).reshape(-1, 3),
            cells=torch.as_tensor(np.stack(cells), dtype=dtype, device=device),
            pbc=torch.as_tensor(np.stack(pbcs), device=device),
            n_electrons=torch.as_tensor(n_electrons, dtype=dtype, device=device),
            cutoff=float(cutoff),
        )

    # ------------------------------------------------------------------ views
    @property
    def n_atoms(self) -> int:
        return self.positions.shape[0]

    @property
    def n_edges(self) -> int:
        return self.edge_index.shape[1]

    @property
    def n_structures(self) -> int:
        return self.cells.shape[0]

    @property
    def dtype(self) -> torch.dtype:
        return self.positions.dtype

    @property
    def device(self) -> torch.device:
        return self.positions.device

    def edge_vectors(self) -> torch.Tensor:
        """Bond vectors r_ij = r_j + shift - r_i, shape (E, 3), Angstrom."""
        source, target = self.edge_index
        return self.positions[source] + self.shifts - self.positions[target]

    def atoms_per_structure(self) -> torch.Tensor:
        """Number of atoms of each structure, shape (S,), int64."""
        return torch.bincount(self.batch, minlength=self.n_structures)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Graph:
        """Copy to another device and/or floating dtype (integer tensors keep theirs)."""

        def f(t: torch.Tensor) -> torch.Tensor:
            return t.to(device=device, dtype=dtype)

        def i(t: torch.Tensor) -> torch.Tensor:
            return t.to(device=device)

        return Graph(
            positions=f(self.positions),
            numbers=i(self.numbers),
            batch=i(self.batch),
            edge_index=i(self.edge_index),
            shifts=f(self.shifts),
            cells=f(self.cells),
            pbc=i(self.pbc),
            n_electrons=f(self.n_electrons),
            cutoff=self.cutoff,
        )

    def __repr__(self) -> str:
        return (
            f"Graph(n_structures={self.n_structures}, n_atoms={self.n_atoms}, n_edges={self.n_edges}, "
            f"cutoff={self.cutoff}, dtype={self.dtype}, device={self.device})"
        )


def _neighbours(atoms: Atoms, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Ordered neighbour pairs (i, j, distance, integer image shift S) of one structure.

    Uses ``ase.neighborlist.neighbor_list``: r_ij = r_j + S @ cell - r_i. A structure
    without any periodic axis is given a zero cell, which ASE treats as open boundaries,
    so a molecule's (possibly tiny) cell never clips its neighbours.
    """
    if not np.any(atoms.pbc):
        atoms = Atoms(numbers=atoms.numbers, positions=atoms.positions)
    i, j, d, shift = neighbor_list("ijdS", atoms, cutoff, self_interaction=False)
    return i.astype(np.int64), j.astype(np.int64), d, shift.astype(np.float64)
