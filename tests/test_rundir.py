"""The run-folder contract (issue 16 items 1-3 and 9; README "Running"): a folder holds one run,
--resume checks before it writes, every end of a run leaves a final status."""

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from creep_cathode import cli
from creep_cathode.output import CSVTable

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "configs" / "se_mse.toml"
EXE = [sys.executable, "-m", "creep_cathode.cli"]
MPIEXEC = str(ROOT / ".venv" / "bin" / "mpiexec")
BLOCK = ["--set", "rve.kind=block", "--set", "rve.phase=Se", "--set", "rve.width=4e-6", "--set", "rve.height=4e-6",
         "--set", "rve.mesh_size=1e-6", "--set", "boundary.right=free", "--set", "boundary.top=free",
         "--set", "output.progress=false", "--set", "output.plots=false", "--set", "cycling.cycles=2",
         "--set", "solver.dt_max=600"]


def run_cli(args):
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        rc = cli.main(args)
    return rc, out.getvalue(), err.getvalue()


def summary(folder):
    return json.loads((Path(folder) / "summary.json").read_text())


def snapshot_files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in Path(folder).rglob("*") if p.is_file()}


def test_a_folder_holds_one_run(tmp_path):
    """Item 1: a second run into a folder that holds a completed run is refused; --overwrite clears
    the old run's files (checkpoint, snapshots, plots) first, so nothing of it leaks into the new one."""
    out = tmp_path / "run"
    rc, _, err = run_cli(["run", str(BASE), "-o", str(out)] + BLOCK + ["--set", "output.fields=cycle_ends"])
    assert rc == 0, err
    before = snapshot_files(out)
    rc, _, err = run_cli(["run", str(BASE), "-o", str(out)] + BLOCK + ["--set", "cycling.cycles=1"])
    assert rc == 2 and "holds a completed run" in err and "--overwrite" in err and len(err.splitlines()) == 1
    assert snapshot_files(out) == before  # refused before writing anything
    rc, _, err = run_cli(["run", str(BASE), "-o", str(out), "--overwrite"] + BLOCK +
                         ["--set", "cycling.cycles=1", "--set", "output.fields=none"])
    assert rc == 0, err
    assert not (out / "fields").exists()  # the old run's snapshots are gone
    assert summary(out)["status"] == "completed" and len(CSVTable.read(out / "cycles.csv")) == 2


