"""Gmsh RVE (meshes/rve.py): physical groups, areas, wall/particle facets, conformity with pores,
pores on/off, gap grading, determinism, .msh/PNG output, MPI; `creep-cathode mesh` end to end."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from creep_cathode import dolfinx_env  # noqa: F401
from creep_cathode.meshes.rve import PORE_TAG, WALL_TAGS, GapSizeField, _close_pairs, generate, gmsh_session, plot_rve, write_msh

from creep_cathode.meshes.packing import Circle

ROOT = Path(__file__).resolve().parents[1]
MPIEXEC = str(ROOT / ".venv" / "bin" / "mpiexec")
W = H = 20e-6
H_MESH, MIN_GAP = 1e-6, 0.05e-6
CIRCLES = [Circle("Se", 6e-6, 8e-6, 4e-6), Circle("MSe", 14.2e-6, 8e-6, 4e-6),  # gap 0.2 µm
           Circle("Se", 10e-6, 19e-6, 3e-6)]  # cut by the top side
SIDES = {"left": (0, 0.0), "right": (0, W), "bottom": (1, 0.0), "top": (1, H)}
# an inscribed polygon of n >= 48 segments per circle: area short by at most (2 pi / n)^2 / 6
POLY_DEFICIT = (2 * math.pi / 48) ** 2 / 6


def _clipped_area(c, w, h):
    """Area of a circle inside [0, w] x [0, h], for a circle cut by at most one side."""
    d = [c.x, w - c.x, c.y, h - c.y]
    cut = [di for di in d if di < c.r]
    assert len(cut) <= 1, "helper handles one cut side only"
    a = math.pi * c.r**2
    for di in cut:  # remove the cap beyond the side
        a -= c.r**2 * math.acos(di / c.r) - di * math.sqrt(c.r**2 - di**2)
    return a


def _areas(m):
    from dolfinx import fem
    import ufl

    dx = ufl.Measure("dx", domain=m.mesh, subdomain_data=m.cell_tags)
    return {int(t): fem.assemble_scalar(fem.form(1.0 * dx(int(t)))) for t in np.unique(m.cell_tags.values)}


def _facets(m):
    """(tag, vertex coordinates (2, 2), number of cells of the facet, sorted cell tags of those cells)."""
    from dolfinx.mesh import entities_to_geometry

    msh, ft = m.mesh, m.facet_tags
    msh.topology.create_connectivity(1, 2)
    f2c = msh.topology.connectivity(1, 2)
    ctag = np.full(msh.topology.index_map(2).size_local + msh.topology.index_map(2).num_ghosts, -1)
    ctag[m.cell_tags.indices] = m.cell_tags.values
    geo = entities_to_geometry(msh, 1, ft.indices)
    x = msh.geometry.x[:, :2]
    return [(int(t), x[geo[k]], len(f2c.links(f)), sorted(int(ctag[c]) for c in f2c.links(f)))
            for k, (f, t) in enumerate(zip(ft.indices, ft.values))]


def test_groups_areas_walls_and_conformity():
    m = generate(CIRCLES, W, H, H_MESH, MIN_GAP, include_pores=True)
    assert m.bodies == [(1, "Se"), (2, "MSe"), (3, "Se")]
    assert m.info["narrow_gaps"] == 1 and m.info["min_size_m"] == pytest.approx(0.2e-6)
    a = _areas(m)
    assert set(a) == {1, 2, 3, PORE_TAG}
    exact = [_clipped_area(c, W, H) for c in CIRCLES]
    for i, ae in enumerate(exact):
        assert ae * (1 - POLY_DEFICIT) <= a[i + 1] <= ae * (1 + 1e-12)
    assert sum(a.values()) == pytest.approx(W * H, rel=1e-12)  # the box is meshed exactly
    assert a[PORE_TAG] == pytest.approx(W * H - sum(exact), abs=POLY_DEFICIT * sum(exact))
    seen = set()
    for tag, p, ncells, ctags in _facets(m):
        seen.add(tag)
        if tag in WALL_TAGS.values():
            side = next(s for s, t in WALL_TAGS.items() if t == tag)
            ax, v = SIDES[side]
            assert np.allclose(p[:, ax], v, atol=1e-12) and ncells == 1
        else:  # particle/pore interface: on its circle, shared by one particle and one pore cell
            c = CIRCLES[tag - 1]
            assert np.allclose(np.hypot(p[:, 0] - c.x, p[:, 1] - c.y), c.r, rtol=1e-6)
            assert ncells == 2 and ctags == [tag, PORE_TAG]
    assert seen == {1, 2, 3} | set(WALL_TAGS.values())


def test_physical_group_names_and_clipped_out_circle():
    """Group names f"{phase}_{i}", "pores", sides; a circle outside the box gets no group."""
    import gmsh

    cs = CIRCLES + [Circle("MSe", 30e-6, 10e-6, 2e-6)]
    with gmsh_session():
        from creep_cathode.meshes.rve import build_gmsh_model

        meta = build_gmsh_model(cs, W, H, 2e-6, MIN_GAP, include_pores=True)
        names = {(d, t): gmsh.model.getPhysicalName(d, t) for d, t in gmsh.model.getPhysicalGroups()}
    assert meta["bodies"] == [(1, "Se"), (2, "MSe"), (3, "Se")]
    assert {n for (d, _), n in names.items() if d == 2} == {"Se_0", "MSe_1", "Se_2", "pores"}
    assert names[(2, PORE_TAG)] == "pores" and names[(2, 2)] == "MSe_1"
    assert {t for (d, t) in names if d == 1} == {1, 2, 3} | set(WALL_TAGS.values())
    assert all(names[(1, t)] == s for s, t in WALL_TAGS.items())


def test_no_pores():
    m = generate(CIRCLES, W, H, H_MESH, MIN_GAP, include_pores=False)
    assert m.bodies == [(1, "Se"), (2, "MSe"), (3, "Se")]
    a = _areas(m)
    assert set(a) == {1, 2, 3}
    for i, c in enumerate(CIRCLES):
        ae = _clipped_area(c, W, H)
        assert ae * (1 - POLY_DEFICIT) <= a[i + 1] <= ae * (1 + 1e-12)
    tags = set()
    for tag, p, ncells, _ in _facets(m):
        tags.add(tag)
        assert ncells == 1  # every tagged facet is on the boundary of its body
        if tag == WALL_TAGS["top"]:
            assert np.allclose(p[:, 1], H, atol=1e-12)
        else:
            c = CIRCLES[tag - 1]
            assert np.allclose(np.hypot(p[:, 0] - c.x, p[:, 1] - c.y), c.r, rtol=1e-6)
    assert tags == {1, 2, 3, WALL_TAGS["top"]}  # only the cut particle touches a side


def test_overlap_refused():
    with pytest.raises(ValueError, match="overlap"):
        generate([Circle("Se", 5e-6, 5e-6, 3e-6), Circle("Se", 10e-6, 5e-6, 3e-6)], W, H, H_MESH, MIN_GAP)


def _gap_pair(g):
    """Two circles of radius 4 µm a gap g apart (gap midpoint at (10 + g/2, 8) µm) and a third one g from
    the right side (gap midpoint at (20, 16.5) µm)."""
    return [Circle("Se", 6e-6, 8e-6, 4e-6), Circle("MSe", 14e-6 + g, 8e-6, 4e-6),
            Circle("Se", 17.5e-6 - g, 16.5e-6, 2.5e-6)]


def _boundary_facets(m, tag):
    """Midpoints and lengths of the boundary facets of particle `tag`."""
    fac = [p for t, p, _, _ in _facets(m) if t == tag]
    return np.array([p.mean(axis=0) for p in fac]), np.array([np.linalg.norm(p[0] - p[1]) for p in fac])


def _cells(m, tag):
    from dolfinx.mesh import entities_to_geometry

    P = m.mesh.geometry.x[entities_to_geometry(m.mesh, 2, m.cell_tags.indices[m.cell_tags.values == tag]), :2]
    edges = np.stack([np.linalg.norm(P[:, k] - P[:, (k + 1) % 3], axis=1) for k in range(3)], 1)
    return P.mean(axis=1), edges.max(axis=1)


def test_gap_grading_with_pores():
    """A gap of 2 % of the radius (circle-circle and circle-side): the pore triangles at its
    narrowest point are no larger than 2 gap widths, the particle facets there no longer than 2 g,
    while the facets on the far side of the same circle stay ~h (the grading is local)."""
    g = 0.08e-6
    m = generate(_gap_pair(g), W, H, H_MESH, MIN_GAP, include_pores=True)
    cen, emax = _cells(m, PORE_TAG)
    for mid in ((10e-6 + 0.5 * g, 8e-6), (20e-6 - 0.5 * g, 16.5e-6)):
        near = np.hypot(cen[:, 0] - mid[0], cen[:, 1] - mid[1]) < g
        assert near.sum() >= 2 and emax[near].max() <= 2 * g
    mid, L = _boundary_facets(m, 1)
    near = np.hypot(mid[:, 0] - 10e-6, mid[:, 1] - 8e-6) < 0.3e-6
    far = mid[:, 0] < 4e-6
    assert near.any() and far.any()
    assert L[near].max() <= 2 * g and L[far].min() > 0.3 * H_MESH
    assert m.info["cells"] < 6000  # graded, not uniformly refined (uniform 2g: ~10^6)


def test_gap_grading_without_pores():
    """Without pores (the simulation mesh) the boundary facets next to the gap are ~2 g."""
    g = 0.08e-6
    m = generate(_gap_pair(g), W, H, H_MESH, MIN_GAP, include_pores=False)
    assert PORE_TAG not in set(m.cell_tags.values)
    mid, L = _boundary_facets(m, 1)
    near = np.hypot(mid[:, 0] - 10e-6, mid[:, 1] - 8e-6) < 0.3e-6
    far = mid[:, 0] < 4e-6
    assert near.any() and far.any()
    assert L[near].max() < 3 * g and L[far].mean() > 2.5 * L[near].max()


def test_gap_size_field():
    """The pores' size law: c g at the narrowest point, never above the local gap width along
    the gap, h far from it, never below the floor."""
    cs = [Circle("Se", 0.0, 0.0, 2.0), Circle("Se", 4.1, 0.0, 2.0)]  # model units, g = 0.1
    pairs = _close_pairs(cs, 10.0, 10.0, 0.8)
    assert len(pairs) == 1 and pairs[0][2] == pytest.approx(0.1)
    f = GapSizeField(cs, pairs, 10.0, 10.0, 0.8, 0.05)
    assert f.size(np.array([2.05]), np.array([0.0]))[0] == pytest.approx(0.1)
    y = np.linspace(0, 1.5, 31)
    xl = np.sqrt(4.0 - y**2)  # boundary points of circle 0 and 1 at height y
    width = (4.1 - xl) - xl
    s = f.size(xl, y)
    assert np.all(s <= np.maximum(width, f.floor) + 1e-12) and np.all(np.diff(s) >= 0)
    assert f.size(np.array([-1.5, 9.0]), np.array([0.0, 9.0])).tolist() == [0.8, 0.8]
    tri = f.view_triangles(10.0, 10.0)
    assert tri.shape[1] == 12 and tri[:, 9:].min() >= 0.05 and tri[:, 9:].max() == 0.8
    # the quadtree covers the box exactly once
    area = 0.5 * np.abs((tri[:, 1] - tri[:, 0]) * (tri[:, 5] - tri[:, 3]) - (tri[:, 2] - tri[:, 0]) * (tri[:, 4] - tri[:, 3]))
    assert area.sum() == pytest.approx(100.0, rel=1e-12)


def test_determinism(tmp_path):
    for pores in (True, False):
        a = generate(CIRCLES, W, H, H_MESH, MIN_GAP, include_pores=pores)
        b = generate(CIRCLES, W, H, H_MESH, MIN_GAP, include_pores=pores)
        assert a.info["cells"] == b.info["cells"]
        assert np.array_equal(a.mesh.geometry.x, b.mesh.geometry.x)
        assert np.array_equal(a.cell_tags.values, b.cell_tags.values)
        assert np.array_equal(a.facet_tags.indices, b.facet_tags.indices)
    write_msh(CIRCLES, W, H, H_MESH, MIN_GAP, tmp_path / "a.msh")
    write_msh(CIRCLES, W, H, H_MESH, MIN_GAP, tmp_path / "b.msh")
    assert (tmp_path / "a.msh").read_bytes() == (tmp_path / "b.msh").read_bytes()


def test_msh_and_png(tmp_path):
    import meshio

    meta = write_msh(CIRCLES, W, H, H_MESH, MIN_GAP, tmp_path / "rve.msh")
    assert (tmp_path / "rve.msh").read_text()[:30].split()[:2] == ["$MeshFormat", "4.1"]
    msh = meshio.read(tmp_path / "rve.msh")
    assert np.allclose(msh.points[:, :2].min(axis=0), 0.0) and np.allclose(msh.points[:, :2].max(axis=0), W)
    names = set(msh.field_data)
    assert {"Se_0", "MSe_1", "Se_2", "pores", "Se", "MSe", "left", "top"} <= names
    assert sum(len(b.data) for b in msh.cells if b.type == "triangle") == meta["cells"]
    # generate(msh_path=...) writes the same file without meshing twice
    generate(CIRCLES, W, H, H_MESH, MIN_GAP, msh_path=tmp_path / "same.msh")
    assert (tmp_path / "same.msh").read_bytes() == (tmp_path / "rve.msh").read_bytes()
    plot_rve(CIRCLES, W, H, tmp_path / "rve.png")
    plot_rve(CIRCLES, W, H, tmp_path / "mesh.png", mesh_file=tmp_path / "rve.msh")
    for p in ("rve.png", "mesh.png"):
        assert (tmp_path / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


_MPI_SCRIPT = """
import json, sys
from creep_cathode import dolfinx_env
import numpy as np
from mpi4py import MPI
from creep_cathode.meshes.packing import Circle
from creep_cathode.meshes.rve import generate
comm = MPI.COMM_WORLD
cs = [Circle(*c) for c in {circles!r}]
out = {{}}
for pores in (True, False):
    m = generate(cs, {w!r}, {h!r}, {hm!r}, {g!r}, include_pores=pores, comm=comm)
    nc = m.mesh.topology.index_map(2).size_local
    nf = m.mesh.topology.index_map(1).size_local
    ct = m.cell_tags.values[m.cell_tags.indices < nc]
    ft = m.facet_tags.values[m.facet_tags.indices < nf]
    tags = sorted({{int(t) for t in np.concatenate(comm.allgather(ct))}})
    out[str(pores)] = {{"cells": comm.allreduce(nc), "nodes": m.mesh.geometry.index_map().size_global,
                        "cell_tags": {{str(t): comm.allreduce(int((ct == t).sum())) for t in tags}},
                        "facet_tags": {{str(t): comm.allreduce(int((ft == t).sum()))
                                       for t in sorted({{int(t) for t in np.concatenate(comm.allgather(ft))}})}},
                        "info_cells": m.info["cells"]}}
