"""ELECTRA network: equivariance, degenerate frames, charge conservation, files, gradients.

A tiny float64 model (module-scoped fixture) is initialised from the package's promolecule
table when ``ase_electra.models.promolecule`` exists, else from a small synthetic table
patched in its place.
"""

from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule

from ase_electra import (
    FileFormatError,
    GaussianMixture,
    Grid,
    InvalidInputError,
    UnknownElementError,
)
from ase_electra.evaluate import evaluate, evaluate_points
from ase_electra.graph import Graph
from ase_electra.models import electra as electra_module
from ase_electra.models.base import DensityModel
from ase_electra.models.electra import ElectraDensityModel
from ase_electra.nn.heads import assign_slots, widening_map
from ase_electra.nn.model import ElectraConfig, ElectraModel, analogue, calibration_hydride, outer_electrons
from ase_electra.nn.symmetry import degeneracy_weights, frame_features


@dataclasses.dataclass(frozen=True)
class _Atomic:
    weights: np.ndarray
    sigmas: np.ndarray


def synthetic_table() -> dict[int, _Atomic]:
    """Plausible isotropic atomic Gaussians for H..Ar (weights sum to Z, narrow to wide)."""
    table = {}
    for z in range(1, 19):
        if z <= 2:
            table[z] = _Atomic(np.array([0.25, 0.45, 0.3]) * z, np.array([0.12, 0.4, 0.9]))
        elif z <= 10:
            v = z - 2
            table[z] = _Atomic(
                np.array([1.6, 0.4, 0.4 * v, 0.6 * v]), np.array([0.3 / z, 0.8 / z, 0.4, 0.85])
            )
        else:
            v = z - 10
            table[z] = _Atomic(
                np.array([2.0, 8.0, 0.4 * v, 0.6 * v]), np.array([0.5 / z, 1.6 / z, 0.55, 1.1])
            )
    return table


@pytest.fixture(scope="module")
def reference():
    """The real promolecule table if present, else the synthetic one patched in."""
    try:
        from ase_electra.models.promolecule import atomic_gaussians
    except ImportError:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(electra_module, "_reference_table", synthetic_table)
            yield synthetic_table()
        return
    yield atomic_gaussians()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def config(reference) -> ElectraConfig:
    return ElectraConfig.for_reference(
        reference,
        floating_heavy=4,
        floating_light=2,
        channels=8,
        layers=2,
        n_bessel=6,
        radial_hidden=16,
        cutoff=4.0,
        node_filters=True,
    )


@pytest.fixture(scope="module")
def model(config, reference) -> ElectraModel:
    torch.manual_seed(0)
    m = ElectraModel(config, reference).double()
    with torch.no_grad():  # move away from the near-promolecule start so every head matters
        for name, p in m.named_parameters():
            if name.startswith(("heads.scalar_head.2", "heads.vector_head", "heads.matrix_head")):
                p.mul_(30.0)
            elif ".message.node." in name:  # zero at the start: give the node filters a say
                p.normal_(0.0, 0.3)
    return m


def predict(model: ElectraModel, structures: list[Atoms], **kwargs) -> GaussianMixture:
    return model(Graph.from_atoms(structures, model.config.cutoff, dtype=torch.float64, **kwargs))


def random_orthogonal(seed: int, proper: bool = True) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if (np.linalg.det(q) > 0) != proper:
        q[:, 0] *= -1
    return q


def transformed(atoms: Atoms, q: np.ndarray, t: np.ndarray) -> Atoms:
    out = atoms.copy()
    out.positions = atoms.positions @ q.T + t
    if atoms.pbc.any():
        out.cell = atoms.cell.array @ q.T
    return out


