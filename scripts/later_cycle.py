"""Run one more cycle of a finished run, under other settings: the cost and accuracy of a *later*
cycle, measured from one state (a benchmark, not a way to make results).

    .venv/bin/python scripts/later_cycle.py runs/ens16_c20/000_seed=1 -o runs/c21/bdf2 [--set KEY=VALUE ...]

Copies the finished run folder RUN to OUT (which must not exist), points its checkpoint at the
config RUN's input.toml + `cycling.cycles` one more + `output.fields=none` + the given --set values
(the checkpoint's physics hash is rewritten to that config's; the internal variables stay the ones
RUN wrote, so e.g. a BDF2 cycle starts with one backward-Euler step), marks the copy as not
finished and resumes it with `creep-cathode run ... --resume`. OUT then holds RUN's rows plus the
new cycle's; compare the new cycle's rows of two such folders (its `summary.json` `timings_s` and
`wall_time_this_run_s` are the new cycle's own). Serial runs only.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from creep_cathode.config import load_config, physics_hash


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    a = ap.parse_args(argv)
    summary = json.loads((a.run / "summary.json").read_text())
    if summary.get("status") != "completed":
        ap.error(f"{a.run} is not a completed run")
    if a.out.exists():
        ap.error(f"{a.out} exists")
    cycles = int(summary["cycles_completed"]) + 1
    overrides = [f"cycling.cycles={cycles}", "output.fields='none'", *a.set]
    cfg = load_config(a.run / "input.toml", overrides)
    shutil.copytree(a.run, a.out)
    ck = a.out / "checkpoint.npz"
    with np.load(ck, allow_pickle=False) as f:
        z = dict(f)
    meta = json.loads(bytes(z["meta"]).decode())
    meta["config_hash"], meta["finished"] = physics_hash(cfg), False
    z["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(ck, **z)
    s = json.loads((a.out / "summary.json").read_text())
    s.update(status="failed", reason=f"reopened by scripts/later_cycle.py for cycle {cycles}")
    (a.out / "summary.json").write_text(json.dumps(s, indent=1))
    exe = Path(sys.executable).with_name("creep-cathode")
    cmd = [str(exe), "run", str(a.out / "input.toml"), "-o", str(a.out), "--resume"]
    for o in overrides:
        cmd += ["--set", o]
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
