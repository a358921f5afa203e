"""Pictures of densities: log-scale slices through a structure's principal plane, as PNG.

A picture has two panels sharing their vertical axis, like a technical drawing:

- the principal plane: through the centre of mass, spanned by the two principal axes
  along which the atoms spread most (the two largest eigenvalues of the mass-weighted
  second-moment tensor, i.e. the two smallest moments of inertia). For a planar
  molecule it is the molecular plane.
- the side view: the perpendicular plane through the same centre, spanned by the
  plane's normal and its second axis.

Fully periodic structures are cut instead along the low-index lattice plane through the
first atom that holds the most atoms nearby (for diamond-structure Si, a (110) plane
with its zigzag bonds), over a 10 Angstrom window. Values come from the density's grid
by trilinear interpolation of log10(rho), periodic along periodic grid axes; points
outside a molecule's box are left blank (grey). Colours are log10 of rho in
e/Angstrom^3, 4 bands per decade, down to 1e-4; atoms are projected onto each panel,
filled when they lie within 0.3 Angstrom of its plane and hollow otherwise.

matplotlib is imported on first use and draws on its Agg canvas, without pyplot, so
rendering needs no display and leaves the caller's matplotlib backend alone.

Legend: P sample points, N atoms, M atoms and periodic images.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
from ase import Atoms

from .density import Density
from .io._atomic import atomic_path

__all__ = ["Plane", "principal_plane", "sample_density", "render_density", "write_density_png"]

#: Density floor of the colour scale, e/Angstrom^3 (values below share the darkest colour).
RHO_MIN = 1e-4
#: Atoms closer than this to a plane are drawn filled, Angstrom.
IN_PLANE = 0.3
#: Space around the atoms' projections in molecule pictures, Angstrom.
PAD = 2.2
#: Side of the square window of periodic pictures, Angstrom.
WINDOW = 10.0
_LEVELS_PER_DECADE = 4
_PIXELS_PER_ANGSTROM = 20
_WIDTH = 9.0  # inches


@dataclass(frozen=True)
class Plane:
    """A plane in space with an orthonormal frame.

    Parameters
    ----------
    origin : ndarray, shape (3,), Angstrom
        A point of the plane (the centre of the picture's coordinates).
    axes : ndarray, shape (3, 3)
        Rows u, v, n: two in-plane unit vectors and the unit normal, right-handed.
    periodic : bool
        Cut through a periodic structure (a lattice plane).
    """

    origin: np.ndarray
    axes: np.ndarray
    periodic: bool = False

    def project(self, positions: np.ndarray) -> np.ndarray:
        """Coordinates (u, v, n) of ``positions`` (N, 3) in this frame, shape (N, 3), Angstrom."""
        return (np.asarray(positions, dtype=np.float64) - self.origin) @ self.axes.T


def principal_plane(atoms: Atoms) -> Plane:
    """The plane a picture of ``atoms`` cuts through (see the module docstring).

    Each axis is signed so that its largest Cartesian component is positive, so the
    picture does not flip between nearly identical frames.

    Examples
    --------
    >>> from ase.build import molecule
    >>> np.abs(principal_plane(molecule("C6H6")).axes[2]).round(6).tolist()
    [0.0, 0.0, 1.0]
    """
    if all(atoms.pbc):
        return _lattice_plane(atoms)
    positions, masses = atoms.positions, atoms.get_masses()
    centre = masses @ positions / masses.sum()
    d = positions - centre  # (N, 3)
    moments = (masses[:, None, None] * d[:, :, None] * d[:, None, :]).sum(0)  # (3, 3), amu A^2
    _, vectors = np.linalg.eigh(moments)  # ascending eigenvalues
    u, v = (_signed(vectors[:, i]) for i in (2, 1))
    return Plane(centre, np.stack([u, v, np.cross(u, v)]))


def _lattice_plane(atoms: Atoms) -> Plane:
    """The low-index lattice plane through the first atom holding the most atoms within 6 Angstrom.

    Candidate planes are spanned by two of a, b, c, a +- b, b +- c, a +- c; ties go to
    the earlier pair, so (a, b) wins among equals. The first axis is the shorter of the
    two lattice vectors.
    """
    cell = atoms.cell.array
    pairs = ((0, 1), (1, 2), (0, 2))
    vectors = [cell[0], cell[1], cell[2]] + [cell[i] + s * cell[j] for i, j in pairs for s in (1, -1)]
    around = _images(atoms, atoms.positions[0], 6.0)[1] - atoms.positions[0]  # (M, 3)
    best, best_count = None, -1
    for i, d1 in enumerate(vectors):
        for d2 in vectors[i + 1 :]:
            n = np.cross(d1, d2)
            if np.linalg.norm(n) < 1e-6 * np.linalg.norm(d1) * np.linalg.norm(d2):
                continue
            n /= np.linalg.norm(n)
            count = int((np.abs(around @ n) < IN_PLANE).sum())
            if count > best_count:
                best, best_count = (d1, d2, n), count
    d1, d2, n = best
    u = min(d1, d2, key=np.linalg.norm)
    u = u / np.linalg.norm(u)
    return Plane(atoms.positions[0].copy(), np.stack([u, np.cross(n, u), n]), periodic=True)


def _images(atoms: Atoms, centre: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Atomic numbers (M,) and positions (M, 3) of the atoms and their periodic images within ``radius``."""
    cell = atoms.cell.array
    heights = abs(np.linalg.det(cell)) / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
    reach = [int(np.ceil(radius / h)) + 1 if p else 0 for h, p in zip(heights, atoms.pbc)]
    shifts = np.stack(np.meshgrid(*[np.arange(-k, k + 1) for k in reach], indexing="ij"), -1).reshape(-1, 3)
    positions = (atoms.positions[None] + (shifts @ cell)[:, None]).reshape(-1, 3)  # (S * N, 3)
    numbers = np.tile(atoms.numbers, len(shifts))
    near = np.linalg.norm(positions - centre, axis=1) <= radius
    return numbers[near], positions[near]


def _signed(axis: np.ndarray) -> np.ndarray:
    return axis if axis[np.argmax(np.abs(axis))] > 0 else -axis


def sample_density(density: Density, points: np.ndarray) -> np.ndarray:
    """log10 of the density at ``points``, trilinear in log10(rho) between grid points.

    Parameters
    ----------
    density : Density
        Values (nx, ny, nz), e/Angstrom^3.
    points : ndarray, shape (P, 3), Angstrom

    Returns
    -------
    ndarray, shape (P,): log10(rho / (e/Angstrom^3)), floored at log10 of 1e-12; NaN
    outside the grid along non-periodic axes.
    """
    grid = density.grid
    shape = np.array(grid.shape)
    logs = np.log10(np.maximum(density.values, 1e-12))
    index = (np.asarray(points) - grid.origin) @ np.linalg.inv(grid.cell) * shape  # (P, 3) continuous indices
    outside = np.zeros(len(index), dtype=bool)
    lower = np.floor(index).astype(np.int64)
    t = index - lower  # (P, 3)
    corners = []
    for axis in range(3):
        lo, hi = lower[:, axis], lower[:, axis] + 1
        if grid.pbc[axis]:
            lo, hi = lo % shape[axis], hi % shape[axis]
        else:
            outside |= (index[:, axis] < 0) | (index[:, axis] > shape[axis] - 1)
            lo, hi = np.clip(lo, 0, shape[axis] - 1), np.clip(hi, 0, shape[axis] - 1)
        corners.append((lo, hi))
    out = np.zeros(len(index))
    for i in (0, 1):
        for j in (0, 1):
            for k in (0, 1):
                weight = (
                    (t[:, 0] if i else 1 - t[:, 0]) * (t[:, 1] if j else 1 - t[:, 1]) * (t[:, 2] if k else 1 - t[:, 2])
                )
                out += weight * logs[corners[0][i], corners[1][j], corners[2][k]]
    out[outside] = np.nan
    return out


def _extent(plane: Plane, atoms: Atoms) -> np.ndarray:
    """Picture limits [[u0, u1], [v0, v1], [n0, n1]] in the plane's frame, shape (3, 2), Angstrom."""
    if plane.periodic:
        return np.array([[-WINDOW / 2, WINDOW / 2], [-WINDOW / 2, WINDOW / 2], [-WINDOW / 4, WINDOW / 4]])
    coords = plane.project(atoms.positions)
    return np.stack([coords.min(0) - PAD, coords.max(0) + PAD], axis=1)


def _slice(density: Density, plane: Plane, rows: tuple[int, int], limits: np.ndarray):
    """Sample the plane of frame rows ``rows`` over ``limits`` (2, 2); returns x (nx,), y (ny,), log10 rho (ny, nx)."""
    (x0, x1), (y0, y1) = limits
    x = np.linspace(x0, x1, max(2, round((x1 - x0) * _PIXELS_PER_ANGSTROM)))
    y = np.linspace(y0, y1, max(2, round((y1 - y0) * _PIXELS_PER_ANGSTROM)))
    xx, yy = np.meshgrid(x, y)  # (ny, nx)
    points = plane.origin + xx.reshape(-1, 1) * plane.axes[rows[0]] + yy.reshape(-1, 1) * plane.axes[rows[1]]
    return x, y, sample_density(density, points).reshape(xx.shape)


def _atoms_in_view(atoms: Atoms, plane: Plane, limits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Atomic numbers (M,) and frame coordinates (M, 3) of the atoms (and images) inside ``limits``."""
    if plane.periodic:
        numbers, positions = _images(atoms, plane.origin, float(np.linalg.norm(limits[:, 1])))
    else:
        numbers, positions = atoms.numbers, atoms.positions
    coords = plane.project(positions)  # (M, 3)
    inside = np.all((coords >= limits[:, 0]) & (coords <= limits[:, 1]), axis=1)
    return numbers[inside], coords[inside]


def render_density(density: Density, name: str | None = None, model: str | None = None):
    """A matplotlib ``Figure`` of ``density``: principal-plane and side-view slices.

    Parameters
    ----------
    density : Density
        Values e/Angstrom^3 with its atoms (Angstrom).
    name, model : str, optional
        Frame and model names for the title, which also gives the chemical formula.
    """
    from ase.formula import Formula
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter

    atoms = density.atoms
    plane = principal_plane(atoms)
    limits = _extent(plane, atoms)
    first = "lattice plane" if plane.periodic else "principal plane"
    panels = [((0, 1), first, "axis 1 (Å)"), ((2, 1), "side view (perpendicular plane)", "normal (Å)")]
    slices = [_slice(density, plane, rows, limits[list(rows)]) for rows, *_ in panels]
    finite = np.concatenate([logs[np.isfinite(logs)] for *_, logs in slices])
    top = math.ceil(finite.max()) if finite.size else 0
    bottom = min(round(math.log10(RHO_MIN)), top - 1)
    levels = np.linspace(bottom, top, (top - bottom) * _LEVELS_PER_DECADE + 1)

    widths = [float(np.ptp(limits[rows[0]])) for rows, *_ in panels]
    height = min(7.0, max(3.6, 1.0 + (_WIDTH - 1.8) * float(np.ptp(limits[1])) / sum(widths)))
    fig = Figure(figsize=(_WIDTH, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": widths})
    view = _atoms_in_view(atoms, plane, limits)
    for ax, (rows, heading, xlabel), (x, y, logs) in zip(axes, panels, slices):
        filled = _draw_panel(ax, x, y, logs, levels, rows, view, label_all=rows == (0, 1) and not plane.periodic)
        ax.set_xlim(*limits[rows[0]])
        ax.set_ylim(*limits[rows[1]])
        ax.set_title(heading, fontsize=10)
        ax.set_xlabel(xlabel)
    axes[0].set_ylabel("axis 2 (Å)")
    key = [Line2D([], [], marker="o", ls="", mfc="0.6", mec="black", label=f"atom within {IN_PLANE} Å of the plane"),
           Line2D([], [], marker="o", ls="", mfc="none", mec="0.5", label="atom off the plane (projected)")]
    axes[0].legend(handles=key, loc="lower left", fontsize=7, framealpha=0.7)
    bar = fig.colorbar(filled, ax=list(axes), shrink=0.9, pad=0.02, ticks=np.arange(bottom, top + 1),
                       format=FuncFormatter(lambda value, _: f"$10^{{{round(value)}}}$"))
    bar.set_label("electron density ρ (e/Å³)")
    formula = Formula(atoms.get_chemical_formula("hill")).format("latex")
    title = f"{name}: {formula}" if name else formula
    fig.suptitle(f"{title}, model {model}" if model else title, fontsize=12)
    return fig


def _draw_panel(ax, x, y, logs, levels, rows, view, label_all: bool):
    """Filled log10(rho) bands, decade contours and projected atoms on ``ax``; returns the bands."""
    from ase.data import chemical_symbols
    from ase.data.colors import jmol_colors
    from matplotlib import patheffects

    logs = np.ma.masked_invalid(logs)  # (ny, nx); blank outside the grid
    filled = ax.contourf(x, y, logs, levels=levels, cmap="magma", extend="min")
    ax.contour(x, y, logs, levels=levels[::_LEVELS_PER_DECADE], colors="white", linewidths=0.4, alpha=0.35)
    outline = [patheffects.withStroke(linewidth=1.5, foreground="black")]
    numbers, coords = view
    near = np.abs(coords[:, 3 - sum(rows)]) <= IN_PLANE  # (M,) within the panel's plane
    for z, c, on in zip(numbers, coords, near):
        colour = jmol_colors[z]
        ax.plot(c[rows[0]], c[rows[1]], "o", ms=4.5 + 1.5 * math.log(z + 1), mew=1.1,
                mfc=colour if on else "none", mec="black" if on else colour, alpha=1.0 if on else 0.65)
        if on or label_all:
            ax.annotate(chemical_symbols[z], (c[rows[0]], c[rows[1]]), xytext=(4, 3), textcoords="offset points",
                        color="white", fontsize=8, path_effects=outline, clip_on=True)
    ax.set_aspect("equal")
    ax.set_facecolor("0.8")
    return filled


def write_density_png(
    path: str | os.PathLike, density: Density, name: str | None = None, model: str | None = None, dpi: int = 100
) -> None:
    """Render ``density`` (see :func:`render_density`) and write it as a PNG, atomically."""
    fig = render_density(density, name, model)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
