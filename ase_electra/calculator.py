"""ElectraCalculator: an ASE calculator whose result is an all-electron density.

A density model maps a structure to a Gaussian mixture (Angstrom)::

    rho(r) = sum_k w_k N(r | mu_k, L_k L_k^T)        (e/Angstrom^3)

with non-negative weights ``w_k`` (electrons) summing to the electron count, sum of the
atomic numbers minus ``atoms.info["charge"]``. The calculator predicts the mixture once
per structure, keeps it in ``self.results["gaussian_mixture"]``, and evaluates it on
demand: on grids (:meth:`ElectraCalculator.get_density`,
:meth:`ElectraCalculator.get_pseudo_density`) or at points
(:meth:`ElectraCalculator.get_density_at`).

The default grid is the one ASE's DFT calculators use when the atoms have a cell (three
non-zero vectors, periodic or not): it spans ``atoms.cell`` with origin zero, ``spacing``
apart at most (:meth:`Grid.for_cell <ase_electra.grid.Grid.for_cell>`), and sums periodic
images along ``atoms.pbc`` only, so a slab (pbc (True, True, False)) is periodic in plane
and its cell's vacuum bounds it along c. Then
``ase.io.write("x.cube", atoms, data=calc.get_pseudo_density())`` places every value
where it was computed. Atoms without a cell (a molecule from ``ase.build.molecule``) get
a box ``margin`` beyond their atoms instead, which does not start at zero: write it with
:func:`ase_electra.io.write_density` (``calc.get_density()`` holds the box), or give the
atoms a cell (``atoms.center(vacuum=4)``).

Properties (:mod:`ase_electra.properties`):

* ``dipole`` (ASE's): the first moment of a normalised Gaussian is its centre, so the
  dipole of nuclei plus electrons is analytic::

      p = sum_i Z_i R_i - sum_k w_k mu_k                (e * Angstrom, ASE's unit)

  For a neutral structure (sum_k w_k = sum_i Z_i) it does not depend on the origin. For a
  net charge Q = sum_i Z_i - sum_k w_k it is taken about the coordinate origin: moving
  the structure by d changes it by Q d. For periodic structures it is the dipole of the
  atoms as positioned (unwrapped), not a polarisation of the crystal.
* ``quadrupole``: Buckingham's traceless quadrupole ``sum q (3 r r^T - r^2 I) / 2`` of
  nuclei plus electrons, analytic, about the coordinate origin like the dipole, shape
  (3, 3), e * Angstrom^2 (:meth:`ElectraCalculator.get_quadrupole_moment`).
* ``charges`` (ASE's, ``atoms.get_charges()``): Hirshfeld charges with the package's
  spherical free atoms as reference, shape (N,), e; they sum to the total charge.
  Molecules only; computed when asked for (2-6 s for a QM9 molecule on one CPU thread).

:meth:`ElectraCalculator.get_electrostatic_potential` gives the potential of nuclei plus
electrons on the default grid in volts (eV per unit charge) for molecules, slabs and
crystals (:func:`~ase_electra.properties.potential_on_grid` states each one's zero);
:func:`~ase_electra.properties.planar_average` and
:func:`~ase_electra.properties.vacuum_levels` read a slab's vacuum levels from it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import CalculationFailed, Calculator, InputError, all_changes

from .density import Density
from .errors import ElectraError, InvalidInputError, UnknownElementError
from .evaluate import evaluate, evaluate_points
from .gaussians import GaussianMixture
from .grid import Grid
from .models import DensityModel, load_model
from .models.base import check_for_model
from .properties import (
    dipole_moment,
    electrostatic_potential,
    hirshfeld_charges,
    potential_on_grid,
    quadrupole_moment,
)

__all__ = ["ElectraCalculator", "CalculatorInputError", "CalculatorElementError"]

_DEVICES = ("auto", "cpu", "cuda")
_SAMPLINGS = ("point", "voxel")
_MIXTURE, _DENSITY = "gaussian_mixture", "density"
_NO_ATOMS = "no atoms yet: pass atoms=..., or first ask the atoms for a property (atoms.get_dipole_moment())"


class CalculatorInputError(InputError, InvalidInputError):
    """Bad calculator parameters or structure: both an ASE ``InputError`` and an ase-electra error."""


class CalculatorElementError(CalculatorInputError, UnknownElementError):
    """The structure holds an element the model does not know."""


class ElectraCalculator(Calculator):
    """Electron density of a structure predicted by an ELECTRA model.

    Parameters
    ----------
    model : str, path or DensityModel
        ``"default"`` (the models shipped with the package: molecules to one, structures
        with a periodic axis to the other), ``"promolecule"``
        (superposition of atomic densities), a training run folder, a model folder
        (``config.json`` + ``model.safetensors``) or its ``.safetensors`` file, or a
        :class:`~ase_electra.models.DensityModel` instance (used as is, on its device).
    device : {"auto", "cpu", "cuda"}
        Where a model loaded by name or path runs; ``"auto"`` picks CUDA when present.
    spacing : float, Angstrom
        Largest spacing of the default grid (:meth:`get_pseudo_density`, :meth:`get_density`).
    margin : float, Angstrom
        Vacuum around the atoms of the default grid's box, for atoms without a cell only;
        atoms with a cell get a grid spanning it (see the module docstring).
    sampling : {"point", "voxel"}
        What a grid holds: the density at each point, or the density with every Gaussian
        narrower than the grid first widened to half a voxel (its integral unchanged), whose
        sum times the voxel volume is the electron count even where a core sits on a point
        (for Bader and other grid integrals; ``electra-density`` uses it for CHGCAR files).

    The model is loaded when the calculator is made and kept until ``model`` or
    ``device`` change. Bad parameters raise :class:`CalculatorInputError` (an ASE
    ``InputError``) at once; unsupported elements raise :class:`CalculatorElementError`
    before any prediction.

    Examples
    --------
    >>> from ase.build import molecule
    >>> atoms = molecule("H2O")
    >>> atoms.calc = ElectraCalculator(model="promolecule", spacing=0.2)
    >>> float(abs(atoms.get_dipole_moment()).max()) < 1e-6  # spherical neutral atoms: no dipole
    True
    >>> round(atoms.calc.get_number_of_electrons(), 9), atoms.calc.get_pseudo_density().shape
    (10.0, (41, 49, 44))
    """

    implemented_properties = ["dipole", "quadrupole", "charges"]
    default_parameters = {"model": "default", "device": "auto", "spacing": 0.1, "margin": 4.0, "sampling": "point"}
    nolabel = True

    def __init__(self, **kwargs) -> None:
        self._model: DensityModel | None = None
        self._attached: Atoms | None = None
        Calculator.__init__(self, **kwargs)

    # ------------------------------------------------------------------ parameters
    def set(self, **kwargs) -> dict:
        """Change parameters; a new ``model`` or ``device`` reloads the model and clears results."""
        unknown = sorted(set(kwargs) - set(self.default_parameters))
        if unknown:
            raise CalculatorInputError(
                f"unknown parameter(s) {', '.join(unknown)}; expected {', '.join(self.default_parameters)}"
            )
        merged = {**self.parameters, **kwargs}
        _check_parameters(merged)
        reload = self._model is None or any(
            key in kwargs and kwargs[key] is not self.parameters[key] and kwargs[key] != self.parameters[key]
            for key in ("model", "device")
        )
        model = _load(merged["model"], merged["device"]) if reload else self._model
        changed = Calculator.set(self, **kwargs)
        self._model = model
        if reload:
            self.reset()
        elif {"spacing", "margin", "sampling"} & changed.keys():
            self.results.pop(_DENSITY, None)
        return changed

    @property
    def model(self) -> DensityModel:
        """The loaded density model."""
        return self._model

    def todict(self, skip_default: bool = True) -> dict:
        """Parameters as a dict; a model instance is given by its name."""
        params = Calculator.todict(self, skip_default)
        if "model" in params and not isinstance(params["model"], (str, os.PathLike)):
            params["model"] = self._model.name
        elif "model" in params:
            params["model"] = str(params["model"])
        return params

    def check_state(self, atoms: Atoms, tol: float = 1e-15) -> list[str]:
        """ASE's system changes, plus ``"charge"`` when ``atoms.info["charge"]`` changed."""
        changes = Calculator.check_state(self, atoms, tol)
        if self.atoms is not None and atoms.info.get("charge", 0) != self.atoms.info.get("charge", 0):
            changes = [*changes, "charge"]
        return changes

    # ------------------------------------------------------------------ calculation
    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] | None = None,
        system_changes: Sequence[str] = all_changes,
    ) -> None:
        """Predict the mixture of ``atoms`` (unless cached), its moments and, if asked for, charges.

        Results: ``"gaussian_mixture"`` (:class:`GaussianMixture`, Angstrom, on the
        model's device), ``"dipole"`` (shape (3,), e * Angstrom), ``"quadrupole"``
        (shape (3, 3), e * Angstrom^2) and, when ``"charges"`` is in ``properties``,
        ``"charges"`` (shape (N,), e).
        """
        if properties is None:
            properties = self.implemented_properties
        if system_changes:
            self.results = {}
        Calculator.calculate(self, atoms, properties, system_changes)
        if self.atoms is None:
            raise CalculatorInputError(_NO_ATOMS)
        atoms = self.atoms
        if _MIXTURE not in self.results:
            self.results[_MIXTURE] = self._predict(atoms)
        mixture = self.results[_MIXTURE]
        self.results["dipole"] = dipole_moment(mixture, atoms.numbers, atoms.positions)
        self.results["quadrupole"] = quadrupole_moment(mixture, atoms.numbers, atoms.positions)
        if "charges" in properties and "charges" not in self.results:
            self._molecule_only(atoms, "Hirshfeld charges")
            try:
                self.results["charges"] = hirshfeld_charges(mixture, atoms.numbers, atoms.positions)
            except UnknownElementError as exc:
                raise CalculatorElementError(str(exc)) from None

    @staticmethod
    def _molecule_only(atoms: Atoms, what: str) -> None:
        if atoms.pbc.any():
            raise CalculatorInputError(
                f"{what}: periodic structures are not supported; got pbc {atoms.pbc.tolist()}"
            )

    def _predict(self, atoms: Atoms) -> GaussianMixture:
        model = self._model
        _check_atoms(atoms, model)
        try:
            with torch.no_grad():
                mixture = model.predict([atoms])
        except UnknownElementError as exc:
            raise CalculatorElementError(str(exc)) from None
        except ElectraError as exc:
            raise CalculationFailed(f"{model.name}: {exc}") from exc
        if mixture.n_structures != 1:
            raise CalculationFailed(f"{model.name}: returned {mixture.n_structures} structures for one")
        return mixture.detach()

    def set_atoms(self, atoms: Atoms) -> None:
        """Called by ASE on ``atoms.calc = calc``: later calls without ``atoms=`` use these atoms.

        The atoms are kept by reference, so moving them afterwards is seen (and recomputed).
        """
        self._attached = atoms

    def _result(self, name: str, atoms: Atoms | None) -> object:
        """``self.results[name]`` for ``atoms`` (default: the attached or last atoms), calculating if needed."""
        if atoms is None:
            atoms = self._attached
        if atoms is None:
            atoms = self.atoms
            if atoms is None:
                raise CalculatorInputError(_NO_ATOMS)
            system_changes = []
        else:
            system_changes = self.check_state(atoms)
            if system_changes:
                self.reset()
        if name not in self.results:
            self.calculate(atoms, [name], system_changes)
        return self.results[name]

    # ------------------------------------------------------------------ densities
    def get_gaussian_mixture(self, atoms: Atoms | None = None) -> GaussianMixture:
        """The predicted mixture of ``atoms`` (weights e, centres and scale_tril Angstrom).

        The mixture is cached and shared: treat its tensors as read-only.
        """
        return self._result(_MIXTURE, atoms)

    def get_quadrupole_moment(self, atoms: Atoms | None = None) -> np.ndarray:
        """Traceless (Buckingham) quadrupole about the coordinate origin, (3, 3) ndarray, e * Angstrom^2 (a copy)."""
        return np.array(self._result("quadrupole", atoms))

    def get_electrostatic_potential(self, atoms: Atoms | None = None, grid: Grid | None = None) -> np.ndarray:
        """Electrostatic potential of nuclei plus electrons, (nx, ny, nz) ndarray, volts (eV per e).

        On the default grid (``get_density().grid``: ``spacing``, ``margin``), or on
        ``grid``; a positive test charge there has this energy in eV. Nuclei are Gaussian
        charges 1e-5 Angstrom wide, so the values stay finite at grid points on nuclei
        (:mod:`ase_electra.properties.electrostatics`). Molecules are zero at infinity;
        crystals (pbc on all axes) have a zero mean over the cell, as VASP's LOCPOT and
        GPAW; slabs (pbc on two axes) average to ``-(2 pi / A) sum_k q_k E|z - Z_k|`` over
        planes, flat in the vacuum (:func:`~ase_electra.properties.potential_on_grid`).
        Wires are refused. A ``grid`` for periodic atoms must be periodic along the same
        axes with the lattice vectors as its cell rows there (``Grid.for_cell``). Cost with
        the default model and grid: 1.2 s of CPU per QM9 molecule (one thread).
        """
        if grid is not None and not isinstance(grid, Grid):
            raise CalculatorInputError(f"grid: expected an ase_electra Grid, got {type(grid).__name__}")
        mixture = self.get_gaussian_mixture(atoms)
        atoms = self.atoms
        if sum(atoms.pbc) == 1:
            raise CalculatorInputError(f"electrostatic potential: one periodic axis (a wire) is not supported; "
                                       f"got pbc {atoms.pbc.tolist()}")
        if grid is None:
            grid = self._default_grid(self.parameters.spacing, self.parameters.margin)
        elif grid.pbc != tuple(bool(p) for p in atoms.pbc) or not all(
                np.allclose(grid.cell[i], atoms.cell[i], atol=1e-6) for i in range(3) if atoms.pbc[i]):
            raise CalculatorInputError(
                f"grid: expected pbc {atoms.pbc.tolist()} with the lattice vectors as cell rows along periodic "
                f"axes (Grid.for_cell(atoms.cell, spacing, atoms.pbc)), got {grid.describe()}")
        return potential_on_grid(mixture, atoms.numbers, atoms.positions, grid)

    def get_electrostatic_potential_at(self, points: np.ndarray, atoms: Atoms | None = None) -> np.ndarray:
        """Electrostatic potential at arbitrary points (..., 3) Angstrom, shape (...), volts; molecules only."""
        pts = np.asarray(points, dtype=np.float64)
        if pts.ndim == 0 or pts.shape[-1] != 3 or not np.isfinite(pts).all():
            raise CalculatorInputError(f"points: expected finite values of shape (..., 3), got {pts.shape}")
        mixture = self.get_gaussian_mixture(atoms)
        self._molecule_only(self.atoms, "electrostatic potential at points (on grids: get_electrostatic_potential)")
        values = electrostatic_potential(mixture, self.atoms.numbers, self.atoms.positions, pts.reshape(-1, 3))
        return values.reshape(pts.shape[:-1])

    def get_number_of_electrons(self, atoms: Atoms | None = None) -> float:
        """Analytic integral of the density (sum of the weights), electrons."""
        return float(self.get_gaussian_mixture(atoms).weights.double().sum())

    def get_density(
        self,
        atoms: Atoms | None = None,
        spacing: float | None = None,
        margin: float | None = None,
        grid: Grid | None = None,
    ) -> Density:
        """The density on a grid: ``grid``, or the default grid of ``atoms``.

        The default grid spans ``atoms.cell`` (origin zero, periodic along ``atoms.pbc``)
        when all three cell vectors are non-zero, else a box ``margin`` beyond the atoms
        (:meth:`Grid.for_atoms` with ``use_cell=True``); ``.grid`` says where the points are.

        Parameters
        ----------
        spacing, margin : float, Angstrom, optional
            Override the calculator's parameters for this call (``margin``: boxes only).
        grid : Grid, optional
            Evaluate here instead; excludes ``spacing`` and ``margin``.

        Returns
        -------
        Density with read-only values, (nx, ny, nz) ndarray, e/Angstrom^3. The default
        grid's density is cached until the atoms, ``spacing`` or ``margin`` change.
        """
        if grid is not None and (spacing is not None or margin is not None):
            raise CalculatorInputError("get_density: pass either grid or spacing/margin, not both")
        if grid is not None and not isinstance(grid, Grid):
            raise CalculatorInputError(f"grid: expected an ase_electra Grid, got {type(grid).__name__}")
        p = self.parameters
        custom = {"spacing": p.spacing if spacing is None else spacing,
                  "margin": p.margin if margin is None else margin}
        _check_parameters(custom)
        mixture = self.get_gaussian_mixture(atoms)
        if grid is None and custom == {"spacing": p.spacing, "margin": p.margin}:
            if _DENSITY not in self.results:
                self.results[_DENSITY] = self._evaluate(mixture, self._default_grid(p.spacing, p.margin))
            return self.results[_DENSITY]
        if grid is None:
            grid = self._default_grid(custom["spacing"], custom["margin"])
        return self._evaluate(mixture, grid)

    def get_pseudo_density(
        self, spin: int | None = None, pad: bool = True, atoms: Atoms | None = None
    ) -> np.ndarray:
        """The density on the default grid, (nx, ny, nz) ndarray, e/Angstrom^3 (a copy).

        The name and signature of ASE's DFT calculators (used by ``ase.dft.stm`` and
        ``ase.visualize.mlab``): like them, without ``atoms`` it describes the atoms of
        the last calculation. The density is all-electron and spin-unpolarised: ``spin``
        may be None or 0 (the total). ``pad`` is accepted for compatibility; the grid
        always holds every point. For atoms with a cell the grid is that cell's, origin
        zero, as ``ase.io.write(..., data=...)`` assumes; for atoms without one it is a box
        around them (``get_density().grid`` says where its points are).
        """
        if spin not in (None, 0):
            raise CalculatorInputError(f"spin: the density is not spin-polarised; expected None or 0, got {spin!r}")
        return self.get_density(atoms).values.copy()

    def get_spin_polarized(self) -> bool:
        """False: the predicted density is the total density."""
        return False

    def get_density_at(self, points: np.ndarray, atoms: Atoms | None = None) -> np.ndarray:
        """The density at arbitrary points, summing periodic images along ``atoms.pbc``.

        At the points of the default grid these are the grid's values (with ``sampling``
        "point"), slabs and wires included (their grid is periodic along the same axes).

        Parameters
        ----------
        points : array, shape (..., 3), Angstrom

        Returns
        -------
        ndarray, shape (...), e/Angstrom^3, float64.
        """
        pts = np.asarray(points, dtype=np.float64)
        if pts.ndim == 0 or pts.shape[-1] != 3:
            raise CalculatorInputError(f"points: expected shape (..., 3), got {pts.shape}")
        if not np.isfinite(pts).all():
            raise CalculatorInputError("points: non-finite coordinates")
        mixture = self.get_gaussian_mixture(atoms)
        pbc = tuple(bool(p) for p in self.atoms.pbc)
        cell = self.atoms.cell.array if any(pbc) else None
        with torch.no_grad():
            values = evaluate_points(mixture, pts.reshape(-1, 3), cell=cell, pbc=pbc)  # (P,)
        return values.double().cpu().numpy().reshape(pts.shape[:-1])

    def _default_grid(self, spacing: float, margin: float) -> Grid:
        try:
            return Grid.for_atoms(self.atoms, spacing=spacing, margin=margin, use_cell=True)
        except InvalidInputError as exc:
            raise CalculatorInputError(str(exc)) from None

    def _evaluate(self, mixture: GaussianMixture, grid: Grid) -> Density:
        with torch.no_grad():
            values = evaluate(mixture, grid, sampling=self.parameters.sampling).double().cpu().numpy()
        if not np.isfinite(values).all():
            raise CalculationFailed(f"{self._model.name}: non-finite density on the grid")
        values.setflags(write=False)
        atoms = self.atoms.copy()
        atoms.calc = None
        return Density(atoms, grid, values)


