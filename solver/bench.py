"""Benchmark harness: `creep-cathode bench [CONFIG] -o DIR`.

Times, in one run and as ratios to a floor measured in the same process, so that a noisy or
shared machine still gives comparable numbers:

- the **floor**: one linear-elastic solve on the run's own mesh and element degree (assemble +
  MUMPS LU factorisation + solve; small strain, each phase's Young's modulus, the run's rollers
  and the proximal term that holds floating particles), median of 3;
- the **simulator** on the config (default: the first lithiation of configs/se_mse.toml): seconds
  per accepted step and per Newton iteration as multiples of the floor, the time split
  (constitutive update, finite-element assembly, contact, linear solve, metrics, output,
  checkpoint, other), Newton iterations per step (histogram), rejected steps;
- **DoF scaling**: floor and simulator at three mesh sizes (a short protocol: the first part of
  the lithiation);
- **rank scaling**: the same short case on 1 and 2 ranks (mpiexec).

Writes DIR/bench.json, DIR/bench.png and DIR/bench.md (the README's Performance table); each case
runs in its own process (`python -m creep_cathode.bench case ...`) with its run folder in DIR.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

SHORT = "Lithiate at 0.1C to 0.15"  # the scaling cases: the first 15 % of the lithiation


def floor_solve(cfg, comm, repeats: int = 3, linear_solver: str = "lu", domain_=None) -> dict:
    """Median seconds of one linear-elastic solve (assemble + LU factorisation + solve, or with
    `linear_solver` one of the iterative solvers of solver.linear_solver) on the mesh and element
    degree of `cfg`, and its DoFs (and Krylov iterations). `domain_`: a domain already built."""
    import numpy as np

    from . import dolfinx_env  # noqa: F401
    import dolfinx.fem.petsc as fp
    import ufl
    from dolfinx import fem
    from petsc4py import PETSc

    from . import domain
    from .boundary import BoundaryConditions
    from .contact.params import ContactParameters
    from .newton import make_ksp
    from .units import Scaling

    sc = Scaling.for_config(cfg)
    dom = domain_ if domain_ is not None else domain.build(cfg.rve, comm, sc)
    deg = cfg.solver.element_degree
    V = fem.functionspace(dom.mesh, ("Lagrange", deg, (2,)))
    mats = cfg.used_materials()
    Q0 = fem.functionspace(dom.mesh, ("DG", 0))
    E = fem.Function(Q0)
    nu = fem.Function(Q0)
    for tag, phase in dom.bodies:
        cells = dom.cell_tags.find(tag)
        E.x.array[cells] = mats[phase].youngs_modulus / sc.stress
        nu.x.array[cells] = mats[phase].poisson_ratio
    mu, lam = E / (2 * (1 + nu)), E * nu / ((1 + nu) * (1 - 2 * nu))
    u, v = ufl.TrialFunction(V), ufl.TestFunction(V)
    eps = ufl.sym
    k = ContactParameters.from_config(cfg, [c.r for c in dom.circles], sc).proximal if len(dom.bodies) > 1 else 0.0
    dx = ufl.dx(metadata={"quadrature_degree": max(1, 2 * (deg - 1))})
    a = fem.form((2 * mu * ufl.inner(eps(ufl.grad(u)), eps(ufl.grad(v))) + lam * ufl.div(u) * ufl.div(v)
                  + k * ufl.inner(u, v)) * dx)
    L = fem.form(ufl.inner(fem.Constant(dom.mesh, PETSc.ScalarType((0.0, -1e-3))), v) * dx)
    bcs = BoundaryConditions(V, dom.facet_tags, cfg.boundary, sc, deg).dirichlet
    times, its = [], []
    nns = None
    if linear_solver != "lu":  # the in-plane rigid-body modes as near-null space
        from .mechanics import rigid_body_modes

        nns = rigid_body_modes(V)
    for _ in range(repeats):
        comm.Barrier()
        t0 = time.perf_counter()
        A = fp.assemble_matrix(a, bcs=bcs)
        A.assemble()
        if nns is not None:
            A.setNearNullSpace(nns)
        b = fp.assemble_vector(L)
        fp.apply_lifting(b, [a], [bcs])
        b.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
        fp.set_bc(b, bcs)
        ksp = make_ksp(comm, linear_solver, cfg.solver.linear_rtol)
        ksp.setOperators(A)
        x = A.createVecRight()
        ksp.solve(b, x)
        comm.Barrier()
        times.append(time.perf_counter() - t0)
        its.append(ksp.getIterationNumber())
        if ksp.getConvergedReason() < 0:
            raise RuntimeError(f"{linear_solver}: the linear solve did not converge ({ksp.getConvergedReason()})")
        for o in (ksp, A, b, x):
            o.destroy()
    return {"floor_s": float(np.median(times)), "dofs": V.dofmap.index_map.size_global * 2,
            "iterations": int(np.median(its))}


def run_case(config: str, overrides: list[str], outdir: Path, comm) -> dict:
    """Floor, then the simulation of `config` with `overrides` into outdir; a dict of numbers."""
    import numpy as np

    from .config import load_config
    from .output import CSVTable
    from .simulation import execute

    cfg = load_config(config, list(overrides) + ["output.fields=none", "output.plots=false", "output.progress=false"])
    fl = floor_solve(cfg, comm)
    t0 = time.perf_counter()
    s = execute(cfg, outdir, comm, overwrite=True)
    wall = time.perf_counter() - t0
    its = [int(r["newton_iterations"]) for r in CSVTable.read(outdir / "timeseries.csv")[1:]] if comm.rank == 0 else []
    steps = max(1, s["steps"])
    out = {"config": config, "overrides": list(overrides), "ranks": comm.size, "status": s["status"],
           "dofs": s["dofs"], "steps": s["steps"], "newton_iterations": s["newton_iterations_total"],
           "rejected": s["rejected_steps"], "wall_s": wall, "timings_s": s["timings_s"], **fl}
    run_s = s["timings_s"]["total"] - s["timings_s"].get("setup", 0.0)  # the time loop
    out["per_step_floors"] = run_s / steps / fl["floor_s"]
    out["per_iteration_floors"] = run_s / max(1, s["newton_iterations_total"]) / fl["floor_s"]
    out["iterations_per_step"] = {"mean": s["newton_iterations_total"] / steps,
                                  "max": int(max(its, default=0)), "hist": np.bincount(its).tolist() if its else []}
    return out


def _case_main(argv) -> int:
    from mpi4py import MPI

    ap = argparse.ArgumentParser(prog="python -m creep_cathode.bench case")
    ap.add_argument("config")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--json", required=True)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    a = ap.parse_args(argv)
    r = run_case(a.config, a.overrides, Path(a.out), MPI.COMM_WORLD)
    if MPI.COMM_WORLD.rank == 0:
        Path(a.json).write_text(json.dumps(r, indent=1))
    return 0


def _spawn(config, overrides, out: Path, name: str, ranks: int = 1) -> dict:
    root = Path(sys.executable).parent
    cmd = [sys.executable, "-m", "creep_cathode.bench", "case", str(config), "-o", str(out / name),
           "--json", str(out / f"{name}.json")]
    for s in overrides:
        cmd += ["--set", s]
    if ranks > 1:
        mpiexec = root / "mpiexec"
        cmd = [str(mpiexec) if mpiexec.exists() else "mpiexec", "-n", str(ranks)] + cmd
    print(f"bench: {name} ({ranks} rank{'s' if ranks > 1 else ''}) ...", file=sys.stderr, flush=True)
    r = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True)
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["?"]
        return {"name": name, "status": f"error (exit {r.returncode}): {tail[0]}"}
    d = json.loads((out / f"{name}.json").read_text())
    d["name"] = name
    return d


def run_bench(config, out, *, main_protocol, short_protocol=SHORT, mesh_scales=(1.0, 0.5, 0.25), ranks=(1, 2),
              extra=()) -> dict:
    """All cases (subprocesses), then bench.json, bench.md and bench.png in `out`."""
    from .config import load_config

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = load_config(config, list(extra))
    h = cfg.rve.mesh_size
    proto = lambda p: f"cycling.protocol={json.dumps([p])}"  # noqa: E731
    base = list(extra) + ["cycling.cycles=1"]
    res = {"config": str(config), "extra": list(extra), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "host": os.uname().nodename, "cpus": os.cpu_count()}
    res["main"] = _spawn(config, base + [proto(main_protocol)], out, "main")
    res["dof_scaling"] = [_spawn(config, base + [proto(short_protocol), f"rve.mesh_size={h * s!r}"], out,
                                 f"mesh{s:g}") for s in mesh_scales]
    res["rank_scaling"] = [_spawn(config, base + [proto(short_protocol)], out, f"ranks{k}", ranks=k) for k in ranks]
    (out / "bench.json").write_text(json.dumps(res, indent=1))
    (out / "bench.md").write_text(markdown(res))
    plot(res, out / "bench.png")
    return res


def markdown(res: dict) -> str:
    """The Performance table (README)."""
    m = res["main"]
    lines = []
    if "floor_s" in m:
        t = m["timings_s"]
        ips = m["iterations_per_step"]
        lines += [f"Main case: `{res['config']}` {' '.join('--set ' + s for s in m['overrides'])}", "",
                  "| quantity | value |", "|---|---|",
                  f"| DoFs | {m['dofs']} |", f"| floor (one linear-elastic LU solve) | {m['floor_s']:.3f} s |",
                  f"| accepted steps, Newton iterations | {m['steps']}, {m['newton_iterations']} |",
                  f"| Newton iterations per step: mean, max | {ips['mean']:.1f}, {ips['max']} |",
                  f"| rejected steps | {', '.join(f'{k} {v}' for k, v in m['rejected'].items())} |",
                  f"| time per step | {m['per_step_floors']:.1f} floors "
                  f"({(t['total'] - t.get('setup', 0)) / max(1, m['steps']):.2f} s) |",
                  f"| time per Newton iteration | {m['per_iteration_floors']:.2f} floors |",
                  f"| run wall time | {t['total']:.0f} s |", "",
                  "| time split | s | share |", "|---|---|---|"]
        for k in ("setup", "constitutive", "assembly", "contact", "linear_solve", "metrics", "output", "checkpoint",
                  "other"):
            if k in t:
                lines.append(f"| {k} | {t[k]:.1f} | {100 * t[k] / t['total']:.0f} % |")
    else:
        lines.append(f"Main case: {m.get('status')}")
    lines += ["", "| case | ranks | DoFs | floor [s] | steps | iterations/step | per step [floors] | time loop [s] |",
              "|---|---|---|---|---|---|---|---|"]
    for r in res["dof_scaling"] + res["rank_scaling"]:
        if "floor_s" in r:
            lines.append(f"| {r['name']} | {r['ranks']} | {r['dofs']} | {r['floor_s']:.3f} | {r['steps']} | "
                         f"{r['iterations_per_step']['mean']:.1f} | {r['per_step_floors']:.1f} | "
                         f"{r['timings_s']['total'] - r['timings_s'].get('setup', 0):.1f} |")
        else:
            lines.append(f"| {r['name']} | | | | | | | {r.get('status')} |")
    rk = [r for r in res["rank_scaling"] if "floor_s" in r]
    if len(rk) >= 2:
        loop = [r["timings_s"]["total"] - r["timings_s"].get("setup", 0) for r in rk]
        lines += ["", f"Speed-up on {rk[-1]['ranks']} ranks: simulator time loop {loop[0] / loop[-1]:.2f}x, floor "
                      f"{rk[0]['floor_s'] / rk[-1]['floor_s']:.2f}x."]
    return "\n".join(lines) + "\n"


def plot(res: dict, path: Path) -> None:
    """bench.png: iteration histogram, time split, DoF scaling, rank scaling."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 2, figsize=(10, 7))
    m = res["main"]
    if "floor_s" in m:
        h = m["iterations_per_step"]["hist"]
        ax[0, 0].bar(range(len(h)), h)
        ax[0, 0].set_xlabel("Newton iterations per accepted step")
        ax[0, 0].set_ylabel("steps")
        t = m["timings_s"]
        keys = [k for k in ("setup", "constitutive", "assembly", "contact", "linear_solve", "metrics", "output",
                            "checkpoint", "other") if k in t]
        ax[0, 1].barh(keys, [t[k] for k in keys])
        ax[0, 1].set_xlabel("seconds")
        ax[0, 1].set_title(f"time split, main case ({t['total']:.0f} s)")
    d = [r for r in res["dof_scaling"] if "floor_s" in r]
    if d:
        x = [r["dofs"] for r in d]
        ax[1, 0].loglog(x, [(r["timings_s"]["total"] - r["timings_s"].get("setup", 0)) / max(1, r["steps"]) for r in d],
                        "o-", label="simulator, per step")
        ax[1, 0].loglog(x, [r["floor_s"] for r in d], "s--", label="floor (one LU solve)")
        ax[1, 0].loglog(x, [d[0]["floor_s"] * xi / x[0] for xi in x], ":", color="0.5", label="O(N)")
        ax[1, 0].set_xlabel("DoFs")
        ax[1, 0].set_ylabel("seconds")
        ax[1, 0].legend(fontsize=8)
    rk = [r for r in res["rank_scaling"] if "floor_s" in r]
    if rk:
        k = [r["ranks"] for r in rk]
        loop = [r["timings_s"]["total"] - r["timings_s"].get("setup", 0) for r in rk]
        ax[1, 1].plot(k, [loop[0] / x for x in loop], "o-", label="simulator (time loop)")
        ax[1, 1].plot(k, [rk[0]["floor_s"] / r["floor_s"] for r in rk], "s--", label="floor")
        ax[1, 1].plot(k, k, ":", color="0.5", label="ideal")
        ax[1, 1].set_xlabel("ranks")
        ax[1, 1].set_ylabel("speed-up")
        ax[1, 1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":  # pragma: no cover
    if len(sys.argv) > 1 and sys.argv[1] == "case":
        sys.exit(_case_main(sys.argv[2:]))
    sys.exit("usage: python -m creep_cathode.bench case CONFIG -o DIR --json FILE [--set k=v ...]")
