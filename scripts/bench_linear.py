"""Linear-solver crossover: one linear-elastic solve (assemble + solve) on the RVE mesh of a config
at several mesh sizes, MUMPS LU against GMRES + GAMG (rigid-body near-null space), in one process,
so that the ratio is measured under the same load. A table on stdout (Markdown) and JSON in -o.

    .venv/bin/python scripts/bench_linear.py configs/se_mse.toml --mesh-scales 1,0.5,0.25,0.125 -o runs/bench_linear
    .venv/bin/mpiexec -n 2 .venv/bin/python scripts/bench_linear.py ...   (the same on 2 ranks)
"""

import argparse
import json
import sys
from pathlib import Path

from creep_cathode import dolfinx_env  # noqa: F401
from mpi4py import MPI

from creep_cathode import config as cfgmod, domain
from creep_cathode.bench import floor_solve
from creep_cathode.units import Scaling


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--mesh-scales", default="1,0.5,0.25,0.125")
    ap.add_argument("--solvers", default="lu,gmres_gamg")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    a = ap.parse_args(argv)
    comm = MPI.COMM_WORLD
    rows = []
    h = cfgmod.load_config(a.config, a.overrides).rve.mesh_size
    for s in (float(x) for x in a.mesh_scales.split(",")):
        cfg = cfgmod.load_config(a.config, a.overrides + [f"rve.mesh_size={h * s!r}"])
        dom = domain.build(cfg.rve, comm, Scaling.for_config(cfg))
        row = {"mesh_scale": s, "ranks": comm.size}
        for k in a.solvers.split(","):
            r = floor_solve(cfg, comm, linear_solver=k, domain_=dom)
            row["dofs"] = r["dofs"]
            row[f"{k}_s"], row[f"{k}_its"] = r["floor_s"], r["iterations"]
        rows.append(row)
        if comm.rank == 0:
            print(json.dumps(row), flush=True)
    if comm.rank == 0:
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench_linear.json").write_text(json.dumps(rows, indent=1))
        ks = a.solvers.split(",")
        print(f"\n| DoFs | ranks | " + " | ".join(f"{k} [s] (its)" for k in ks) + f" | {ks[0]} / {ks[-1]} |")
        print("|---" * (len(ks) + 3) + "|")
        for r in rows:
            print(f"| {r['dofs']} | {r['ranks']} | " + " | ".join(f"{r[k + '_s']:.3f} ({r[k + '_its']})" for k in ks)
                  + f" | {r[ks[0] + '_s'] / r[ks[-1] + '_s']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
