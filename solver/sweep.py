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
the same physics hash) are skipped on re-runs; failed cases are recorded and the others go on, and
run again on a re-run, except a case whose packing could not be made (summary.json reason
`PackingError`, same physics hash): the packer is deterministic for its seed, so it would fail
again (delete its folder to retry after changing the packer).

Case folders are named `NNN_name=label_...` from sanitised names and labels (ASCII letters, digits,
`. + - =`, at most 120 characters) and always lie directly in `-o`. The sweep file, its base
config and `-o` are resolved to absolute paths before any case starts. Each case's status is read
from its folder after it ends; a case whose run left no final status (killed, crashed) is
recorded there as failed with the exit code and the last line of its log. Under MPI any
exception of a case is that case's failure (recorded in its folder), and `sweep.csv` is written.
The sweep exits 0 when every case completed and 3 when any did not. With local processes it
prints, every `progress_every` seconds (60; `--progress-every`, 0: never) while cases run, one line
with the cases done and where each running case is (cycle, step, simulated time, from the last
row of its `timeseries.csv`).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import config as cfgmod
from .folders import make_folder
from .output import CSVTable, atomic_write, write_json
from .text import one_line, short, show_key

KEYS = {"base", "mode", "set", "metrics", "axis"}
EXIT_FAILED = 3  # cli.EXIT_SOLVER: one or more cases did not complete
#: longest case folder name (file systems allow 255 bytes)
NAME_MAX = 120
FINAL = ("completed", "failed")


def _label(v) -> str:
    """A folder-name-safe label: ASCII letters, digits and . + - only, no leading or trailing dot."""
    s = json.dumps(v) if not isinstance(v, str) else v
    s = re.sub(r"[^A-Za-z0-9.+-]+", "_", s).strip("_.")
    return s[:40] or "x"


def _need(cond, msg):
    if not cond:
        raise cfgmod.ConfigError(msg)


def load_sweep(path) -> dict:
    """The sweep file, checked, with every case's config validated (paths resolved: children may
    run in another working directory)."""
    path = Path(path).resolve()
    d = cfgmod.load_toml(path, "sweep file")
    bad = set(d) - KEYS
    _need(not bad, f"{show_key(sorted(bad)[0]) if bad else ''}: unknown key in sweep file")
    _need("base" in d, "base: required key missing in sweep file")
    _need(isinstance(d["base"], str) and d["base"], f"base: must be a file name (got {short(d['base'])})")
    mode = d.get("mode", "product")
    _need(mode in ("product", "zip"), f"mode: must be 'product' or 'zip' (got {short(mode)})")
    for k in ("set", "metrics"):
        v = d.get(k, [])
        _need(isinstance(v, list) and all(isinstance(x, str) for x in v), f"{k}: must be a list of strings")
    axes = d.get("axis", [])
    _need(isinstance(axes, list) and axes, "axis: a sweep needs at least one [[axis]]")
    for i, a in enumerate(axes):
        _need(isinstance(a, dict) and not set(a) - {"key", "values", "labels", "name"} and "key" in a
              and isinstance(a.get("values"), list) and a["values"],
              f"axis[{i}]: needs key and non-empty values (and optional labels, name)")
        _need(isinstance(a["key"], str) and a["key"] and all(a["key"].split(".")),
              f"axis[{i}].key: must be a config key path like 'materials.Se.creep.A'")
        _need(isinstance(a.get("name", ""), str), f"axis[{i}].name: must be a string")
        if "labels" in a:
            _need(isinstance(a["labels"], list) and len(a["labels"]) == len(a["values"]),
                  f"axis[{i}].labels: must have as many entries as values")
            _need(all(isinstance(x, (str, int, float)) for x in a["labels"]),
                  f"axis[{i}].labels: must be strings or numbers")
    if mode == "zip":
        _need(len({len(a["values"]) for a in axes}) == 1, "axis: mode 'zip' needs axes of equal length")
    base = (path.parent / d["base"]).resolve()
    base_data = cfgmod.apply_overrides(cfgmod.load_toml(base), d.get("set", []))
    idx = [range(len(a["values"])) for a in axes]
    combos = itertools.product(*idx) if mode == "product" else zip(*idx)
    cases = []
    for n, combo in enumerate(combos):
        _need(n < 100000, "axis: more than 100000 cases")
        params, names = {}, []
        data = base_data
        for a, i in zip(axes, combo):
            v = a["values"][i]
            lab = _label(a["labels"][i]) if "labels" in a else _label(v)
            name = _label(a.get("name") or a["key"].split(".")[-1])
            params[name] = lab if isinstance(v, (list, dict)) else v
            names.append(f"{name}={lab}")
            data = _set(data, a["key"], v)
        try:
            cfg = cfgmod.validate(data)  # every case validated before anything runs
        except cfgmod.ConfigError as e:
            raise cfgmod.ConfigError(f"case {n} ({', '.join(names)}): {e}") from None
        cases.append({"index": n, "name": (f"{n:03d}_" + "_".join(names))[:NAME_MAX], "params": params,
                      "config": cfg})
    return {"cases": cases, "metrics": d.get("metrics", []), "path": str(path)}