out["ranks"] = comm.size
if comm.rank == 0:
    print("RESULT", json.dumps(out, sort_keys=True))
"""


def _run_script(n):
    code = _MPI_SCRIPT.format(root=str(ROOT), circles=[(c.phase, c.x, c.y, c.r) for c in CIRCLES], w=W, h=H,
                              hm=H_MESH, g=MIN_GAP)
    cmd = [sys.executable, "-c", code] if n == 1 else [MPIEXEC, "-n", str(n), sys.executable, "-c", code]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


@pytest.mark.mpi
def test_generate_under_mpi():
    """Gmsh on rank 0, mesh distributed over 2 ranks: the global cell, node and per-tag cell and
    facet counts equal the serial ones (with and without pores)."""
    s, p = _run_script(1), _run_script(2)
    assert (s.pop("ranks"), p.pop("ranks")) == (1, 2)
    assert s == p
    assert s["True"]["cells"] == s["True"]["info_cells"] and s["True"]["cell_tags"][str(PORE_TAG)] > 0


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_mesh_command_paper_fractions(tmp_path, seed):
    """`creep-cathode mesh configs/se_mse.toml`: the paper's composition within 0.5 % per phase."""
    from creep_cathode.cli import main

    out = tmp_path / f"s{seed}"
    assert main(["mesh", str(ROOT / "configs" / "se_mse.toml"), "-o", str(out), "--set", f"rve.seed={seed}"]) == 0
    info = json.loads((out / "rve.json").read_text())
    fr = info["area_fractions"]
    assert abs(fr["Se"] - 0.356) < 0.005 and abs(fr["MSe"] - 0.397) < 0.005
    assert abs(info["porosity"] - 0.247) < 0.005
    assert info["min_gap_m"] >= 0.05e-6 * (1 - 1e-9)
    assert (out / "rve.msh").stat().st_size > 0 and (out / "rve.png").stat().st_size > 0
    if seed == 1:  # same seed -> identical mesh file
        out2 = tmp_path / "again"
        main(["mesh", str(ROOT / "configs" / "se_mse.toml"), "-o", str(out2)])
        assert (out / "rve.msh").read_bytes() == (out2 / "rve.msh").read_bytes()


@pytest.mark.mpi
def test_mesh_command_under_mpi(tmp_path):
    exe = str(ROOT / ".venv" / "bin" / "creep-cathode")
    r1 = subprocess.run([exe, "mesh", str(ROOT / "configs" / "se_mse.toml"), "-o", str(tmp_path / "a")],
                        capture_output=True, text=True)
    r2 = subprocess.run([MPIEXEC, "-n", "2", exe, "mesh", str(ROOT / "configs" / "se_mse.toml"), "-o",
                         str(tmp_path / "b")], capture_output=True, text=True)
    assert r1.returncode == 0 and r2.returncode == 0, r2.stderr
    a = json.loads((tmp_path / "a" / "rve.json").read_text())
    b = json.loads((tmp_path / "b" / "rve.json").read_text())
    assert a["cells"] == b["cells"] and a["nodes"] == b["nodes"] and b["ranks"] == 2
    assert (tmp_path / "a" / "rve.msh").read_bytes() == (tmp_path / "b" / "rve.msh").read_bytes()
