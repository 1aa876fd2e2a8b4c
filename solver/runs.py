"""What the study scripts (calibrate.py, convergence.py) share: run `creep-cathode run` once per
key and reuse a run that finished with the same key.

A finished run leaves a small record in its folder (`{"key": ..., "wall_s": ...}`); the key is
the config path and the list of `--set` overrides. Runs that failed leave none and are redone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

EXE = [sys.executable, "-m", "creep_cathode.cli"]  # the CLI of this installation


def finished(folder: Path, record: str, key: dict) -> dict | None:
    """The record of a run in `folder` that finished with this key, or None."""
    p = Path(folder) / record
    if p.exists():
        done = json.loads(p.read_text())
        if done.get("key") == key:
            return done
    return None


def run_once(config: str, folder: Path, overrides: list[str], record: str) -> tuple[int, float, str]:
    """`creep-cathode run config -o folder --set ...`, unless it finished before with the same key.

    Returns (exit code, wall seconds, last stderr line or "(reused)").
    """
    key = {"config": config, "overrides": list(overrides)}
    done = finished(folder, record, key)
    if done:
        return 0, float(done["wall_s"]), "(reused)"
    cmd = EXE + ["run", config, "-o", str(folder)]
    for s in overrides:
        cmd += ["--set", s]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    wall = time.perf_counter() - t0
    if proc.returncode == 0:
        (Path(folder) / record).write_text(json.dumps({"key": key, "wall_s": round(wall, 1)}))
    tail = (proc.stderr or "").strip().splitlines()[-1:] or [""]
    return proc.returncode, wall, tail[0]