def _set(data: dict, key: str, value):
    import copy

    return cfgmod.set_path(copy.deepcopy(data), key, value, "axis key")


def case_folder(out: Path, case) -> Path:
    """The case's run folder, which must lie directly in `out` (names are sanitised; checked)."""
    out = Path(out).resolve()
    folder = (out / case["name"]).resolve()
    if folder.parent != out:
        raise cfgmod.ConfigError(f"case name {short(case['name'])}: would lie outside the sweep folder {out}")
    return folder


def _summary(folder: Path) -> dict:
    from .rundir import read_summary

    return read_summary(folder) or {}


def _done(folder: Path, cfg) -> bool:
    j = _summary(folder)
    return j.get("status") == "completed" and j.get("config_hash") == cfgmod.physics_hash(cfg)


def unpackable(folder: Path, cfg=None) -> bool:
    """The case failed because its packing cannot be made (PackingError; with `cfg`: under the same
    physics hash). Deterministic for its seed: running it again would fail the same way."""
    j = _summary(folder)
    return (j.get("status") == "failed" and str(j.get("reason", "")).startswith("PackingError")
            and (cfg is None or j.get("config_hash") == cfgmod.physics_hash(cfg)))


def _record_failure(folder: Path, cfg, reason: str) -> None:
    """A case whose run left no final status (killed, crashed before writing it): say so in its folder."""
    s = _summary(folder)
    if s.get("status") in FINAL:
        return
    s.update({"status": "failed", "reason": one_line(reason), "config_hash": cfgmod.physics_hash(cfg)})
    write_json(folder / "summary.json", s)


def _log_tail(log: Path) -> str:
    try:
        lines = [x for x in log.read_text(errors="replace").splitlines() if x.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def _exe() -> list[str]:
    return [sys.executable, "-m", "creep_cathode.cli"]


def case_progress(folder: Path, cycles: int) -> str:
    """Where a running case is: 'cycle C/N, step S, t = T h' (or 'starting')."""
    try:
        row = CSVTable.read(folder / "timeseries.csv")[-1]  # written whole (atomic_write): never half a row
        return f"cycle {int(float(row['cycle']))}/{cycles}, step {int(float(row['step']))}, " \
               f"t = {float(row['time_s']) / 3600:.1f} h"
    except (OSError, IndexError, KeyError, TypeError, ValueError):
        return "starting"


class _Progress:
    """The sweep's progress lines (local processes): every `every` seconds, while any case runs,
    one line: cases done of all, and each running case's position."""

    def __init__(self, total: int, every: float, out=None):
        self.total, self.every, self.out = total, every, out
        self.running: dict[str, tuple[Path, int, float]] = {}
        self.done = 0
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True) if every > 0 else None

    def __enter__(self):
        if self._thread is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def start(self, name: str, folder: Path, cycles: int) -> None:
        with self.lock:
            self.running[name] = (folder, cycles, time.monotonic())

    def end(self, name: str) -> None:
        with self.lock:
            self.running.pop(name, None)
            self.done += 1

    def line(self) -> str:
        with self.lock:
            running, done = dict(self.running), self.done
        now = time.monotonic()
        parts = [f"{name} {case_progress(folder, cycles)} ({(now - t0) / 60:.0f} min)"
                 for name, (folder, cycles, t0) in running.items()]
        return one_line(f"sweep {time.strftime('%H:%M')}: {done} of {self.total} done; running: "
                        + ("; ".join(parts) if parts else "none"), 400)

    def _loop(self):
        while not self._stop.wait(self.every):
            if self.running:
                print(self.line(), file=self.out or sys.stdout, flush=True)


