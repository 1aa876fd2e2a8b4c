#!/bin/bash
# scripts/lith1.sh NAME [--set k=v ...]: first lithiation of se_mse at 0.1 C with the Newton profile
# (runs/lith1_NAME/profile.jsonl), no fields, no plots; one core.
name=$1; shift
export OMP_NUM_THREADS=1 CREEP_CATHODE_PROFILE=1
rm -rf runs/lith1_$name
.venv/bin/creep-cathode run configs/se_mse.toml -o runs/lith1_$name --set 'cycling.protocol=["Lithiate at 0.1C"]' \
  --set cycling.cycles=1 --set output.fields=none --set output.plots=false "$@" > runs/lith1_$name.log 2>&1
tail -1 runs/lith1_$name.log
