#!/bin/bash
# Trial of ipctk 1.6's SmoothPotential (geometric contact potential) in place of the IPC log barrier,
# issue 13 (docs/newton_profile.md section 6). Branch i13-smooth-trial only; not for main.
#   bash scripts/smooth_trial.sh NAME [r] [--set key=value ...]
# lithiates se_mse (seed 1) at 0.1 C to theta = 0.5 and prints steps, iterations and metrics.
# r = 0 runs the unchanged log barrier.
name=$1; r=${2:-0}; shift 2
env=""; [ "$r" != 0 ] && env="CC_SMOOTH=r=$r"
env OMP_NUM_THREADS=1 $env .venv/bin/creep-cathode run configs/se_mse.toml -o runs/$name \
  --set cycling.cycles=1 --set 'cycling.protocol=["Lithiate at 0.1C to 0.5"]' --set output.fields=none \
  --set output.plots=false "$@" > runs/$name.log 2>&1
.venv/bin/python - "$name" <<'PY'
import csv, json, sys
n = sys.argv[1]
rows = list(csv.DictReader(open(f"runs/{n}/timeseries.csv")))
s = json.load(open(f"runs/{n}/summary.json"))
it = [int(float(r["newton_iterations"])) for r in rows]
r = rows[-1]
print(n, "steps", s["steps"], "iterations (all solves)", s["newton_iterations_total"], "per-step main max", max(it),
      "rejected", s["rejected_steps"], "wall", round(s["wall_time_s"]),
      {k: round(float(r[k]) * (1e-6 if k.endswith("Pa") else 100), 2) for k in
       ("contact_Se_Se", "contact_Se_MSe", "contact_MSe_Se", "contact_Se_any", "vm_mean_Se_Pa", "vm_mean_MSe_Pa", "porosity")})
PY
