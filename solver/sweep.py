"""Parameter sweeps: `creep-cathode sweep SWEEP.toml -o DIR` and `creep-cathode collect DIR`.

Sweep file:

    base = "se_mse.toml"                 # config, relative to the sweep file
    mode = "product"                     # "product" (all combinations) | "zip" (element-wise)
    set = ["cycling.cycles=2"]           # fixed overrides for every case
    metrics = ["contact_Se_Se", "vm_mean_Se_Pa"]   # per-cycle columns copied into sweep.csv

    [[axis]]
    key = "materials.Se.creep.A"         # any config key path
    values = [1e-6, 1e-5]
    labels = ["A1e-6", "A1e-5"]          # optional, for readable folder names

Backends: `--jobs N` local processes (each case a separate `creep-cathode run`, so a crash stays
in its case); under `mpiexec -n M`, COMM_WORLD is split into groups of `--ranks-per-case k` that
take cases dynamically (an MPI counter on rank 0); `--slurm` writes `DIR/sweep.sbatch`, a job
array with one case per task (`--case I`). Completed cases (summary.json status `completed` with
the same physics hash) are skipped on re-runs; failed cases are recorded and the others go on.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import config as cfgmod
from .output import CSVTable, atomic_write, write_json

KEYS = {"base", "mode", "set", "metrics", "axis"}


def _label(v) -> str:
    s = json.dumps(v) if not isinstance(v, str) else v
    s = re.sub(r"[^A-Za-z0-9.+-]+", "_", s).strip("_")
    return s[:40] or "x"


def load_sweep(path) -> dict:
    path = Path(path)
    d = cfgmod.load_toml(path)
    bad = set(d) - KEYS
    if bad:
        raise cfgmod.ConfigError(f"{sorted(bad)[0]}: unknown key in sweep file")
    if "base" not in d:
        raise cfgmod.ConfigError("base: required key missing in sweep file")
    mode = d.get("mode", "product")
    if mode not in ("product", "zip"):
        raise cfgmod.ConfigError(f"mode: must be 'product' or 'zip' (got {mode!r})")
    axes = d.get("axis", [])
    if not axes:
        raise cfgmod.ConfigError("axis: a sweep needs at least one [[axis]]")
    for i, a in enumerate(axes):
        if set(a) - {"key", "values", "labels", "name"} or "key" not in a or not a.get("values"):
            raise cfgmod.ConfigError(f"axis[{i}]: needs key and non-empty values (and optional labels, name)")
        if "labels" in a and len(a["labels"]) != len(a["values"]):
            raise cfgmod.ConfigError(f"axis[{i}].labels: must have as many entries as values")
    if mode == "zip" and len({len(a["values"]) for a in axes}) > 1:
        raise cfgmod.ConfigError("axis: mode 'zip' needs axes of equal length")
    base = (path.parent / d["base"]).resolve()
    base_data = cfgmod.apply_overrides(cfgmod.load_toml(base), d.get("set", []))
    cases = []
    idx = [range(len(a["values"])) for a in axes]
    combos = itertools.product(*idx) if mode == "product" else zip(*idx)
    for combo in combos:
        params, names = {}, []
        data = base_data
        for a, i in zip(axes, combo):
            v = a["values"][i]
            lab = a["labels"][i] if "labels" in a else _label(v)
            name = a.get("name", a["key"].split(".")[-1])
            params[name] = lab if isinstance(v, (list, dict)) else v
            names.append(f"{name}={lab}")
            data = _set(data, a["key"], v)
        cfg = cfgmod.validate(data)  # every case validated before anything runs
        cases.append({"index": len(cases), "name": f"{len(cases):03d}_" + "_".join(names), "params": params,
                      "config": cfg})
    return {"cases": cases, "metrics": d.get("metrics", []), "path": str(path)}


def _set(data: dict, key: str, value):
    import copy

    data = copy.deepcopy(data)
    d = data
    parts = key.split(".")
    for p in parts[:-1]:
        d = d.setdefault(p, {})
    d[parts[-1]] = value
    return data


def _done(folder: Path, cfg) -> bool:
    s = folder / "summary.json"
    if not s.exists():
        return False
    try:
        j = json.loads(s.read_text())
    except (OSError, ValueError):
        return False
    return j.get("status") == "completed" and j.get("config_hash") == cfgmod.physics_hash(cfg)


def _exe() -> list[str]:
    return [sys.executable, "-m", "creep_cathode.cli"]


def _run_local(case, out: Path) -> dict:
    folder = out / case["name"]
    if _done(folder, case["config"]):
        return {"case": case["name"], "skipped": True}
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / "input.toml", cfgmod.to_toml(case["config"]))
    t0 = time.monotonic()
    with open(folder / "log.txt", "w") as log:
        rc = subprocess.call(_exe() + ["run", str(folder / "input.toml"), "-o", str(folder), "--set",
                                       "output.progress=false"], stdout=log, stderr=subprocess.STDOUT,
                             cwd=Path(__file__).resolve().parents[1])
    return {"case": case["name"], "rc": rc, "wall": time.monotonic() - t0}


def _run_mpi(sw, out: Path, k: int) -> None:
    import numpy as np

    from . import dolfinx_env  # noqa: F401
    from mpi4py import MPI

    from .simulation import Simulation, prepare_outdir
    from .stepping import SolverFailure

    world = MPI.COMM_WORLD
    if k < 1 or world.size % k:
        raise cfgmod.ConfigError(f"--ranks-per-case {k} must divide the number of ranks ({world.size})")
    color = world.rank // k
    comm = world.Split(color, world.rank)
    # a shared counter on world rank 0 hands out cases dynamically
    win = MPI.Win.Allocate(8 if world.rank == 0 else 0, 8, comm=world)
    if world.rank == 0:
        win.Lock(0)
        np.frombuffer(win.tomemory(), dtype=np.int64)[0] = 0
        win.Unlock(0)
    world.Barrier()
    one = np.array([1], dtype=np.int64)
    got = np.zeros(1, dtype=np.int64)
    cases = sw["cases"]
    while True:
        if comm.rank == 0:
            win.Lock(0)
            win.Fetch_and_op(one, got, 0, 0, MPI.SUM)
            win.Unlock(0)
        i = comm.bcast(int(got[0]), root=0)
        if i >= len(cases):
            break
        case = cases[i]
        folder = out / case["name"]
        if _done(folder, case["config"]):
            continue
        cfg = case["config"].model_copy(deep=True)
        cfg.output.progress = False
        try:
            prepare_outdir(folder, cfg, comm)
            Simulation(cfg, folder, comm).initialise().run()
        except (SolverFailure, cfgmod.ConfigError, OSError, RuntimeError, ValueError) as e:
            if comm.rank == 0:
                write_json(folder / "summary.json", {"status": "failed", "reason": f"{e.__class__.__name__}: {e}",
                                                     "config_hash": cfgmod.physics_hash(cfg)})
    world.Barrier()
    win.Free()
    comm.Free()


def write_slurm(sw, sweep_path, out: Path, throttle: int = 20, ranks: int = 1, time_limit="24:00:00") -> Path:
    n = len(sw["cases"])
    root = Path(__file__).resolve().parents[1]
    exe = root / ".venv" / "bin" / "creep-cathode"
    script = f"""#!/bin/bash