def _run_local(case, out: Path, progress: _Progress | None = None) -> dict:
    """One case as a child process; its outcome read back from its folder."""
    folder = case_folder(out, case)
    if _done(folder, case["config"]):
        if progress is not None:
            progress.end(case["name"])
        return {"case": case["name"], "status": "completed", "skipped": True}
    if unpackable(folder, case["config"]):
        if progress is not None:
            progress.end(case["name"])
        return {"case": case["name"], "status": "failed", "skipped": True, "reason": _summary(folder).get("reason", "")}
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / "input.toml", cfgmod.to_toml(case["config"]))
    t0 = time.monotonic()
    if progress is not None:
        progress.start(case["name"], folder, case["config"].cycling.cycles)
    with open(folder / "log.txt", "w") as log:
        # a case not completed is run again from scratch: --overwrite clears a failed or killed run's files
        rc = subprocess.call(_exe() + ["run", str(folder / "input.toml"), "-o", str(folder), "--overwrite", "--set",
                                       "output.progress=false"], stdout=log, stderr=subprocess.STDOUT,
                             cwd=folder)
    if progress is not None:
        progress.end(case["name"])
    s = _summary(folder)
    if rc != 0 and s.get("status") not in FINAL:
        _record_failure(folder, case["config"], f"exit code {rc}: {_log_tail(folder / 'log.txt')}")
    elif rc == 0 and s.get("status") != "completed":
        _record_failure(folder, case["config"], f"exit code 0 but status {s.get('status', 'missing')!r}")
    s = _summary(folder)
    return {"case": case["name"], "rc": rc, "wall": time.monotonic() - t0, "status": s.get("status"),
            "reason": s.get("reason", "")}


def _run_case_mpi(case, folder: Path, comm) -> None:
    """One case on the ranks of `comm`. Any exception raised on all of them is the case's failure,
    recorded in its folder; the sweep goes on. (An exception on only some ranks of a multi-rank
    case leaves the others in a collective: that still ends the job, as MPI cannot recover.)"""
    from .simulation import execute

    cfg = case["config"].model_copy(deep=True)
    cfg.output.progress = False
    try:
        summary = execute(cfg, folder, comm, overwrite=True)  # a case not completed is run again from scratch
        reason = None if summary.get("status") == "completed" else summary.get("reason", "failed")
    except Exception as e:  # noqa: BLE001 - the case's failure, not the job's
        reason = f"{e.__class__.__name__}: {e}"
    if reason is not None and comm.rank == 0:
        try:
            _record_failure(folder, cfg, reason)
        except OSError:
            pass


def _run_mpi(sw, out: Path, k: int) -> None:
    import numpy as np

    from . import dolfinx_env  # noqa: F401
    from mpi4py import MPI

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
        folder = case_folder(out, case)
        if comm.bcast((_done(folder, case["config"]) or unpackable(folder, case["config"])) if comm.rank == 0
                      else None, root=0):
            continue
        _run_case_mpi(case, folder, comm)
    world.Barrier()
    win.Free()
    comm.Free()


def _plain(p: Path) -> str:
    """A path for the script: no control characters (a newline would end an #SBATCH comment and
    run the rest as a command)."""
    s = str(p)
    if not s.isprintable():
        raise cfgmod.ConfigError(f"--slurm: path {short(s)} holds control characters; choose another folder")
    return s


def write_slurm(sw, sweep_path, out: Path, throttle: int = 20, ranks: int = 1, time_limit="24:00:00") -> Path:
    """DIR/sweep.sbatch: a job array, one case per task. Every path is quoted (shlex.quote), so a
    folder name holding $(...), backquotes or spaces is a name, never a command."""
    n = len(sw["cases"])
    root = Path(__file__).resolve().parents[1]
    out = Path(out).resolve()
    exe = _plain(root / ".venv" / "bin" / "creep-cathode")
    sweep = _plain(Path(sweep_path).resolve())
    log = _plain(out).replace("%", "%%") + "/slurm-%A_%a.out"  # sbatch expands %A, %a; %% is a '%'
    q = shlex.quote
    script = f"""#!/bin/bash
#SBATCH --job-name=creep-cathode-sweep
#SBATCH --array=0-{n - 1}%{throttle}
#SBATCH --ntasks={ranks}
#SBATCH --time={time_limit}
#SBATCH --output={q(log)}
# One case per array task; afterwards: creep-cathode collect on this script's folder
srun -n {ranks} {q(exe)} sweep {q(sweep)} -o {q(str(out))} --case "$SLURM_ARRAY_TASK_ID"
"""
    p = out / "sweep.sbatch"
    atomic_write(p, script)
    return p


def _mpi_world():
    size = int(os.environ.get("PMI_SIZE", os.environ.get("OMPI_COMM_WORLD_SIZE", "1")))
    rank = int(os.environ.get("PMI_RANK", os.environ.get("OMPI_COMM_WORLD_RANK", "0")))
    return size, rank