def test_a_users_files_beside_a_run_stay(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    rc, _, err = run_cli(["run", str(BASE), "-o", str(out)] + BLOCK + ["--set", "cycling.cycles=1"])
    assert rc == 0, err
    rc, _, err = run_cli(["run", str(BASE), "-o", str(out), "--overwrite"] + BLOCK + ["--set", "cycling.cycles=1"])
    assert rc == 0 and (out / "notes.txt").read_text() == "mine"


def _start_and_kill(args, out, min_rows=6):
    """Start a run, kill it (SIGKILL) once it has checkpointed and written min_rows rows."""
    p = subprocess.Popen(EXE + ["run"] + args + ["-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while time.time() - t0 < 120 and p.poll() is None:
        ck = out / "checkpoint.npz"
        if ck.exists() and ck.stat().st_mtime > t0 and len(CSVTable.read(out / "timeseries.csv")) >= min_rows:
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()


def test_resume_checks_before_it_writes(tmp_path):
    """Item 2: a refused --resume (changed physics, corrupt or foreign checkpoint) leaves summary.json
    and config.toml as they were; a killed run is recognised as killed; a stale temp file of a
    killed checkpoint write is removed when the run resumes."""
    args = [str(BASE)] + BLOCK + ["--set", "solver.checkpoint_every=3", "--set", "output.fields=none"]
    out = tmp_path / "killed"
    _start_and_kill(args, out)
    assert summary(out)["status"] == "running"
    keep = {n: (out / n).read_bytes() for n in ("summary.json", "config.toml", "timeseries.csv")}
    # a plain run into it: refused, and it says the run was killed
    rc, _, err = run_cli(["run"] + args + ["-o", str(out)])
    assert rc == 2 and "killed" in err and "--resume" in err
    rc, _, err = run_cli(["run"] + args + ["-o", str(out), "--resume", "--set", "materials.Se.creep.n=3"])
    assert rc == 2 and "physics part of the config changed" in err
    assert {n: (out / n).read_bytes() for n in keep} == keep
    # a corrupt checkpoint: exit 2, one line, nothing written
    good = (out / "checkpoint.npz").read_bytes()
    for bad in (b"PK\x03\x04garbage", good[:-40], good[:200] + bytes(50) + good[250:]):
        (out / "checkpoint.npz").write_bytes(bad)
        rc, _, err = run_cli(["run"] + args + ["-o", str(out), "--resume"])
        assert rc == 2 and "checkpoint" in err and len(err.strip().splitlines()) == 1, err
        assert {n: (out / n).read_bytes() for n in keep} == keep
    (out / "checkpoint.npz").write_bytes(good)
    # the checkpoint must belong to this folder's timeseries
    ts = (out / "timeseries.csv").read_text().splitlines()
    (out / "timeseries.csv").write_text("\n".join(ts[:2]) + "\n")
    rc, _, err = run_cli(["run"] + args + ["-o", str(out), "--resume"])
    assert rc == 2 and "timeseries.csv is not the one" in err
    (out / "timeseries.csv").write_bytes(keep["timeseries.csv"])
    (out / ".checkpoint.npz.tmpx").write_bytes(b"half a file")
    rc, _, err = run_cli(["run"] + args + ["-o", str(out), "--resume"])
    assert rc == 0, err
    assert summary(out)["status"] == "completed" and summary(out)["resumes"] == 1
    assert not (out / ".checkpoint.npz.tmpx").exists()
    rc, out_, err = run_cli(["run"] + args + ["-o", str(out), "--resume"])  # nothing left to do
    assert rc == 0 and "completed already" in out_


def test_a_stale_checkpoint_of_another_run_is_refused(tmp_path):
    """Item 1: a checkpoint copied in from a different run is not resumed."""
    args = [str(BASE)] + BLOCK + ["--set", "solver.checkpoint_every=3", "--set", "output.fields=none"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_cli(["run"] + args + ["-o", str(a)])[0] == 0
    _start_and_kill(args, b)
    (b / "checkpoint.npz").write_bytes((a / "checkpoint.npz").read_bytes())
    rc, _, err = run_cli(["run"] + args + ["-o", str(b), "--resume"])
    assert rc == 2 and "belongs to another run" in err


@pytest.mark.parametrize("how", ["internal", "sigterm"])
def test_every_end_leaves_a_final_status(tmp_path, how):
    """Item 3: an internal error and SIGTERM leave summary.json "failed" with the reason."""
    out = tmp_path / how
    args = EXE + ["run", str(BASE), "-o", str(out)] + BLOCK + ["--set", "cycling.cycles=20"]
    if how == "internal":
        r = subprocess.run(args, capture_output=True, text=True, env=dict(os.environ, CREEP_CATHODE_INJECT_FAILURE="0:3"))
        assert r.returncode == 1
        s = summary(out)
        assert s["status"] == "failed" and "injected failure on rank 0 at step 3" in s["reason"]
    else:
        p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        t0 = time.time()
        while time.time() - t0 < 60 and len(CSVTable.read(out / "timeseries.csv")) < 3:
            time.sleep(0.05)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
        assert p.returncode == 143 and "SIGTERM" in err
        s = summary(out)
        assert s["status"] == "failed" and "SIGTERM" in s["reason"]


@pytest.mark.mpi
def test_another_ranks_failure_leaves_a_final_status(tmp_path):
    out = tmp_path / "mpi"
    env = dict(os.environ, CREEP_CATHODE_INJECT_FAILURE="1:3")
    r = subprocess.run([MPIEXEC, "-n", "2"] + EXE + ["run", str(BASE), "-o", str(out)] + BLOCK, capture_output=True,
                       text=True, env=env, timeout=120)
    assert r.returncode != 0
    s = summary(out)
    assert s["status"] == "failed" and "injected failure on rank 1" in s["reason"]


def test_stall_message_names_the_limit(tmp_path):
    """Item 9: a run stalled by a tiny max_theta_increment says so (not 'contact')."""
    out = tmp_path / "stall"
    rc, _, err = run_cli(["run", str(BASE), "-o", str(out)] + BLOCK + [
        "--set", 'cycling.protocol=["Lithiate at 1C"]', "--set", "cycling.cycles=1",
        "--set", "solver.max_theta_increment=1e-5", "--set", "solver.stall_steps=10"])
    assert rc == 3
    reason = summary(out)["reason"]
    assert "stalled" in reason and "max_theta_increment" in reason and "contact" not in reason


def test_stall_message_after_hard_steps_names_the_remedy():
    """Steps that shrink because each takes more than hard_iterations Newton iterations, while the
    iterations do not fall with the step (contacts settling on a large RVE), stall with a message
    that names the two settings to raise."""
    from types import SimpleNamespace

    import creep_cathode as cc
    from creep_cathode.stepping import Stepper

    settings = cc.load_config(str(BASE), []).solver
    lith = SimpleNamespace(theta_at=lambda seg, t: {})
    st = Stepper(problem=None, solve=None, lithiation=lith, settings=settings)
    st.recent_bound, st.recent_cuts = ["hard"] * 10, 0
    msg = st._stall_cause()
    assert "solver.hard_iterations = 30" in msg and "solver.easy_iterations" in msg
