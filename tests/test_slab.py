"""Slabs (pbc (True, True, False)): the grid spans the cell, periodic in plane only, in the
calculator and in electra-density; the neighbour graph and the network see the in-plane images."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import fcc111

from ase_electra import ElectraCalculator
from ase_electra.evaluate import evaluate
from ase_electra.graph import Graph
from ase_electra.models.electra import ElectraDensityModel, default_config
from ase_electra.predict import grid_for, predict_densities

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def slab():
    atoms = fcc111("Al", (2, 2, 3), vacuum=5.0)
    assert atoms.pbc.tolist() == [True, True, False]
    return atoms


@pytest.fixture(scope="module")
def density(slab):
    atoms = slab.copy()
    atoms.calc = ElectraCalculator(model="promolecule", spacing=0.2)
    return atoms.calc, atoms.calc.get_density()


def test_calculator_grid_spans_the_slab_cell(slab, density):
    _, rho = density
    assert rho.grid.pbc == (True, True, False)
    np.testing.assert_allclose(rho.grid.cell, slab.cell.array)
    np.testing.assert_array_equal(rho.grid.origin, 0.0)


def test_density_is_periodic_in_plane_and_not_along_c(slab, density):
    calc, rho = density
    v = rho.values
    nx, ny, nz = v.shape
    assert nx % 2 == 0 and ny % 2 == 0
    # The 2 x 2 surface cell repeats after half of a and half of b: rolling by half the points
    # brings the values near one face next to the other, which only the summed images make equal.
    np.testing.assert_allclose(np.roll(v, nx // 2, axis=0), v, rtol=1e-9, atol=1e-12 * v.max())
    np.testing.assert_allclose(np.roll(v, ny // 2, axis=1), v, rtol=1e-9, atol=1e-12 * v.max())
    # Point n along a is point 0 again: the values continue across the face.
    k = int(np.argmax(v[0, 0, :]))
    beyond = rho.grid.points_at(np.ravel_multi_index(([nx - 1], [0], [k]), v.shape)) + rho.grid.voxels[0]
    np.testing.assert_allclose(calc.get_density_at(beyond), v[0, 0, k], rtol=1e-9)
    # Along c the cell's vacuum bounds the slab: the far face is empty and c is no period.
    assert v[:, :, -1].max() < 1e-6 * v.max()
    inside = rho.grid.points_at(np.ravel_multi_index(([0], [0], [k]), v.shape))
    assert calc.get_density_at(inside + slab.cell.array[2]) < 1e-6 * v[0, 0, k]


def test_slab_grid_holds_every_electron(slab, density):
    """Voxel-averaged values (sampling="voxel") integrate exactly; the grid must miss nothing."""
    calc, rho = density
    values = evaluate(calc.get_gaussian_mixture(), rho.grid, sampling="voxel")
    assert float(values.sum()) * rho.grid.voxel_volume == pytest.approx(13 * len(slab), rel=1e-3)


def test_graph_has_in_plane_images_only(slab):
    graph = Graph.from_atoms([slab], cutoff=5.0)
    fractional = graph.shifts.numpy() @ np.linalg.inv(slab.cell.array)
    np.testing.assert_allclose(fractional, np.round(fractional), atol=1e-9)
    assert np.abs(fractional[:, :2]).max() >= 1  # neighbours across the a and b faces
    np.testing.assert_array_equal(fractional[:, 2], 0.0)  # none across c


def test_network_sees_an_in_plane_lattice_translation_as_no_change(slab):
    config = default_config(elements=(13,), channels=8, layers=1, n_bessel=4, radial_hidden=8, floating_heavy=4,
                            floating_light=2)
    model = ElectraDensityModel.new(config, seed=0)
    moved = slab.copy()
    moved.positions[0] += slab.cell.array[0] - slab.cell.array[1]
    grid = grid_for(slab, spacing=0.3, margin=4.0)
    before, after = predict_densities(model, [slab, moved], [grid, grid])
    scale = before.values.max()
    np.testing.assert_allclose(after.values, before.values, atol=1e-5 * scale)
    assert after.n_electrons == pytest.approx(before.n_electrons, rel=1e-6)


def test_electra_density_and_the_calculator_agree_on_a_slab(slab, density):
    """electra-density's grid (predict.grid_for) of a slab is its cell, as the calculator's."""
    calc, rho = density
    grid = grid_for(slab, spacing=0.2, margin=4.0)
    assert grid.same_as(rho.grid)
    (predicted,) = predict_densities(calc.model, [slab], [grid])
    np.testing.assert_allclose(predicted.values, rho.values, rtol=1e-9, atol=1e-12 * rho.values.max())