#SBATCH --job-name=creep-cathode-sweep
#SBATCH --array=0-{n - 1}%{throttle}
#SBATCH --ntasks={ranks}
#SBATCH --time={time_limit}
#SBATCH --output={out}/slurm-%A_%a.out
# One case per array task; afterwards: {exe} collect {out}
srun -n {ranks} {exe} sweep {Path(sweep_path).resolve()} -o {out} --case $SLURM_ARRAY_TASK_ID
"""
    p = out / "sweep.sbatch"
    atomic_write(p, script)
    return p


def run_sweep(args) -> int:
    sw = load_sweep(args.sweep)
    out = Path(args.out)
    mpi_size = int(os.environ.get("PMI_SIZE", os.environ.get("OMPI_COMM_WORLD_SIZE", "1")))
    rank = int(os.environ.get("PMI_RANK", os.environ.get("OMPI_COMM_WORLD_RANK", "0")))
    if rank == 0:
        if out.exists() and not out.is_dir():
            raise OSError(f"output folder {out} exists and is not a folder")
        out.mkdir(parents=True, exist_ok=True)
    if getattr(args, "slurm", False):
        p = write_slurm(sw, args.sweep, out)
        print(f"wrote {p}: sbatch {p}  (then: creep-cathode collect {out})")
        return 0
    case = getattr(args, "case", None)
    if case is not None:
        sw = dict(sw, cases=[sw["cases"][case]])
    if mpi_size > 1 or case is not None:
        _run_mpi(sw, out, args.ranks_per_case)
    else:
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as ex:
            for r in ex.map(lambda c: _run_local(c, out), sw["cases"]):
                if r.get("skipped"):
                    print(f"{r['case']}: already completed, skipped")
                else:
                    print(f"{r['case']}: exit {r['rc']} ({r['wall']:.1f} s)")
    if rank == 0 and case is None:
        collect(out, sw)
    return 0


def collect(out, sw=None) -> Path:
    """Aggregate every case folder of a sweep into DIR/sweep.csv and plots."""
    out = Path(out)
    rows = []
    metrics = (sw or {}).get("metrics") or []
    for folder in sorted(p for p in out.iterdir() if p.is_dir() and (p / "input.toml").exists()
                         or (p.is_dir() and (p / "summary.json").exists())):
        s = {}
        if (folder / "summary.json").exists():
            try:
                s = json.loads((folder / "summary.json").read_text())
            except ValueError:
                s = {"status": "corrupt"}
        row = {"case": folder.name, "status": s.get("status", "not run"), "reason": s.get("reason", ""),
               "wall_time_s": s.get("wall_time_s", "")}
        for part in folder.name.split("_", 1)[-1].split("_"):
            if "=" in part:
                k, v = part.split("=", 1)
                row[k] = v
        cyc = CSVTable.read(folder / "cycles.csv")
        lit = [r for r in cyc if r.get("state") == "lithiated"]
        cols = metrics or [k for k in (lit[0] if lit else {}) if k.startswith(("contact_", "vm_mean_"))]
        for c in cols:
            row[f"{c}_first"] = lit[0].get(c, "") if lit else ""
            row[f"{c}_last"] = lit[-1].get(c, "") if lit else ""
        row["cycles"] = lit[-1]["cycle"] if lit else 0
        rows.append(row)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    t = CSVTable(out / "sweep.csv", [{k: r.get(k, "") for k in keys} for r in rows])
    t.flush()
    _plot(out, rows)
    return out / "sweep.csv"


def _plot(out: Path, rows):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        return
    done = [r for r in rows if r["status"] == "completed"]
    if not done:
        return
    params = [k for k in done[0] if k not in ("case", "status", "reason", "wall_time_s", "cycles")
              and not k.endswith(("_first", "_last"))]
    mets = [k for k in done[0] if k.endswith("_last")]
    (out / "plots").mkdir(exist_ok=True)
    for p in params:
        fig, ax = plt.subplots(figsize=(6, 4))
        xs = [r[p] for r in done]
        for m in mets:
            ys = [r[m] for r in done]
            if all(isinstance(y, (int, float)) for y in ys):
                ax.plot(range(len(xs)), ys, "o-", label=m[:-5])
        ax.set_xticks(range(len(xs)), [str(x) for x in xs], rotation=30)
        ax.set_xlabel(p)
        ax.set_yscale("symlog", linthresh=1e-3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "plots" / f"metrics_vs_{_label(p)}.png", dpi=110)
        plt.close(fig)