# ---------------------------------------------------------------------- helpers
def _check_parameters(params: dict) -> None:
    """One-line :class:`CalculatorInputError` for the first bad value in ``params``."""
    if "model" in params:
        model = params["model"]
        if not isinstance(model, (str, os.PathLike, DensityModel)):
            raise CalculatorInputError(
                f"model: expected a name, a path or a DensityModel, got {type(model).__name__}"
            )
    if "sampling" in params and params["sampling"] not in _SAMPLINGS:
        raise CalculatorInputError(
            f"sampling: expected one of {', '.join(_SAMPLINGS)}, got {params['sampling']!r}")
    if "device" in params and params["device"] not in _DEVICES:
        raise CalculatorInputError(f"device: expected one of {', '.join(_DEVICES)}, got {params['device']!r}")
    for name, low, strict in (("spacing", 0.0, True), ("margin", 0.0, False)):
        if name not in params:
            continue
        value = params[name]
        ok = isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or value < low or (strict and value == low):
            bound = "> 0" if strict else ">= 0"
            raise CalculatorInputError(f"{name}: expected a finite number {bound} (Angstrom), got {value!r}")


def _load(spec: str | os.PathLike | DensityModel, device: str) -> DensityModel:
    """The model for ``spec`` on ``device`` ("auto": CUDA when present)."""
    cuda = torch.cuda.is_available()
    if device == "cuda" and not cuda:
        raise CalculatorInputError("device: CUDA requested but not available")
    if isinstance(spec, DensityModel):
        if device != "auto" and spec.device.type != device:
            raise CalculatorInputError(f"device: {device!r} asked for, but the model instance is on {spec.device}")
        return spec
    try:
        return load_model(spec, device="cuda" if device == "cuda" or (device == "auto" and cuda) else "cpu")
    except (ElectraError, OSError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CalculatorInputError(message) from exc


def _check_atoms(atoms: Atoms, model: DensityModel) -> None:
    """One-line errors for structures ``model`` cannot predict, before any work."""
    label = atoms.info.get("name") or atoms.get_chemical_formula() or "structure"
    if len(atoms) == 0:
        raise CalculatorInputError("structure has no atoms")
    if not np.isfinite(atoms.positions).all():
        raise CalculatorInputError(f"{label}: non-finite atomic positions")
    named = atoms.copy()
    named.info["name"] = label
    try:
        check_for_model(model, [named])  # the shipped default: the part that predicts these atoms
    except UnknownElementError as exc:
        raise CalculatorElementError(str(exc)) from None
    charge = atoms.info.get("charge", 0)
    try:
        charge = float(charge)
    except (TypeError, ValueError):
        raise CalculatorInputError(f"{label}: info['charge'] must be a number, got {charge!r}") from None
    protons = float(atoms.numbers.sum())
    if not (math.isfinite(charge) and charge < protons):
        raise CalculatorInputError(f"{label}: charge {charge} leaves no electrons ({protons:g} protons)")