def probe_points(atoms: Atoms, n: int = 400, seed: int = 0) -> np.ndarray:
    """Points near the atoms (half within 0.6 A of a nucleus), Angstrom."""
    rng = np.random.default_rng(seed)
    near = atoms.positions[rng.integers(len(atoms), size=n // 2)] + rng.normal(scale=0.3, size=(n // 2, 3))
    lo, hi = atoms.positions.min(0) - 2.0, atoms.positions.max(0) + 2.0
    return np.concatenate([near, rng.uniform(lo, hi, size=(n - n // 2, 3))])


def assert_equivariant(model: ElectraModel, atoms: Atoms, q: np.ndarray, t: np.ndarray) -> None:
    """rho'(Q p + t) == rho(p) at probe points, and the Gaussians themselves transform."""
    a, b = predict(model, [atoms]), predict(model, [transformed(atoms, q, t)])
    p = probe_points(atoms)
    kw = {"cell": atoms.cell.array, "pbc": tuple(atoms.pbc)} if atoms.pbc.any() else {}
    kw_b = {"cell": atoms.cell.array @ q.T, "pbc": tuple(atoms.pbc)} if atoms.pbc.any() else {}
    rho_a = evaluate_points(a, p, **kw)
    rho_b = evaluate_points(b, p @ q.T + t, **kw_b)
    torch.testing.assert_close(rho_b, rho_a, rtol=1e-5, atol=1e-5 * rho_a.abs().max().item())
    qt = torch.as_tensor(q)
    torch.testing.assert_close(b.weights, a.weights, rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(b.centres, a.centres @ qt.T + torch.as_tensor(t), rtol=0, atol=1e-6)
    torch.testing.assert_close(b.covariances, qt @ a.covariances @ qt.T, rtol=0, atol=1e-6)


def methyl_ethanol() -> Atoms:
    """A generic (asymmetric) molecule with a little random distortion."""
    atoms = molecule("CH3CH2OH")
    atoms.positions += np.random.default_rng(3).normal(scale=0.05, size=atoms.positions.shape)
    return atoms


def symmetric_top() -> Atoms:
    """NH3 built with an exact C3 axis, so two global inertia moments are degenerate."""
    angles = np.deg2rad([90.0, 210.0, 330.0])
    h = np.stack([0.94 * np.cos(angles), 0.94 * np.sin(angles), np.zeros(3)], axis=1)
    return Atoms("NH3", positions=np.vstack([[0.0, 0.0, 0.38], h]))


SYMMETRIC = {
    "benzene": lambda: molecule("C6H6"),
    "methane": lambda: molecule("CH4"),
    "ammonia": lambda: symmetric_top(),
    "co2": lambda: molecule("CO2"),
    "h2": lambda: molecule("H2"),
    "single-atom": lambda: Atoms("O", positions=[[0.3, -0.2, 0.1]]),
}


# ---------------------------------------------------------------------- graph
def test_graph_edges_match_brute_force_and_periodic_images():
    mol = molecule("CH3CH2OH")
    g = Graph.from_atoms([mol, molecule("H2O")], cutoff=2.0)
    d = np.linalg.norm(mol.positions[:, None] - mol.positions[None], axis=-1)
    expected = int(((d < 2.0) & (d > 0)).sum()) + 6  # water: every ordered pair is within 2 A
    assert g.n_edges == expected and g.n_structures == 2
    assert g.batch.tolist() == [0] * len(mol) + [1] * 3
    assert g.n_electrons.tolist() == [26.0, 10.0]
    diamond = bulk("C", "diamond", a=3.567)
    gd = Graph.from_atoms([diamond], cutoff=1.6)
    lengths = torch.linalg.norm(gd.edge_vectors(), dim=-1)
    assert gd.n_edges == 8 and torch.allclose(lengths, torch.full_like(lengths, 3.567 * 3**0.5 / 4))
    assert torch.bincount(gd.edge_index[1]).tolist() == [4, 4]
    charged = molecule("H2O")
    charged.info["charge"] = 1
    assert Graph.from_atoms([charged], 2.0).n_electrons.item() == 9.0
    with pytest.raises(InvalidInputError, match="closer than"):
        Graph.from_atoms([Atoms("H2", positions=[[0, 0, 0], [0, 0, 1e-4]])], 2.0)


def test_assign_slots_keeps_weight_and_variance():
    w, s = np.array([1.0, 2.0, 3.0]), np.array([0.2, 0.5, 1.0])
    for m in (1, 2, 3, 7):
        ws, ss = assign_slots(w, s, m)
        assert len(ws) == m and ws.sum() == pytest.approx(6.0)
        assert (ws * ss**2).sum() == pytest.approx((w * s**2).sum())


# ---------------------------------------------------------------------- symmetry
@pytest.mark.parametrize("proper", [True, False], ids=["rotation", "reflection"])
def test_density_is_equivariant_for_generic_molecules(model, proper):
    for seed, atoms in enumerate([methyl_ethanol(), molecule("CH3CONH2")]):
        assert_equivariant(model, atoms, random_orthogonal(seed, proper), np.array([1.5, -2.0, 0.7]))


def test_degeneracy_weights_vanish_for_equal_moments():
    lam = torch.tensor([[1.0, 1.0, 2.0], [0.0, 0.0, 0.0], [1.0, 2.0, 3.0]], dtype=torch.float64)
    w = degeneracy_weights(lam, 0.02)
    assert w[0, :2].abs().max() == 0 and w[0, 2] > 0.99 and w[1].abs().max() == 0 and (w[2] > 0.99).all()


def test_frames_break_symmetry_on_generic_molecules(model):
    f = frame_features(Graph.from_atoms([methyl_ethanol()], model.config.cutoff), model.config.cutoff)
    axes = f.vectors[:, :3]  # (N, 3, 3)
    assert (axes.norm(dim=-1) > 0.5).float().mean() > 0.8  # most axes get a definite sign


def test_batching_does_not_change_a_structure(model):
    atoms = methyl_ethanol()
    alone = predict(model, [atoms])
    batched = predict(model, [molecule("C6H6"), atoms, bulk("NaCl", "rocksalt", a=5.64)]).structure(1)
    for x, y in ((alone.weights, batched.weights), (alone.centres, batched.centres)):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12)


def test_density_is_invariant_to_atom_order(model):
    atoms = methyl_ethanol()
    perm = np.random.default_rng(1).permutation(len(atoms))
    a, b = predict(model, [atoms]), predict(model, [atoms[perm]])
    p = probe_points(atoms)
    torch.testing.assert_close(evaluate_points(b, p), evaluate_points(a, p), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", list(SYMMETRIC))
def test_degenerate_geometries_are_finite_and_equivariant(model, name):
    atoms = SYMMETRIC[name]()
    g = Graph.from_atoms([atoms], model.config.cutoff, dtype=torch.float64)
    f = frame_features(g, model.config.cutoff)
    assert all(torch.isfinite(t).all() for t in (f.scalars, f.vectors, f.matrices))
    positions = g.positions.clone().requires_grad_(True)
    mixture = model(dataclasses.replace(g, positions=positions))
    rho = evaluate_points(mixture, probe_points(atoms, 200))
    model.zero_grad()
    rho.square().mean().backward()
    assert torch.isfinite(positions.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert_equivariant(model, atoms, random_orthogonal(7), np.array([0.3, 0.1, -0.4]))


def test_symmetric_molecule_gives_symmetric_density(model):
    atoms = molecule("C6H6")  # planar: the density must be mirror-symmetric about the ring plane
    normal = np.cross(atoms.positions[1] - atoms.positions[0], atoms.positions[2] - atoms.positions[0])
    normal /= np.linalg.norm(normal)
    mixture = predict(model, [atoms])
    p = probe_points(atoms)
    mirrored = p - 2.0 * np.outer((p - atoms.positions[0]) @ normal, normal)
    torch.testing.assert_close(
        evaluate_points(mixture, mirrored), evaluate_points(mixture, p), rtol=1e-6, atol=1e-9
    )


def test_periodic_cell_is_equivariant(model):
    nacl = bulk("NaCl", "rocksalt", a=5.64)
    nacl.positions += np.random.default_rng(2).normal(scale=0.05, size=nacl.positions.shape)
    assert_equivariant(model, nacl, random_orthogonal(4), np.array([0.2, 0.0, 0.5]))


@pytest.fixture(scope="module")
def lattice_model(config, reference) -> ElectraModel:
    torch.manual_seed(0)
    m = ElectraModel(dataclasses.replace(config, lattice_frame=True), reference).double()
    with torch.no_grad():  # let the vector and matrix heads move Gaussians visibly
        for name, p in m.named_parameters():
            if name.startswith(("heads.vector_head", "heads.matrix_head")):
                p.mul_(30.0)
    return m


def offsets(mixture: GaussianMixture, atoms: Atoms) -> torch.Tensor:
    """Distance (K,) of each Gaussian's centre from the nearest atom or periodic image, Angstrom."""
    cell = torch.as_tensor(atoms.cell.array)
    d = (mixture.centres[:, None, :] - torch.as_tensor(atoms.positions)[None]) @ torch.linalg.inv(cell)
    return ((d - torch.round(d)) @ cell).norm(dim=-1).min(1).values


def test_cubic_sites_get_directions_from_the_lattice_frame_only(model, lattice_model):
    salt = bulk("NaCl", "rocksalt", a=5.64)  # Oh sites: no vector survives the message passing
    spherical = predict(model, [salt])
    assert offsets(spherical, salt).max() < 1e-9
    assert torch.linalg.eigvalsh(spherical.covariances).diff(dim=-1).abs().max() < 1e-9
    assert offsets(predict(lattice_model, [salt]), salt).max() > 1e-3


def test_lattice_frame_is_equivariant_and_the_same_for_supercells(lattice_model):
    salt = bulk("NaCl", "rocksalt", a=5.64)
    salt.positions += np.random.default_rng(3).normal(scale=0.05, size=salt.positions.shape)
    assert_equivariant(lattice_model, salt, random_orthogonal(5), np.array([0.4, -0.1, 0.2]))
    big = salt.repeat((2, 1, 1))  # lattice vectors pointing the same way: the same density
    p = probe_points(salt)
    rho = evaluate_points(predict(lattice_model, [salt]), p, cell=salt.cell.array, pbc=(True,) * 3)
    rho_big = evaluate_points(predict(lattice_model, [big]), p, cell=big.cell.array, pbc=(True,) * 3)
    torch.testing.assert_close(rho_big, rho, rtol=1e-6, atol=1e-9 * rho.abs().max().item())


def test_lattice_frame_leaves_molecules_alone(lattice_model):
    g = Graph.from_atoms([methyl_ethanol()], lattice_model.config.cutoff, dtype=torch.float64)
    f = frame_features(g, lattice_model.config.cutoff, lattice=True)
    assert f.vectors.shape[1] == 7 and f.vectors[:, 4:].abs().max() == 0
    torch.testing.assert_close(f.vectors[:, :4], frame_features(g, lattice_model.config.cutoff).vectors)


# ---------------------------------------------------------------------- charge
def test_weights_are_positive_and_sum_to_the_electron_count(model):
    cation = methyl_ethanol()
    cation.info["charge"] = 1
    nacl = bulk("NaCl", "rocksalt", a=5.64)
    structures = [methyl_ethanol(), cation, nacl, Atoms("H"), molecule("C6H6")]
    mixture = predict(model, structures)
    expected = torch.tensor([26.0, 25.0, 28.0, 1.0, 42.0], dtype=torch.float64)
    torch.testing.assert_close(mixture.integral(), expected, rtol=1e-12, atol=1e-12)
    assert (mixture.weights > 0).all()
    per_atom = model.heads.gaussians_per_atom(
        torch.as_tensor(np.concatenate([s.numbers for s in structures]))
    )
    assert mixture.n_gaussians == int(per_atom.sum())


def banded_grid_integral(mixture: GaussianMixture, cell: np.ndarray | None = None) -> float:
    """Integral of ``mixture`` from grid sums, each width band on a grid fine enough for it.

    The Gaussians are grouped by their narrowest standard deviation (factor-2 bands); a
    band with narrowest width a is sampled with spacing a / 1.3 (sampling error
    ~exp(-2 pi^2 1.3^2) ~ 1e-15) on a periodic grid: the crystal's cell when that grid is
    small enough, else a small cubic box (the integral of a periodised density over one
    period is the total either way). 7-sigma cut-offs lose < 1e-10 of the weight.
    """
    sig = torch.linalg.eigvalsh(mixture.covariances).sqrt()  # (K, 3)
    smin = sig[:, 0]
    band = torch.floor(torch.log2(smin / smin.min())).long()
    total = 0.0
    for b in band.unique().tolist():
        sel = band == b
        sub = GaussianMixture(mixture.weights[sel], mixture.centres[sel], mixture.scale_tril[sel])
        h = smin[sel].min().item() / 1.3
        grid = None if cell is None else Grid.for_cell(cell, spacing=h)
        if grid is None or grid.n_points > 3_000_000:
            grid = Grid.for_cell(np.eye(3) * 48 * h, spacing=h)
        total += evaluate(sub, grid, n_sigma=7.0).sum().item() * grid.voxel_volume
    return total


def test_grid_integral_equals_electron_count(model):
    mol = molecule("CH3CH2OH")
    diamond = bulk("C", "diamond", a=3.567)
    mixtures = predict(model, [mol, diamond]).split()
    assert banded_grid_integral(mixtures[0]) == pytest.approx(26.0, abs=1e-4)
    assert banded_grid_integral(mixtures[1], diamond.cell.array) == pytest.approx(12.0, abs=1e-4)


def test_untrained_model_is_close_to_the_promolecule(config, reference):
    # default Gaussian counts: at least one floating slot per promolecule component
    counts = ElectraConfig.for_reference(reference)
    torch.manual_seed(0)
    small = dataclasses.replace(config, n_core=counts.n_core, n_floating=counts.n_floating)
    fresh = ElectraModel(small, reference).double()
    atoms = molecule("CH3CH2OH")
    mixture = predict(fresh, [atoms])
    w = np.concatenate([reference[z].weights for z in atoms.numbers])
    s = np.concatenate([reference[z].sigmas for z in atoms.numbers])
    mu = np.repeat(atoms.positions, [len(reference[z].weights) for z in atoms.numbers], axis=0)
    promolecule = GaussianMixture(
        torch.as_tensor(w),
        torch.as_tensor(mu),
        torch.as_tensor(s)[:, None, None] * torch.eye(3, dtype=torch.float64),
    )
    p = probe_points(atoms, 2000)
    ref, got = evaluate_points(promolecule, p), evaluate_points(mixture, p)
    assert ((got - ref).abs().sum() / ref.abs().sum()).item() < 0.005


def test_widening_map_copies_every_gaussian_about_equally_often():
    old, new = (8, 32, 32), (16, 128, 100)
    mapping = np.array(widening_map(old, new))
    for o, n in zip(old, new):
        copies = np.bincount(mapping[:n], minlength=o)
        assert len(copies) == o and copies.min() >= n // o and copies.max() <= -(-n // o) + 1
    assert widening_map((3,), (3,)) == [0, 1, 2]
    for bad in [((8, 32), (4, 64)), ((8, 32), (40, 33))]:  # shrinking; losing Gaussians 8..31 of row 1
        with pytest.raises(InvalidInputError, match="floating Gaussians per element"):
            widening_map(*bad)


def test_widened_model_predicts_the_same_density(model):
    trained = copy.deepcopy(model)
    with torch.no_grad():  # move the head well away from its small initial values
        generator = torch.Generator().manual_seed(3)
        for p in trained.heads.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    state = {k: v.clone() for k, v in trained.state_dict().items()}
    n_floating = tuple(2 * n + 1 for n in trained.config.n_floating)
    atoms = [methyl_ethanol(), bulk("NaCl", "rocksalt", a=5.64)]
    points = probe_points(atoms[0], 500)
    before = predict(trained, atoms)
    exact = trained.widened(n_floating, jitter=0.0)
    after = predict(exact, atoms)
    assert exact.config == dataclasses.replace(trained.config, n_floating=n_floating)
    added = [trained.config.n_floating[trained.config.elements.index(z)] + 1 for z in atoms[0].numbers]
    assert after.sizes[0] == before.sizes[0] + sum(added)
    torch.testing.assert_close(after.integral(), before.integral(), rtol=1e-12, atol=0)
    for a, b in zip(before.split(), after.split()):
        torch.testing.assert_close(evaluate_points(b, points), evaluate_points(a, points), rtol=1e-9, atol=1e-12)
    jittered = trained.widened(n_floating, jitter=0.02)
    rows = jittered.heads.vector_head.weight
    assert not torch.equal(rows[0], rows[trained.heads.mf])  # copies of one Gaussian can part
    moved = evaluate_points(predict(jittered, atoms[:1]), points) - evaluate_points(before.split()[0], points)
    assert 0 < moved.abs().sum() / evaluate_points(before.split()[0], points).abs().sum() < 0.01
    for name, value in trained.state_dict().items():  # the widened model is a new one
        assert torch.equal(value, state[name]), name


# ---------------------------------------------------------------------- interface, files, errors
def test_density_model_save_load_round_trip(tmp_path, config, reference):
    dm = ElectraDensityModel(ElectraModel(config, reference))
    assert isinstance(dm, DensityModel) and dm.elements == frozenset(config.elements)
    structures = [methyl_ethanol(), bulk("NaCl", "rocksalt", a=5.64)]
    before = dm.predict(structures)
    folder = dm.save(tmp_path / "run")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    for path in (folder, folder / "model.safetensors"):
        after = ElectraDensityModel.load(path).predict(structures)
        assert after.sizes == before.sizes
        assert torch.equal(after.weights, before.weights) and torch.equal(after.centres, before.centres)
        assert torch.equal(after.scale_tril, before.scale_tril)
    assert ElectraConfig.from_dict(json.loads((folder / "config.json").read_text())) == config


def test_new_model_uses_the_package_table(reference):
    dm = ElectraDensityModel.new(seed=0)
    assert dm.elements >= frozenset(range(1, 11))
    mixture = dm.predict([molecule("H2O")])
    assert mixture.integral().item() == pytest.approx(10.0, rel=1e-6)


def test_load_errors_are_one_line(tmp_path, config):
    with pytest.raises(FileFormatError, match="missing"):
        ElectraDensityModel.load(tmp_path)
    dm = ElectraDensityModel(ElectraModel(config))
    folder = dm.save(tmp_path / "run")
    (folder / "config.json").write_text(json.dumps({**config.to_dict(), "channels": 4}))
    with pytest.raises(FileFormatError, match="do not match"):
        ElectraDensityModel.load(folder)
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(FileFormatError):
        ElectraDensityModel.load(folder)


def test_unknown_element_and_bad_config_are_rejected(model, config):
    dm = ElectraDensityModel(model)
    with pytest.raises(UnknownElementError, match="Au"):
        dm.predict([Atoms("AuH", positions=[[0, 0, 0], [0, 0, 1.5]])])
    with pytest.raises(UnknownElementError, match="Au"):
        model(Graph.from_atoms([Atoms("Au")], 4.0))
    with pytest.raises(InvalidInputError, match="n_floating"):
        dataclasses.replace(config, n_floating=(0,) * len(config.elements))
    with pytest.raises(InvalidInputError, match="unknown fields"):
        ElectraConfig.from_dict({**config.to_dict(), "colour": "blue"})


def test_loss_on_grid_backpropagates_to_every_parameter(model):
    atoms = methyl_ethanol()
    mixture = predict(model, [atoms])
    grid = Grid.for_molecule(atoms.positions, spacing=0.3, margin=2.0)
    rho = evaluate(mixture, grid, backend="torch")
    model.zero_grad()
    (rho - 0.1).abs().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_shipped_model_sends_periodic_structures_to_its_crystal_model():
    from ase_electra.models import load_model
    from ase_electra.models.shipped import ShippedModel

    model = load_model("default")
    assert isinstance(model, ShippedModel)
    salt, water = bulk("NaCl", "rocksalt", a=5.64), molecule("H2O")
    mixed = model.predict([salt, water, salt])
    parts = [model.crystals.predict([salt]), model.molecules.predict([water]), model.crystals.predict([salt])]
    assert mixed.sizes == tuple(p.n_gaussians for p in parts)
    for got, expected in zip(mixed.split(), parts):
        torch.testing.assert_close(got.centres, expected.centres, rtol=1e-5, atol=1e-6)  # batch vs one: float32
        torch.testing.assert_close(got.weights, expected.weights, rtol=1e-5, atol=1e-6)
    assert model.part(salt) is model.crystals and model.part(water) is model.molecules


def test_shipped_model_names_the_part_that_refuses_an_element():
    from ase.build import bulk

    from ase_electra.errors import UnknownElementError
    from ase_electra.models import load_model

    model = load_model("default")
    with pytest.raises(UnknownElementError, match=r"Na not supported by model 'electra:default \(molecules\)'"):
        model.predict([Atoms("NaCl", positions=[[0, 0, 0], [2.4, 0, 0]])])
    with pytest.raises(UnknownElementError, match=r"Co not supported by model 'electra:default \(crystals\)'"):
        model.predict([bulk("Co")])


# ---------------------------------------------------------------------- new elements
def thiophene() -> Atoms:
    """C4H4S (Angstrom): a planar ring, C-S 1.71, C=C 1.37, C-C 1.42, C-H 1.08."""
    return Atoms(
        "SC4H4",
        positions=[[0.0, 1.19, 0.0], [1.23, 0.0, 0.0], [0.71, -1.27, 0.0], [-0.71, -1.27, 0.0], [-1.23, 0.0, 0.0],
                   [2.28, 0.26, 0.0], [1.33, -2.15, 0.0], [-1.33, -2.15, 0.0], [-2.28, 0.26, 0.0]],
    )


def test_analogues_share_outer_electrons():
    known = (1, 6, 7, 8, 9)
    assert [analogue(z, known) for z in (16, 17, 35, 15, 14, 5, 3, 2)] == [8, 9, 9, 7, 6, 6, 6, 1]
    assert [outer_electrons(z) for z in (8, 16, 34, 31)] == [6, 6, 6, 3]
    with pytest.raises(InvalidInputError):
        analogue(16, ())


@pytest.fixture(scope="module")
def organic(model, reference) -> ElectraModel:
    """``model``'s settings for H, C, N, O, F only, heads moved away from their start."""
    config = dataclasses.replace(
        ElectraConfig.for_reference(reference, (1, 6, 7, 8, 9), floating_heavy=4, floating_light=2),
        **{f.name: getattr(model.config, f.name) for f in dataclasses.fields(model.config)
           if f.name not in ("elements", "n_core", "n_floating")},
    )
    torch.manual_seed(1)
    m = ElectraModel(config, reference).double()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.startswith(("heads.scalar_head.2", "heads.vector_head", "heads.matrix_head")):
                p.mul_(30.0)
    return m


def test_grown_model_keeps_old_elements_bit_for_bit(organic, reference):
    state = {k: v.clone() for k, v in organic.state_dict().items()}
    before = predict(organic, [methyl_ethanol(), molecule("HCOOH")])
    grown = organic.grown([16, 17, 8], reference)
    assert grown.config.elements == (1, 6, 7, 8, 9, 16, 17)
    after = predict(grown, [methyl_ethanol(), molecule("HCOOH")])
    for name in ("weights", "centres", "scale_tril"):
        assert torch.equal(getattr(after, name), getattr(before, name)), name
    for name, value in organic.state_dict().items():  # the old model is untouched
        assert torch.equal(value, state[name]), name
    with pytest.raises(UnknownElementError):
        predict(organic, [thiophene()])


@pytest.mark.parametrize("z", [16, 17, 35])
def test_grown_element_starts_as_its_promolecule_in_its_hydride(organic, reference, z):
    grown = organic.grown([z], reference)
    hydride = calibration_hydride(z)
    mixture = predict(grown, [hydride])
    own = int(grown.heads.slot_mask[int(grown.element_row[z])].sum())
    assert mixture.weights[:own].sum().item() == pytest.approx(z, rel=1e-9)
    assert mixture.integral().item() == pytest.approx(z + len(hydride) - 1, rel=1e-9)
    widths = torch.diagonal(mixture.scale_tril[:own], dim1=-2, dim2=-1).prod(-1) ** (1 / 3)  # mean sigma, A
    atom = reference[z]
    assert widths.min().item() == pytest.approx(float(atom.sigmas.min()), rel=0.05)


def test_grown_model_predicts_thiophene_near_the_promolecule(organic, reference):
    grown = organic.grown([16], reference)
    atoms = thiophene()
    mixture = predict(grown, [atoms])
    assert mixture.integral().item() == pytest.approx(44.0, rel=1e-9)
    points = probe_points(atoms, 600)
    from ase_electra.models.promolecule import PromoleculeModel

    promolecule = evaluate_points(PromoleculeModel(dtype=torch.float64).predict([atoms]), points)
    ours = evaluate_points(mixture, points)
    assert (ours - promolecule).abs().sum() / promolecule.abs().sum() < 0.5  # a start, not noise


def test_with_cusps_adds_a_narrow_core_gaussian_and_keeps_the_rest(organic):
    c = organic.config
    free = [z for z, k in zip(c.elements, c.n_core) if 0 < k < organic.heads.mc]
    full = [z for z, k in zip(c.elements, c.n_core) if k == organic.heads.mc]
    assert free and full, (c.elements, c.n_core)
    z = free[0]
    state = {k: v.clone() for k, v in organic.state_dict().items()}
    cusped = organic.with_cusps([z])
    row = c.elements.index(z)
    assert cusped.config.n_core[row] == c.n_core[row] + 1
    assert all(a == b for i, (a, b) in enumerate(zip(cusped.config.n_core, c.n_core)) if i != row)
    for name, value in organic.state_dict().items():  # the old model is untouched
        assert torch.equal(value, state[name]), name
    without = [molecule("CH4"), molecule("H2O")]
    assert z not in {int(n) for m in without for n in m.numbers}
    for name in ("weights", "centres", "scale_tril"):
        assert torch.equal(getattr(predict(cusped, without), name), getattr(predict(organic, without), name)), name
    atoms = Atoms([z, 1], positions=[(0, 0, 0), (0, 0, 1.0)])
    before, after = predict(organic, [atoms]), predict(cusped, [atoms])
    assert len(after.weights) == len(before.weights) + 1
    widths = torch.diagonal(after.scale_tril[: c.n_core[row] + 1], dim1=-2, dim2=-1)[:, 0]  # the core, sigma
    assert widths.argmin().item() == c.n_core[row]  # the new one is the narrowest
    at = torch.tensor([[0.0, 0.0, 0.0]], dtype=torch.float64)
    assert evaluate_points(after, at).item() > evaluate_points(before, at).item()
    away = probe_points(atoms, 300)
    away = torch.as_tensor(away[np.linalg.norm(away, axis=1) > 0.1])
    old, new = evaluate_points(before, away), evaluate_points(after, away)
    change = ((new - old).abs() / old)[old > 1e-8]
    assert change.max().item() < 1e-3  # the new slot takes a share of the weights, nothing else (5e-5 here)
    with pytest.raises(InvalidInputError, match="no free core slot"):
        organic.with_cusps([full[0]])
    with pytest.raises(InvalidInputError, match="no free core slot"):
        organic.with_cusps([1])
