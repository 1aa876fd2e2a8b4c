"""Calibrate unknown material parameters against the Fig. 4 numbers of Xiong et al. (2024).

The paper's Table S6 is not available, so the Se/Li2Se creep law is fitted. Norton's law
d(eps_cr)/dt = A (sigma_e / sigma_ref)^n depends on A and sigma_ref only through
B = A / sigma_ref^n: for a given n one of them is redundant, so the default calibrates A with
sigma_ref held at its config value (100 MPa) and n from the paper's Fig. 5b (Li-like, 6.5).

Search: a log-spaced grid over each parameter (a product grid when several are given), then
`--refine` rounds that shrink the range around the best point by `--shrink` (in log space) and
grid again. Every evaluation is a `creep-cathode run` of CONFIG with the `--set` overrides;
failed runs score +inf. A finished evaluation (OUT/evals/*/eval.json: same config, same
overrides) is reused, so a grid can be widened or refined without re-running its old points.

Objective: root-mean-square relative error over the paper's numbers that the run produces
(solver.plots.PAPER: contact ratios and mean von Mises per phase at the lithiated state of
cycles 1 and 20, whichever cycles the run reaches):

    J = sqrt( mean_k ((ours_k - paper_k) / paper_k)^2 )

Replicates: `--replicate rve.seed=1,2,3` runs every point once per value (other packings, or
`rve.width=...` for other boxes) and scores the mean of each number over the replicates, so the
fit is not tuned to one packing. A replicate value equal to the config's own is not passed as an
override (its run is the plain point's, reused).

Writes OUT/calibration.csv (one row per evaluation: parameters, metrics, J, status, wall time)
and OUT/calibration.json (targets, best parameters, J, the per-target errors and the command),
and keeps each evaluation's run folder under OUT/evals/.

Example (what configs/se_mse.toml records: full 20-cycle runs, about 15 minutes per point with
two at a time on 2 cores; docs/calibration/README.md):

    .venv/bin/python scripts/calibrate.py configs/se_mse.toml -o runs/calibrate20 \\
        --param materials.Se.creep.A=3.75e-8:6e-7 --points 5 --refine 0 --jobs 2
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import threading
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
from creep_cathode.runs import finished, run_once
from creep_cathode.output import CSVTable, provenance, write_json
from creep_cathode.metrics import in_state
from creep_cathode.reference import PAPER


def targets_for(row_keys: set[str], cycles: int) -> dict[tuple[str, int], float]:
    """The paper numbers a run with these cycles.csv columns and this many cycles can match."""
    return {(k, c): v for k, per_cycle in PAPER.items() if k in row_keys
            for c, v in per_cycle.items() if c <= cycles}


def objective(rows: list[dict], cycles: int) -> tuple[float, dict]:
    """J (RMS relative error) and the per-target (ours, paper, relative error)."""
    lith = {int(r["cycle"]): r for r in in_state(rows, "lithiated")}
    if not lith:
        return math.inf, {}
    tg = targets_for(set(next(iter(lith.values()))), cycles)
    detail, errs = {}, []
    for (k, c), paper in sorted(tg.items()):
        if c not in lith:
            return math.inf, {}
        ours = float(lith[c][k])
        rel = (ours - paper) / paper
        detail[f"{k}@{c}"] = {"ours": ours, "paper": paper, "rel_error": rel}
        errs.append(rel * rel)
    return (math.sqrt(sum(errs) / len(errs)) if errs else math.inf), detail


def mean_rows(runs: list[list[dict]]) -> list[dict]:
    """Lithiated rows averaged over replicate runs, cycle by cycle (cycles that every run reached)."""
    lith = [{int(r["cycle"]): r for r in in_state(rows, "lithiated")} for rows in runs]
    if not lith or not all(lith):
        return []
    out = []
    for c in sorted(set.intersection(*(set(d) for d in lith))):
        keys = set.intersection(*(set(d[c]) for d in lith)) - {"cycle", "state"}
        row = {"cycle": c, "state": "lithiated"}
        for k in keys:
            try:
                row[k] = sum(float(d[c][k]) for d in lith) / len(lith)
            except (TypeError, ValueError):
                pass
        out.append(row)
    return out


def parse_replicate(spec: str | None, cfg: dict) -> list[list[str]]:
    """KEY=V1,V2,... -> one override list per value ([] where the value is the config's own)."""
    if not spec:
        return [[]]
    key, _, vals = spec.partition("=")
    values = [v.strip() for v in vals.split(",") if v.strip()]
    if not key or not values:
        raise SystemExit(f"calibrate: --replicate {spec!r}: expected KEY=V1,V2,...")
    own = cfg
    for part in key.split("."):
        own = own.get(part) if isinstance(own, dict) else None
    reps = []
    for v in values:
        try:
            same = own is not None and tomllib.loads(f"x = {v}")["x"] == own
        except tomllib.TOMLDecodeError:
            same = v == own
        reps.append([] if same else [f"{key}={v}"])
    return reps


def parse_param(spec: str) -> tuple[str, float, float, int | None]:
    """KEY=LO:HI or KEY=LO:HI:N (N grid points for this parameter in the first round)."""
    key, _, rng = spec.partition("=")
    parts = rng.split(":")
    try:
        lo, hi = float(parts[0]), float(parts[1])
        n = int(parts[2]) if len(parts) == 3 else None
        if len(parts) > 3:
            raise ValueError
    except (ValueError, IndexError):
        raise SystemExit(f"calibrate: --param {spec!r}: expected KEY=LO:HI or KEY=LO:HI:N") from None
    if not (key and 0 < lo < hi and (n is None or n >= 1)):
        raise SystemExit(f"calibrate: --param {spec!r}: expected 0 < LO < HI and N >= 1")
    return key, lo, hi, n


def log_grid(lo: float, hi: float, n: int) -> list[float]:
    if n == 1:
        return [math.sqrt(lo * hi)]
    return [lo * (hi / lo) ** (i / (n - 1)) for i in range(n)]


_FOLDER_LOCK = threading.Lock()
RECORD = "eval.json"  # what a finished evaluation leaves in its folder (creep_cathode.runs)


def _eval_folder(out: Path, key: dict) -> Path:
    """The folder of a finished evaluation with this key (config, overrides), or a fresh one."""
    with _FOLDER_LOCK:
        evals = out / "evals"
        evals.mkdir(parents=True, exist_ok=True)
        for rec in sorted(evals.glob(f"eval_*/{RECORD}")):
            if finished(rec.parent, RECORD, key):
                return rec.parent
        k = 0
        while (evals / f"eval_{k:03d}").exists():
            k += 1
        folder = evals / f"eval_{k:03d}"
        folder.mkdir()
        return folder


def run_point(config: str, out: Path, values: dict, sets: list[str], rep: list[str]) -> tuple:
    """One run of a grid point (one replicate): (exit code, wall s, folder, last line)."""
    overrides = list(sets) + list(rep) + [f"{k}={v:.6g}" for k, v in values.items()]
    folder = _eval_folder(out, {"config": config, "overrides": overrides})
    rc, wall, tail = run_once(config, folder, overrides, RECORD)  # reused when it finished before
    return rc, wall, folder, tail


def score(idx: int, values: dict, runs: list[tuple], cycles: int) -> dict:
    """The row of a grid point from its replicate runs: mean numbers, J, status."""
    bad = [rc for rc, *_ in runs if rc != 0]
    row = {"eval": idx, **values, "status": f"failed ({bad[0]})" if bad else "completed",
           "wall_s": round(sum(w for _, w, _, _ in runs), 1), "folder": ";".join(str(f) for _, _, f, _ in runs)}
    J, detail = math.inf, {}
    if not bad:
        J, detail = objective(mean_rows([CSVTable.read(f / "cycles.csv") for _, _, f, _ in runs]), cycles)
    for name, d in detail.items():
        row[name] = d["ours"]
    row["J"] = J
    row["_detail"] = detail
    print(f"[{idx:3d}] {values}  J = {J:.4g}  {row['status']}  {row['wall_s']:.0f} s  "
          f"{runs[-1][3][:100]}", flush=True)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--param", action="append", required=True, metavar="KEY=LO:HI[:N]",
                    help="a parameter to fit, searched log-uniformly in [LO, HI] (N points: overrides --points)")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="fixed override for every evaluation (as for creep-cathode run)")
    ap.add_argument("--replicate", default=None, metavar="KEY=V1,V2,...",
                    help="run each point once per value (e.g. rve.seed=1,2,3) and score the mean numbers")
    ap.add_argument("--points", type=int, default=5, help="grid points per parameter and round")
    ap.add_argument("--refine", type=int, default=1, help="refinement rounds around the best point")
    ap.add_argument("--refine-points", type=int, default=3, help="grid points per parameter in refinement rounds")
    ap.add_argument("--shrink", type=float, default=0.25, help="range kept per refinement (log space)")
    ap.add_argument("--jobs", type=int, default=1, help="evaluations run at once")
    a = ap.parse_args(argv)

    cfg = tomllib.loads(Path(a.config).read_text())
    cycles = int(cfg.get("cycling", {}).get("cycles", 1))
    for s in a.sets:
        if s.startswith("cycling.cycles="):
            cycles = int(s.split("=", 1)[1])
    params = [parse_param(p) for p in a.param]
    reps = parse_replicate(a.replicate, cfg)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    ranges = {k: (lo, hi) for k, lo, hi, _ in params}
    npts = {k: n or a.points for k, _, _, n in params}
    rows: list[dict] = []
    best = None
    t_start = time.perf_counter()
    for rnd in range(a.refine + 1):
        grids = [log_grid(*ranges[k], npts[k] if rnd == 0 else a.refine_points) for k in ranges]
        points = [{k: float(f"{v:.6g}") for k, v in zip(ranges, combo)}  # the values the runs are given
                  for combo in itertools.product(*grids)]
        seen = {tuple(r[k] for k in ranges) for r in rows}
        points = [p for p in points if tuple(p.values()) not in seen]
        start = len(rows)
        print(f"round {rnd}: {len(points)} evaluations, ranges {ranges}", flush=True)
        with ThreadPoolExecutor(max_workers=max(1, a.jobs)) as pool:  # every (point, replicate) at once
            futs = [[pool.submit(run_point, a.config, out, p, a.sets, rep) for rep in reps] for p in points]
            rows += [score(start + i, p, [f.result() for f in fs], cycles) for i, (p, fs) in enumerate(zip(points, futs))]
        best = min(rows, key=lambda r: r["J"])
        cols = list(dict.fromkeys(k for r in rows for k in r if k != "_detail"))
        CSVTable(out / "calibration.csv", [{k: r.get(k, "") for k in cols} for r in rows]).flush()
        if not math.isfinite(best["J"]):
            break
        for k in ranges:  # shrink each range around the best value, in log space
            span = math.log(ranges[k][1] / ranges[k][0]) * a.shrink / 2
            b = best[k]
            ranges[k] = (b * math.exp(-span), b * math.exp(span))
    result = {
        "config": a.config,
        "fixed_overrides": a.sets,
        "replicates": [r[0] if r else "(config)" for r in reps],
        "cycles": cycles,
        "objective": "J = sqrt(mean_k ((ours_k - paper_k)/paper_k)^2) over the Fig. 4 numbers (solver.plots.PAPER) "
                     "at the lithiated state of the cycles run",
        "best": {k: best[k] for k in ranges} if best else None,
        "J": best["J"] if best else math.inf,
        "targets": best["_detail"] if best else {},
        "evaluations": len(rows),
        "wall_time_s": round(time.perf_counter() - t_start, 1),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "provenance": provenance(1),
    }
    write_json(out / "calibration.json", result)
    print(f"best {result['best']}  J = {result['J']:.4g}  -> {out / 'calibration.json'}")
    return 0 if best and math.isfinite(best["J"]) else 3


if __name__ == "__main__":
    sys.exit(main())
