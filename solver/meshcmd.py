"""`creep-cathode mesh CONFIG -o DIR`: DIR/rve.msh, DIR/rve.json, DIR/rve.png."""

from __future__ import annotations

import time
from pathlib import Path

from . import dolfinx_env  # noqa: F401
from mpi4py import MPI

from .folders import make_folder
from .output import write_json


def write_mesh(cfg, out, comm=MPI.COMM_WORLD) -> dict:
    """`creep-cathode mesh`: pack and mesh the RVE of `cfg` into folder `out` (rve.msh, rve.json, rve.png); returns the rve.json record."""
    r = cfg.rve
    out = Path(out)
    make_folder(out, comm)
    from .meshes import packing

    from .domain import block_domain, circles_from_config

    t0 = time.perf_counter()
    circles = [] if r.kind == "block" else circles_from_config(r, comm)
    t_pack = time.perf_counter() - t0
    t0 = time.perf_counter()
    include_pores = r.mesh_pores and r.kind != "block"
    if r.kind == "block":
        msh = block_domain(r, comm).mesh
    else:
        from .meshes import rve as rvemesh

        msh = rvemesh.generate(circles, r.width, r.height, r.mesh_size, r.min_gap, include_pores=include_pores,
                               comm=comm, msh_path=out / "rve.msh").mesh  # written from the same model
    t_mesh = time.perf_counter() - t0
    cells = comm.allreduce(msh.topology.index_map(2).size_local, op=MPI.SUM)
    nodes = msh.geometry.index_map().size_global
    info = {}
    if comm.rank == 0:
        if r.kind == "block":
            _block_msh(r, out / "rve.msh")
            _block_png(r, out / "rve.png")
            fr, counts, gap = {r.phase: 1.0}, {r.phase: 1}, None
        else:
            rvemesh.plot_rve(circles, r.width, r.height, out / "rve.png")
            fr = packing.area_fractions(circles, r.width, r.height)
            counts = {}
            for c in circles:
                counts[c.phase] = counts.get(c.phase, 0) + 1
            gap = packing.min_gap_achieved(circles, r.width, r.height)
        info = {
            "kind": r.kind,
            "width_m": r.width,
            "height_m": r.height,
            "seed": r.seed,
            "area_fractions": fr,
            "target_fractions": dict(r.fractions) if r.kind == "random" else None,
            "porosity": 1.0 - sum(fr.values()),
            "particles": counts,
            "particles_total": sum(counts.values()),
            "cells": cells,
            "nodes": nodes,
            "min_gap_m": gap,
            "min_gap_requested_m": r.min_gap,
            "pores_meshed": include_pores,
            "pack_time_s": t_pack,
            "mesh_time_s": t_mesh,
            "ranks": comm.size,
            "circles": [[c.phase, c.x, c.y, c.r] for c in circles],
        }
        write_json(out / "rve.json", info)
        print(f"{out}/rve.msh: {cells} cells, {nodes} nodes; fractions "
              + ", ".join(f"{k} {v:.4f}" for k, v in fr.items()) + f"; pack {t_pack:.2f} s, mesh {t_mesh:.2f} s")
    return comm.bcast(info, root=0)


def _block_msh(r, path):
    """A rectangle in Gmsh: physical group f"{phase}_0" (tag 1) and the four walls."""
    import gmsh

    from .domain import WALL_TAGS

    gmsh.initialize(interruptible=False)
    try:
        gmsh.option.setNumber("General.Terminal", 0)
        gmsh.model.add("block")
        s = gmsh.model.occ.addRectangle(0, 0, 0, r.width, r.height)
        gmsh.model.occ.synchronize()
        gmsh.model.addPhysicalGroup(2, [s], 1, name=f"{r.phase}_0")
        for _, c in gmsh.model.getBoundary([(2, s)], oriented=False):
            x, y, _ = gmsh.model.occ.getCenterOfMass(1, c)
            side = ("left" if abs(x) < 1e-9 * r.width else "right" if abs(x - r.width) < 1e-9 * r.width
                    else "bottom" if abs(y) < 1e-9 * r.height else "top")
            gmsh.model.addPhysicalGroup(1, [c], WALL_TAGS[side], name=side)
        gmsh.option.setNumber("Mesh.MeshSizeMax", r.mesh_size)
        gmsh.option.setNumber("Mesh.MeshSizeMin", r.mesh_size)
        gmsh.model.mesh.generate(2)
        gmsh.option.setNumber("Mesh.MshFileVersion", 4.1)
        gmsh.write(str(path))
    finally:
        gmsh.finalize()


def _block_png(r, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4 * r.height / r.width))
    ax.add_patch(plt.Rectangle((0, 0), r.width * 1e6, r.height * 1e6, color="C1", label=r.phase))
    ax.set_xlim(0, r.width * 1e6)
    ax.set_ylim(0, r.height * 1e6)
    ax.set_aspect("equal")
    ax.set_xlabel("x [µm]")
    ax.set_ylabel("y [µm]")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
