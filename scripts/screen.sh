#!/bin/bash
# scripts/screen.sh NAME [--set k=v ...]: replay the 5 screening steps of the first lithiation of se_mse
# (snapshots in runs/snap_base) with a variant; one line per step + total -> runs/screen/NAME.txt
name=$1; shift
mkdir -p runs/screen
OMP_NUM_THREADS=1 .venv/bin/python scripts/replay_step.py configs/se_mse.toml runs/snap_base 11 28 47 57 73 "$@" 2>&1 | grep "^step\|^total\|Error\|error" > runs/screen/$name.txt
echo "$name: $(tail -1 runs/screen/$name.txt)  $(grep -o '[0-9.]* s$' runs/screen/$name.txt | awk '{s+=$1} END {print s " s"}')"