def run_sweep(args) -> int:
    """Run (or, with --slurm, script) a sweep. Returns 0 when every case completed, EXIT_FAILED when
    one or more did not (each case's status is read from its folder; sweep.csv lists them)."""
    out = Path(args.out).resolve()  # before any child starts: children run in their case folders
    sw = load_sweep(args.sweep)
    mpi_size, rank = _mpi_world()
    case = getattr(args, "case", None)
    if case is not None and not 0 <= case < len(sw["cases"]):
        raise cfgmod.ConfigError(f"--case {case}: the sweep has cases 0 to {len(sw['cases']) - 1}")
    if getattr(args, "slurm", False):
        _plain(out)  # before anything is created
    world = None
    if mpi_size > 1:
        from mpi4py import MPI

        world = MPI.COMM_WORLD
    make_folder(out, world)
    if getattr(args, "slurm", False):
        p = write_slurm(sw, sw["path"], out)
        print(f"wrote {p}: sbatch {shlex.quote(str(p))}  (then: creep-cathode collect {shlex.quote(str(out))})")
        return 0
    if case is not None:
        sw = dict(sw, cases=[sw["cases"][case]])
    if mpi_size > 1 or case is not None:
        _run_mpi(sw, out, args.ranks_per_case)
    else:
        every = float(getattr(args, "progress_every", 60.0) or 0.0)
        with _Progress(len(sw["cases"]), every) as progress, ThreadPoolExecutor(max_workers=max(1, args.jobs)) as ex:
            for r in ex.map(lambda c: _run_local(c, out, progress), sw["cases"]):
                if r.get("skipped") and r["status"] == "completed":
                    print(f"{r['case']}: already completed, skipped")
                elif r.get("skipped"):
                    print(one_line(f"{r['case']}: its packing cannot be made (not retried): {r['reason']}"))
                else:
                    why = f": {r['reason']}" if r["status"] != "completed" and r.get("reason") else ""
                    print(one_line(f"{r['case']}: {r['status']} (exit {r['rc']}, {r['wall']:.1f} s){why}"))
    code = 0
    if rank == 0:
        names = {c["name"] for c in sw["cases"]}
        if case is None:
            collect(out, sw)
        states = {c["name"]: _summary(case_folder(out, c)).get("status", "not run") for c in sw["cases"]}
        bad = [n for n in names if states[n] != "completed"]
        code = EXIT_FAILED if bad else 0
        if getattr(args, "unpackable_replaced", False):
            # the caller (the ensemble) replaces a packing that cannot be made and reports it itself
            cases = {c["name"]: c for c in sw["cases"]}
            bad = [n for n in bad if not unpackable(case_folder(out, cases[n]), cases[n]["config"])]
        if bad:
            print(one_line(f"error: {len(bad)} of {len(names)} cases did not complete (see "
                           f"{out / 'sweep.csv' if case is None else out}): {', '.join(sorted(bad)[:5])}"
                           + (" ..." if len(bad) > 5 else "")), file=sys.stderr, flush=True)
    if world is not None:
        code = world.bcast(code, root=0)
    return code


def collect(out, sw=None) -> Path:
    """Aggregate every case folder of a sweep into DIR/sweep.csv and plots."""
    from .metrics import columns as registry, in_state, phases_of
    from .rundir import status_line

    out = Path(out)
    rows = []
    metrics = (sw or {}).get("metrics") or []
    params = {c["name"]: c["params"] for c in (sw or {}).get("cases", [])}
    for folder in sorted(p for p in out.iterdir() if p.is_dir() and (p / "input.toml").exists()
                         or (p.is_dir() and (p / "summary.json").exists())):
        s = _summary(folder)
        status, reason = status_line(folder)  # "killed" for a run whose process is gone
        row = {"case": folder.name, "status": status, "reason": reason, "wall_time_s": s.get("wall_time_s", "")}
        if folder.name in params:
            row.update({k: v if isinstance(v, (int, float, str)) else short(v)
                        for k, v in params[folder.name].items()})
        else:  # without the sweep file: the parameters from the folder name
            for part in folder.name.split("_", 1)[-1].split("_"):
                if "=" in part:
                    k, v = part.split("=", 1)
                    row[k] = v
        lit = in_state(CSVTable.read(folder / "cycles.csv"), "lithiated")
        cols = metrics or [c.name for c in registry(phases_of(lit[0]) if lit else [])
                           if c.kind == "contact" or c.name.startswith("vm_mean_")]
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
    if not mets:
        return
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
