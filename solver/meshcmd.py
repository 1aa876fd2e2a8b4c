"""`creep-cathode mesh CONFIG -o DIR`: DIR/rve.msh, DIR/rve.json, DIR/rve.png."""

from __future__ import annotations

import time
from pathlib import Path

from . import dolfinx_env  # noqa: F401
from mpi4py import MPI

from .output import write_json


def write_mesh(cfg, out, comm=MPI.COMM_WORLD) -> dict:
    r = cfg.rve
    out = Path(out)
    err = None
    if comm.rank == 0:
        if out.exists() and not out.is_dir():
            err = f"output folder {out} exists and is not a folder"
        else:
            try:
                out.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                err = f"cannot create output folder {out}: {e.strerror or e}"
    err = comm.bcast(err, root=0)
    if err:
        raise OSError(err)
    from meshes import packing, rve as rvemesh

    from .domain import circles_from_config

    t0 = time.perf_counter()
    if r.kind == "block":
        circles = []
    else:
        circles = circles_from_config(r, comm)
    t_pack = time.perf_counter() - t0
    t0 = time.perf_counter()
    include_pores = r.mesh_pores or r.kind == "block"
    m = rvemesh.generate(circles, r.width, r.height, r.mesh_size, r.min_gap, include_pores=include_pores,
                         comm=comm, block_phase=r.phase if r.kind == "block" else None)
    t_mesh = time.perf_counter() - t0
    msh = m.mesh
    cells = comm.allreduce(msh.topology.index_map(2).size_local, op=MPI.SUM)
    nodes = msh.geometry.index_map().size_global
    info = {}
    if comm.rank == 0:
        rvemesh.write_msh(circles, r.width, r.height, r.mesh_size, r.min_gap, out / "rve.msh",
                          include_pores=include_pores, block_phase=r.phase if r.kind == "block" else None)
        if r.kind == "block":
            fr = {r.phase: 1.0}
            counts = {r.phase: 1}
            gap = None
        else:
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
        rvemesh.plot_rve(circles, r.width, r.height, out / "rve.png")
        print(f"{out}/rve.msh: {cells} cells, {nodes} nodes; fractions "
              + ", ".join(f"{k} {v:.4f}" for k, v in fr.items()) + f"; pack {t_pack:.2f} s, mesh {t_mesh:.2f} s")
    return comm.bcast(info, root=0)
