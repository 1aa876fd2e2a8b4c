"""Output folders and the run-folder contract (DESIGN §5; README "Running").

A run folder holds one run:

- a new run refuses a folder that holds another run's files (`RUN_FILES`) unless told to
  (`overwrite`: those files are removed first; nothing else in the folder is touched), so two runs'
  files never mix;
- `--resume` checks the config, the checkpoint (readable, same physics, written by the run whose
  `timeseries.csv` is in the folder) before it writes anything; the one change of physics it takes
  is more cycles (`cycling.cycles` above the folder's): the run, completed or not, goes on from its
  last checkpoint to the new count;
- `summary.json` says "running" from the start (with the process id, host and a run id), and every
  way a run ends leaves a final status with its reason: "completed", or "failed" (bad input, solver
  failure, internal error, SIGTERM/SIGINT, another rank's failure). A killed process cannot write:
  the next run, resume or collect sees "running" with a process that is gone and says so.

Decisions are taken on rank 0 and broadcast, so all ranks fail together.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import time
import uuid
from pathlib import Path

from mpi4py import MPI

from . import config as cfgmod
from .output import atomic_write, write_json

#: the files and folders a run writes (a folder holding any of them holds a run)
RUN_FILES = ("summary.json", "config.toml", "timeseries.csv", "cycles.csv", "checkpoint.npz", "pores.csv",
             "fields", "plots")


class FolderInUse(cfgmod.ConfigError):
    """The output folder holds another run's files (exit 2: the user chooses --overwrite or --resume)."""


class Terminated(BaseException):
    """SIGTERM received (a BaseException, like KeyboardInterrupt: no `except Exception` swallows it)."""


def read_summary(folder) -> dict | None:
    """summary.json of a folder (None if absent; {"status": "corrupt"} if unreadable)."""
    p = Path(folder) / "summary.json"
    if not p.exists():
        return None
    try:
        d = json.loads(p.read_text())
        return d if isinstance(d, dict) else {"status": "corrupt"}
    except (OSError, ValueError, RecursionError):
        return {"status": "corrupt"}


def run_state(summary: dict | None) -> str:
    """What a folder's summary says: "none", "completed", "failed", "running" (its process is alive
    or on another host), "killed" (running, but its process on this host is gone), "corrupt"."""
    if summary is None:
        return "none"
    st = summary.get("status")
    if st != "running":
        return st if st in ("completed", "failed") else "corrupt"
    pid, host = summary.get("pid"), summary.get("host")
    if isinstance(pid, int) and host == socket.gethostname():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return "killed"
        except PermissionError:
            pass
    return "running"


def status_line(folder) -> tuple[str, str]:
    """(status, reason) of a run folder for reports: "killed" with the reason when a run that says
    "running" has lost its process."""
    s = read_summary(folder)
    st = run_state(s)
    if st == "killed":
        return "killed", f"status 'running' but its process {s.get('pid')} on {s.get('host')} is gone (killed?)"
    return st if st != "none" else "not run", (s or {}).get("reason", "")


def _present(p: Path) -> list[str]:
    return [n for n in RUN_FILES if (p / n).exists()]


def _clear(p: Path) -> None:
    for n in RUN_FILES:
        q = p / n
        if q.is_dir() and not q.is_symlink():
            shutil.rmtree(q)
        elif q.exists() or q.is_symlink():
            q.unlink()
    _remove_temp_files(p)


def _remove_temp_files(p: Path) -> None:
    """Temporary files of atomic writes that a killed process left behind (.name.XXXX)."""
    for n in RUN_FILES:
        for q in p.glob(f".{n}.*"):
            with contextlib.suppress(OSError):
                q.unlink()


def csv_digest(path, rows: int) -> str:
    """sha256 of the header and the first `rows` rows of a CSV file ("" if it is missing)."""
    p = Path(path)
    if not p.exists():
        return ""
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for i, line in enumerate(f):
            if i > rows:
                break
            h.update(line)
    return h.hexdigest()


def _check_resume(p: Path, cfg) -> tuple[str | None, str]:
    """(error or None, "completed" when there is nothing left to run)."""
    from . import checkpoint

    if not p.is_dir():
        return f"--resume: {p} is not a run folder", ""
    s = read_summary(p)
    st = run_state(s)
    if st == "running":
        return f"--resume: the run in {p} is still running (process {s.get('pid')} on {s.get('host')})", ""
    try:
        meta = checkpoint.validate(p)
    except checkpoint.CheckpointError as e:
        return str(e), ""
    if meta is None:
        return f"--resume: no checkpoint in {p}", ""
    h = cfgmod.physics_hash(cfg)
    extended = False  # the same run asked for more cycles: it goes on from its last checkpoint
    if meta.get("config_hash") != h:
        before = _cycles_of(p / "config.toml")
        extended = (before is not None and before < cfg.cycling.cycles
                    and meta.get("config_hash") == cfgmod.physics_hash(cfg, cycles=before))
        if not extended:
            more = (f"; only cycling.cycles may grow (from {before})" if before is not None
                    and before != cfg.cycling.cycles else "")
            return (f"--resume refused: the physics part of the config changed since the checkpoint "
                    f"(hash {meta.get('config_hash')} != {h}){more}"), ""
    if s is not None and s.get("run_id") and meta.get("run_id") != s.get("run_id"):
        return f"--resume refused: the checkpoint in {p} belongs to another run than its summary.json", ""
    if csv_digest(p / "timeseries.csv", int(meta.get("ts_rows", 0))) != meta.get("ts_digest"):
        return (f"--resume refused: {p}/timeseries.csv is not the one the checkpoint was written with "
                f"(replaced or truncated)"), ""
    if st == "completed" and meta.get("finished") and not extended:
        return None, "completed"
    return None, ""


