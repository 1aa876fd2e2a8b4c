"""Convergence of the Fig. 4 metrics in mesh size, contact tolerance, barrier width, time step and RVE.

Runs the first lithiation of CONFIG (the cycle-1 numbers of Fig. 4) once per case below and
prints a markdown table of the metrics at full lithiation, with the change against the
reference case (absolute points for ratios, relative % for stresses). docs/convergence.md holds
the table this wrote.

    .venv/bin/python scripts/convergence.py configs/se_mse.toml -o runs/convergence --jobs 2

Each case is `creep-cathode run CONFIG --set ...`; the folders stay in OUT/<case>.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from creep_cathode.metrics import in_state
from creep_cathode.runs import run_once

COMMON = ['cycling.protocol=["Lithiate at 0.1C"]', "cycling.cycles=1", "output.fields=none", "output.plots=false"]
# (name, overrides): the reference is the default config; dhat is pinned for the mesh series so
# that only the discretisation changes, and the tolerance series keeps the mesh and the barrier.
CASES = [
    ("reference (h = 0.6 um, dhat = 75 nm, tol = 37.5 nm)", []),
    ("mesh h = 0.42 um", ["rve.mesh_size=0.42e-6", "contact.dhat=7.5e-8"]),
    ("mesh h = 0.3 um", ["rve.mesh_size=0.3e-6", "contact.dhat=7.5e-8"]),
    ("tol = 26 nm", ["contact.tolerance=26e-9"]),
    ("tol = 19 nm", ["contact.tolerance=19e-9"]),
    ("dt: max_theta_increment 0.025, dt_max 1800 s", ["solver.max_theta_increment=0.025", "solver.dt_max=1800"]),
    ("no proximal-point relaxation", ["contact.proximal_relaxations=0"]),
    ("proximal 1e-3 (10x weaker)", ["contact.proximal=1e-3"]),
    ("dhat = 50 nm, tol = 25 nm", ["contact.dhat=5e-8"]),
    ("creep quantile 1 (bound every point)", ["solver.creep_increment_quantile=1.0"]),
    ("packing seed 2", ["rve.seed=2"]),
    ("packing seed 3", ["rve.seed=3"]),
    ("RVE 24 um (seed 1)", ["rve.width=24e-6", "rve.height=24e-6"]),
    ("dhat = 37.5 nm, tol = 19 nm", ["contact.dhat=3.75e-8"]),
    ("mesh h = 0.21 um", ["rve.mesh_size=0.21e-6", "contact.dhat=7.5e-8"]),
    ("dhat = 25 nm, tol = 12.5 nm", ["contact.dhat=2.5e-8"]),
]
METRICS = [("contact_Se_Se", "Se-Se %", 100), ("contact_Se_MSe", "Se-MSe %", 100), ("contact_MSe_Se", "MSe-Se %", 100),
           ("contact_Se_any", "Se-any %", 100), ("vm_mean_Se_Pa", "vM Se MPa", 1e-6), ("vm_mean_MSe_Pa", "vM MSe MPa", 1e-6),
           ("porosity", "porosity %", 100)]


def run_case(config: str, out: Path, i: int, name: str, sets: list[str], extra: list[str]) -> dict:
    folder = out / f"case{i:02d}"
    rc, wall, _ = run_once(config, folder, COMMON + extra + sets, "case.json")  # reused when finished before
    row = {"case": name, "status": "completed" if rc == 0 else f"failed ({rc})", "wall_s": wall}
    if rc == 0:
        rows = list(csv.DictReader(open(folder / "cycles.csv")))
        lith = in_state(rows, "lithiated")[-1]
        row.update({k: float(lith[k]) for k, _, _ in METRICS if k in lith})
        s = json.loads((folder / "summary.json").read_text())
        row.update(cells=s["cells"], dofs=s["dofs"], steps=s["steps"], newton=s["newton_iterations_total"])
    print(f"{name}: {row['status']} {row['wall_s']:.0f} s", flush=True)
    return row


def table(rows: list[dict]) -> str:
    ref = rows[0]
    head = ["case"] + [lab for _, lab, _ in METRICS] + ["cells", "steps", "Newton", "wall s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["case"]]
        for k, _, scale in METRICS:
            if k not in r:
                cells.append(r["status"] if k == METRICS[0][0] else "")
                continue
            v = r[k] * scale
            if r is ref or k not in ref:
                cells.append(f"{v:.1f}")
            elif scale == 100:  # ratios: absolute points
                cells.append(f"{v:.1f} ({v - ref[k] * scale:+.1f})")
            else:  # stresses: relative change
                cells.append(f"{v:.1f} ({100 * (r[k] / ref[k] - 1):+.1f} %)")
        cells += [str(r.get("cells", "")), str(r.get("steps", "")), str(r.get("newton", "")), f"{r['wall_s']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--set", dest="sets", action="append", default=[], help="override for every case")
    ap.add_argument("--only", default=None, help="comma-separated case indices (default: all)")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    idx = [int(i) for i in a.only.split(",")] if a.only else list(range(len(CASES)))
    rows = []
    with ThreadPoolExecutor(max_workers=a.jobs) as pool:
        futures = [pool.submit(run_case, a.config, out, i, CASES[i][0], CASES[i][1], a.sets) for i in idx]
        for f in futures:  # the table is rewritten as cases finish, in case order
            rows.append(f.result())
            (out / "convergence.md").write_text(table(rows) + "\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
