"""End to end: the run folder of DESIGN section 5 for a contact run (the README's baseline)."""

import json
from pathlib import Path

from solver.cli import main
from solver.output import CSVTable

ROOT = Path(__file__).resolve().parents[1]


def test_baseline_run_folder(tmp_path):
    out = tmp_path / "run"
    rc = main(["run", str(ROOT / "configs" / "baseline.toml"), "-o", str(out), "--set",
               'cycling.protocol=["Lithiate at 2C to 0.6", "Delithiate at 2C"]', "--set", "output.progress=false"])
    assert rc == 0
    for f in ("timeseries.csv", "cycles.csv", "summary.json", "config.toml", "fields/fields.xdmf",
              "plots/stress_vs_time.png", "plots/contact_vs_cycle.png", "plots/rve_vm_cycle001.png"):
        assert (out / f).exists(), f
    ts = CSVTable.read(out / "timeseries.csv")
    cols = set(ts[0])
    need = {"time_s", "cycle", "step", "theta_Se", "theta_MSe", "porosity", "newton_iterations"}
    for a in ("Se", "MSe"):
        need |= {f"contact_{a}_any", f"vm_mean_{a}_Pa", f"vm_max_{a}_Pa", f"creep_eq_mean_{a}"}
        need |= {f"contact_{a}_{b}" for b in ("Se", "MSe")}
    assert need <= cols, need - cols
    cy = CSVTable.read(out / "cycles.csv")
    assert [r["state"] for r in cy] == ["lithiated", "delithiated"]
    lit = cy[0]
    # swelling Se presses on its MSe neighbours: contact closes, porosity drops from the initial value
    assert lit["contact_Se_MSe"] > 0 and lit["contact_MSe_Se"] > 0
    assert lit["porosity"] < ts[0]["porosity"]
    s = json.loads((out / "summary.json").read_text())
    for k in ("status", "wall_time_s", "steps", "newton_iterations_total", "dofs", "ranks", "element_degree",
              "config_hash", "final", "provenance"):
        assert k in s
    assert s["status"] == "completed" and s["provenance"]["versions"]