def _cycles_of(config_toml: Path) -> int | None:
    """cycling.cycles of the config a run folder was started with (None if unreadable)."""
    try:
        return int(cfgmod.load_toml(config_toml, "run folder config")["cycling"]["cycles"])
    except (cfgmod.ConfigError, KeyError, TypeError, ValueError):
        return None


def start_run(outdir, cfg, comm=MPI.COMM_WORLD, *, resume=False, overwrite=False) -> dict | None:
    """Check the folder for this run (nothing written yet), then start it: config.toml and a
    summary.json saying "running" with pid, host and run id. Returns {"run_id", "resumes_from"}
    (the earlier summary when resuming), or None when `resume` finds the run completed already.
    Raises FolderInUse / ConfigError (exit 2) or OSError (exit 4) on every rank."""
    err, kind, out = None, "config", None
    if comm.rank == 0:
        p = Path(outdir)
        try:
            if p.exists() and not p.is_dir():
                err, kind = f"output folder {outdir} exists and is not a folder", "os"
            elif resume:
                err, done = _check_resume(p, cfg)
                if err is None and done == "completed":
                    out = "completed"
            else:
                present = _present(p) if p.is_dir() else []
                if present and not overwrite:
                    st = run_state(read_summary(p))
                    what = {"killed": "a killed run (its process is gone): --resume continues it",
                            "running": "a run that is still running", "completed": "a completed run",
                            "failed": "a failed run"}.get(st, "another run's files")
                    err = (f"output folder {outdir} holds {what} ({', '.join(present)}); use --overwrite to "
                           f"clear it, or choose another folder")
                    if st == "running":
                        err = f"output folder {outdir} holds a run that is still running; choose another folder"
            if err is None and out is None:
                prev = read_summary(p) if resume else None
                if overwrite and p.is_dir():
                    _clear(p)
                p.mkdir(parents=True, exist_ok=True)
                _remove_temp_files(p)
                run_id = prev.get("run_id") if prev and prev.get("run_id") else uuid.uuid4().hex[:12]
                atomic_write(p / "config.toml", cfgmod.to_toml(cfg))
                write_json(p / "summary.json", {"status": "running", "config_hash": cfgmod.physics_hash(cfg),
                                                "run_id": run_id, "pid": os.getpid(), "host": socket.gethostname(),
                                                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                                "resumed": bool(resume)})
                out = {"run_id": run_id, "resumes_from": prev}
        except OSError as e:
            err, kind = f"cannot write output folder {outdir}: {e.strerror or e}", "os"
    err, kind, out = comm.bcast((err, kind, out), root=0)
    if err:
        raise OSError(err) if kind == "os" else FolderInUse(err)
    return None if out == "completed" else out


def prepare_outdir(outdir, cfg, comm=MPI.COMM_WORLD, resume=False, overwrite=False) -> dict | None:
    """Alias of start_run (the name the scripts and tests know)."""
    return start_run(outdir, cfg, comm, resume=resume, overwrite=overwrite)


def mark_failed(outdir, reason: str) -> None:
    """Final status "failed" with `reason` in a run folder whose summary still says "running"
    (this process's run). Any rank may call it (a failing rank before it aborts the others)."""
    p = Path(outdir)
    s = read_summary(p)
    if s is None or s.get("status") != "running" or s.get("pid") not in (None, os.getpid(), _root_pid()):
        return
    s.update(status="failed", reason=reason[:2000], ended=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    with contextlib.suppress(OSError):
        write_json(p / "summary.json", s)


_ROOT_PID = [None]


def _root_pid():
    return _ROOT_PID[0]


@contextlib.contextmanager
def final_status(outdir, comm=MPI.COMM_WORLD):
    """Within the block, any way out but a normal return leaves summary.json "failed" with the
    reason (the exception, SIGINT or SIGTERM); the exception then propagates. Yields `arm()`, which
    installs the SIGTERM handler again (PETSc's initialisation installs its own)."""
    _ROOT_PID[0] = comm.bcast(os.getpid() if comm.rank == 0 else None, root=0)

    def on_term(signum, frame):
        raise Terminated(f"terminated by signal {signal.Signals(signum).name}")

    def arm():
        with contextlib.suppress(ValueError):  # not the main thread: no handler
            return signal.signal(signal.SIGTERM, on_term)

    old = arm()
    try:
        yield arm
    except KeyboardInterrupt:
        mark_failed(outdir, "interrupted (SIGINT)")
        raise
    except BaseException as e:
        mark_failed(outdir, e.args[0] if isinstance(e, Terminated) and e.args else
                    f"{e.__class__.__name__}: {e}" if not isinstance(e, cfgmod.ConfigError) else str(e))
        raise
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)
