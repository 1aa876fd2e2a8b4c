"""Benchmark: where the time goes in a creeping `block` run (~100k DoFs by default).

    .venv/bin/python scripts/bench_block.py [--mesh-size 0.5e-6] [--steps 10]

Prints DoFs, steps, Newton iterations and the time shares of the constitutive update
(solver/creep.py), assembly and the rest (linear solves, line search, metrics).
"""

import argparse
import tempfile
import time
from pathlib import Path

from creep_cathode.config import validate
from creep_cathode.simulation import Simulation, prepare_outdir


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mesh-size", type=float, default=0.5e-6)
    ap.add_argument("--steps", type=int, default=10)
    a = ap.parse_args()
    cfg = validate({
        "rve": {"kind": "block", "phase": "Se", "width": 40e-6, "height": 40e-6, "mesh_size": a.mesh_size},
        "boundary": {"left": "roller", "bottom": "roller", "right": "free", "top": {"pressure": 10e6}},
        "materials": {"Se": {"active": True, "youngs_modulus": 10e9, "poisson_ratio": 0.32,
                             "volume_ratio_lithiated": 1.98, "creep": {"A": 1e-5, "n": 6.5, "sigma_ref": 100e6}}},
        "cycling": {"protocol": [f"Lithiate at 1C to {0.02 * a.steps}"], "cycles": 1},
        "solver": {"dt_initial": 72.0, "dt_max": 72.0, "max_theta_increment": 0.02, "max_creep_increment": 1.0},
        "output": {"fields": "none", "plots": False, "progress": False},
    })
    with tempfile.TemporaryDirectory() as tmp:
        prepare_outdir(tmp, cfg)
        t0 = time.perf_counter()
        sim = Simulation(cfg, tmp).initialise()
        t_init = time.perf_counter() - t0
        t0 = time.perf_counter()
        s = sim.run()
        t_run = time.perf_counter() - t0
    tm = s["timings_s"]
    print(f"dofs {s['dofs']}, cells {s['cells']}, steps {s['steps']}, newton {s['newton_iterations_total']}, "
          f"status {s['status']}")
    print(f"set-up {t_init:.2f} s, run {t_run:.2f} s ({t_run / max(1, s['newton_iterations_total']):.3f} s per "
          "Newton iteration)")
    for k, v in tm.items():
        print(f"  {k:13s} {v:7.2f} s  {100 * v / t_run:5.1f} %")
    rest = t_run - sum(tm.values())
    print(f"  {'rest':13s} {rest:7.2f} s  {100 * rest / t_run:5.1f} %  (linear solves, line search, metrics)")


if __name__ == "__main__":
    main()
