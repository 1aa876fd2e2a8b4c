"""Gmsh RVE: physical groups, areas, wall facets, pores on/off, gap grading, determinism, MPI."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from solver import dolfinx_env  # noqa: F401
from meshes.packing import Circle, clipped_area
from meshes.rve import PORE_TAG, WALL_TAGS, generate

ROOT = Path(__file__).resolve().parents[1]
W = H = 20e-6
CIRCLES = [Circle("Se", 6e-6, 8e-6, 4e-6), Circle("MSe", 14.2e-6, 8e-6, 4e-6),  # gap 0.2 µm
           Circle("Se", 10e-6, 19e-6, 3e-6)]  # cut by the top side


def _areas(m):
    from dolfinx import fem
    import ufl

    out = {}
    dx = ufl.Measure("dx", domain=m.mesh, subdomain_data=m.cell_tags)
    for t in list(np.unique(m.cell_tags.values)):
        out[int(t)] = fem.assemble_scalar(fem.form(1.0 * dx(int(t))))
    return out


def test_groups_areas_and_walls():
    m = generate(CIRCLES, W, H, 1e-6, 0.05e-6, include_pores=True)
    assert m.bodies == [(1, "Se"), (2, "MSe"), (3, "Se")]
    a = _areas(m)
    for i, c in enumerate(CIRCLES):
        assert a[i + 1] == pytest.approx(clipped_area(c, W, H), rel=4e-3, abs=0)
    assert a[PORE_TAG] == pytest.approx(W * H - sum(clipped_area(c, W, H) for c in CIRCLES), rel=4e-3, abs=0)
    # facets on the walls lie on the box sides; particle facets lie on their circle
    msh, ft = m.mesh, m.facet_tags
    msh.topology.create_connectivity(1, 0)
    f2v = msh.topology.connectivity(1, 0)
    x = msh.geometry.x
    for side, tag in WALL_TAGS.items():
        for f in ft.find(tag):
            p = x[f2v.links(f)]
            k = {"left": (0, 0.0), "right": (0, W), "bottom": (1, 0.0), "top": (1, H)}[side]
            assert np.allclose(p[:, k[0]], k[1], atol=1e-12)
    assert len(ft.find(WALL_TAGS["top"])) > 0
    for i, c in enumerate(CIRCLES):
        fs = ft.find(i + 1)
        assert len(fs) > 0
        p = x[np.concatenate([f2v.links(f) for f in fs])]
        assert np.allclose(np.hypot(p[:, 0] - c.x, p[:, 1] - c.y), c.r, rtol=1e-6)


def test_no_pores_and_gap_grading():
    """Pores left out; the boundary facets next to a narrow gap (2 % of the radius) are refined
    to ~2 gap widths, well below the facets on the far side of the same circle."""
    g = 0.08e-6
    cs = [Circle("Se", 6e-6, 8e-6, 4e-6), Circle("MSe", 14e-6 + g, 8e-6, 4e-6)]
    m = generate(cs, W, H, 1e-6, 0.05e-6, include_pores=False)
    assert PORE_TAG not in set(m.cell_tags.values)
    msh, ft = m.mesh, m.facet_tags
    msh.topology.create_connectivity(1, 0)
    f2v = msh.topology.connectivity(1, 0)
    x = msh.geometry.x[:, :2]
    fs = ft.find(1)
    v = np.array([f2v.links(f) for f in fs])
    mid = 0.5 * (x[v[:, 0]] + x[v[:, 1]])
    L = np.linalg.norm(x[v[:, 0]] - x[v[:, 1]], axis=1)
    near = np.hypot(mid[:, 0] - 10e-6, mid[:, 1] - 8e-6) < 0.3e-6
    far = mid[:, 0] < 4e-6
    assert near.any() and far.any()
    assert L[near].max() < 3 * g
    assert L[far].mean() > 2.5 * L[near].max()


def test_determinism():
    a = generate(CIRCLES, W, H, 1e-6, 0.05e-6, include_pores=True)
    b = generate(CIRCLES, W, H, 1e-6, 0.05e-6, include_pores=True)
    assert np.array_equal(a.mesh.geometry.x, b.mesh.geometry.x)
    assert np.array_equal(a.cell_tags.values, b.cell_tags.values)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_mesh_command_paper_fractions(tmp_path, seed):
    """`creep-cathode mesh configs/se_mse.toml`: the paper's composition within 0.5 % per phase."""
    from solver.cli import main

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
def test_mesh_under_mpi(tmp_path):
    exe = str(ROOT / ".venv" / "bin" / "creep-cathode")
    mpiexec = str(ROOT / ".venv" / "bin" / "mpiexec")
    r1 = subprocess.run([exe, "mesh", str(ROOT / "configs" / "se_mse.toml"), "-o", str(tmp_path / "a")],
                        capture_output=True, text=True)
    r2 = subprocess.run([mpiexec, "-n", "2", exe, "mesh", str(ROOT / "configs" / "se_mse.toml"), "-o",
                         str(tmp_path / "b")], capture_output=True, text=True)
    assert r1.returncode == 0 and r2.returncode == 0, r2.stderr
    a = json.loads((tmp_path / "a" / "rve.json").read_text())
    b = json.loads((tmp_path / "b" / "rve.json").read_text())
    assert a["cells"] == b["cells"] and a["nodes"] == b["nodes"] and b["ranks"] == 2
