#!/bin/bash
# scripts/cycles3.sh NAME [--set k=v ...]: 3 full cycles of se_mse (0.1 C) with the Newton profile, no fields/plots.
name=$1; shift
export OMP_NUM_THREADS=1 CREEP_CATHODE_PROFILE=1
rm -rf runs/c3_$name
.venv/bin/creep-cathode run configs/se_mse.toml -o runs/c3_$name --set cycling.cycles=3 \
  --set output.fields=none --set output.plots=false "$@" > runs/c3_$name.log 2>&1
tail -1 runs/c3_$name.log
