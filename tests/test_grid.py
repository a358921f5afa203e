import numpy as np
import pytest
from ase.build import bulk, fcc111, molecule

from ase_electra import Grid, GridTooLargeError, InvalidInputError
from ase_electra.grid import fft_friendly


def test_point_convention_matches_voxels():
    cell = np.array([[4.0, 0, 0], [1.0, 3.0, 0], [0.5, 0.5, 5.0]])
    g = Grid(cell, (4, 3, 5), origin=np.array([1.0, 2.0, 3.0]))
    p = g.points().reshape(4, 3, 5, 3)
    np.testing.assert_allclose(p[0, 0, 0], [1, 2, 3])
    np.testing.assert_allclose(p[1, 0, 0] - p[0, 0, 0], cell[0] / 4)
    np.testing.assert_allclose(p[2, 2, 3] - p[0, 0, 0], 2 * cell[0] / 4 + 2 * cell[1] / 3 + 3 * cell[2] / 5)
    assert g.voxel_volume == pytest.approx(abs(np.linalg.det(cell)) / 60)


def test_chunks_cover_points():
    g = Grid(np.eye(3) * 2, (5, 6, 7))
    pieces = [p for _, p in g.chunks(chunk_size=17)]
    np.testing.assert_array_equal(np.concatenate(pieces), g.points())


def test_molecule_box_spacing_margin_and_centre():
    atoms = molecule("C6H6")
    g = Grid.for_molecule(atoms.positions, spacing=0.2, margin=3.0)
    np.testing.assert_allclose(g.spacing, 0.2)
    pts = g.points()
    lo, hi = pts.min(0), pts.max(0)
    assert np.all(lo <= atoms.positions.min(0) - 3.0 + 1e-9)
    assert np.all(hi >= atoms.positions.max(0) + 3.0 - 1e-9)
    assert np.all(hi - lo < np.ptp(atoms.positions, axis=0) + 6.0 + 0.2 + 1e-9)
    np.testing.assert_allclose(0.5 * (lo + hi), 0.5 * (atoms.positions.min(0) + atoms.positions.max(0)), atol=1e-12)
    assert g.pbc == (False, False, False)


def test_periodic_cell_grid():
    atoms = bulk("Si", "diamond", a=5.43)
    g = Grid.for_atoms(atoms, spacing=0.1)
    assert g.pbc == (True, True, True)
    np.testing.assert_allclose(g.cell, atoms.cell.array)
    assert all(n == fft_friendly(n) for n in g.shape)
    assert np.all(g.spacing <= 0.1 + 1e-12)
    np.testing.assert_allclose(g.origin, 0)


def test_fft_friendly():
    assert [fft_friendly(n) for n in (1, 7, 11, 13, 97, 101)] == [1, 8, 12, 15, 100, 108]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(spacing=0.0), "spacing"),
        (dict(spacing=float("nan")), "spacing"),
        (dict(margin=-1.0), "margin"),
    ],
)
def test_bad_box_parameters(kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        Grid.for_molecule(np.zeros((1, 3)), **kwargs)


def test_bad_positions_and_cells():
    with pytest.raises(InvalidInputError, match="non-finite"):
        Grid.for_molecule(np.array([[0.0, np.nan, 0.0]]))
    with pytest.raises(InvalidInputError, match="N > 0"):
        Grid.for_molecule(np.zeros((0, 3)))
    with pytest.raises(InvalidInputError, match="singular"):
        Grid(np.zeros((3, 3)), (2, 2, 2))
    with pytest.raises(InvalidInputError, match="shape"):
        Grid(np.eye(3), (2, 0, 2))


def test_grid_too_large_says_what_to_change():
    """A box shrinks with a coarser spacing or a smaller margin; a cell grid only with a coarser spacing."""
    with pytest.raises(GridTooLargeError, match="; use a coarser spacing or a smaller margin$"):
        Grid.for_molecule(np.zeros((1, 3)), spacing=0.001, margin=10.0)
    with pytest.raises(GridTooLargeError, match=r"; use a coarser spacing \(the grid spans the cell\)$") as info:
        Grid.for_atoms(bulk("Si", "diamond", a=5.43), spacing=0.001)
    assert "margin" not in str(info.value)
    slab = fcc111("Al", (1, 1, 2), vacuum=5.0)
    with pytest.raises(GridTooLargeError, match="the grid spans the cell"):
        Grid.for_atoms(slab, spacing=0.001, margin=0.0)


def test_slab_gets_its_cell_periodic_in_plane():
    """pbc (True, True, False): the cell holds the vacuum; margin plays no part."""
    slab = fcc111("Al", (2, 2, 3), vacuum=5.0)
    assert slab.pbc.tolist() == [True, True, False]
    for margin in (0.0, 4.0):
        g = Grid.for_atoms(slab, spacing=0.2, margin=margin)
        assert g.pbc == (True, True, False)
        np.testing.assert_allclose(g.cell, slab.cell.array)
        np.testing.assert_array_equal(g.origin, 0.0)
        assert np.all(g.spacing <= 0.2 + 1e-12) and all(n == fft_friendly(n) for n in g.shape)
    wire = slab.copy()
    wire.pbc = (False, False, True)
    with pytest.raises(InvalidInputError, match="outside the cell along non-periodic axis a"):
        Grid.for_atoms(wire)  # the skewed cell leaves an atom at fractional a = -0.17


def test_molecules_get_a_box_unless_asked_for_their_cell():
    atoms = molecule("H2O")
    atoms.center(vacuum=4.0)
    box = Grid.for_atoms(atoms, spacing=0.2, margin=3.0)
    assert box.same_as(Grid.for_molecule(atoms.positions, spacing=0.2, margin=3.0))
    cell = Grid.for_atoms(atoms, spacing=0.2, margin=3.0, use_cell=True)
    assert cell.pbc == (False, False, False)
    np.testing.assert_allclose(cell.cell, atoms.cell.array)
    np.testing.assert_array_equal(cell.origin, 0.0)
    assert Grid.for_atoms(molecule("H2O"), spacing=0.2, use_cell=True).same_as(
        Grid.for_molecule(molecule("H2O").positions, spacing=0.2))  # no cell: a box still


def test_cells_that_cannot_hold_the_grid_are_refused():
    flat = fcc111("Al", (1, 1, 2))  # no vacuum given: c is zero, pbc (True, True, False)
    with pytest.raises(InvalidInputError, match="every cell vector must be non-zero"):
        Grid.for_atoms(flat)
    skew = molecule("H2O", cell=[[4.0, 0, 0], [0, 4.0, 0], [4.0, 4.0, 0]], pbc=True)
    with pytest.raises(InvalidInputError, match="singular"):
        Grid.for_atoms(skew)
    high = molecule("H2O", cell=[6.0, 6.0, 6.0], pbc=(True, True, False))
    with pytest.raises(InvalidInputError, match="outside the cell along non-periodic axis c"):
        Grid.for_atoms(high)
    high.center(axis=2)
    assert Grid.for_atoms(high, spacing=0.3).pbc == (True, True, False)


def test_grid_is_immutable():
    g = Grid(np.eye(3), (2, 2, 2))
    with pytest.raises(ValueError):
        g.cell[0, 0] = 5.0
