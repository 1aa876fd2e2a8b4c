"""Scale and reliability: bad input never gives a traceback, exit codes, atomic outputs,
checkpoint/restart after SIGKILL, MPI failure on one rank, sweeps."""

import contextlib
import io
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from creep_cathode import cli
from creep_cathode.config import load_toml
from creep_cathode.output import CSVTable

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "configs" / "se_mse.toml"
EXE = str(ROOT / ".venv" / "bin" / "creep-cathode")
MPIEXEC = str(ROOT / ".venv" / "bin" / "mpiexec")

SMALL_BLOCK = ["--set", "rve.kind=block", "--set", "rve.phase=Se", "--set", "rve.width=4e-6", "--set",
               "rve.height=4e-6", "--set", "rve.mesh_size=1e-6", "--set", "boundary.right=free", "--set",
               "boundary.top=free", "--set", "output.progress=false", "--set", "output.plots=false"]


def run_cli(args):
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            rc = cli.main(args)
        except SystemExit as e:  # argparse
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


# ---------------------------------------------------------------------------------- fuzzing
def _paths(d, prefix=()):
    for k, v in d.items():
        p = prefix + (k,)
        yield p
        if isinstance(v, dict):
            yield from _paths(v, p)


BASE_DATA = load_toml(BASE)
PATHS = list(_paths(BASE_DATA))
JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-10**12, max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    st.sampled_from([0, -1, 1e300, -1e300, 1e-300, float("nan"), float("inf"), "", "roller", 0.5, 2.0]),
)


def _mutate(data, path, value, action):
    import copy

    d = copy.deepcopy(data)
    node = d
    for k in path[:-1]:
        node = node[k]
    if action == "delete":
        node.pop(path[-1], None)
    elif action == "unknown":
        node["unknown_key_x"] = value
    else:
        node[path[-1]] = value
    return d


def _toml_value(v):
    from creep_cathode.config import _tv

    return _tv(v)


@settings(max_examples=320, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(PATHS), value=JUNK, action=st.sampled_from(["set", "set", "delete", "unknown"]))
def test_mutated_configs_never_traceback(tmp_path_factory, path, value, action):
    """Each mutated config either validates or ends with a one-line error and exit code 2."""
    from creep_cathode.config import ConfigError, validate

    data = _mutate(BASE_DATA, path, value, action)
    try:
        validate(data)
    except ConfigError as e:
        msg = str(e)
        assert msg and "\n" not in msg and "Traceback" not in msg
    except Exception as e:  # anything else is a bug
        pytest.fail(f"{type(e).__name__} for {path}={value!r} ({action}): {e}")
    # the same through the command line (TOML text), when the value is TOML-representable
    if action == "set" and value is not None and not isinstance(value, dict):
        try:
            text = _toml_value(value)
        except TypeError:
            return
        rc, out, err = run_cli(["check", str(BASE), "--set", ".".join(path) + "=" + text])
        assert "Traceback" not in err
        assert rc in (0, 2)
        if rc == 2:
            assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")


def test_missing_unreadable_and_output_is_file(tmp_path):
    rc, _, err = run_cli(["check", str(tmp_path / "missing.toml")])
    assert rc == 2 and "not found" in err
    p = tmp_path / "locked.toml"
    p.write_text(BASE.read_text())
    p.chmod(0)
    if os.geteuid() != 0:  # root reads anything
        rc, _, err = run_cli(["check", str(p)])
        assert rc == 2 and "not readable" in err
    p.chmod(0o644)
    f = tmp_path / "afile"
    f.write_text("x")
    rc, _, err = run_cli(["run", str(BASE), "-o", str(f)] + SMALL_BLOCK)
    assert rc == 4 and "not a folder" in err and "Traceback" not in err
    rc, _, err = run_cli(["mesh", str(BASE), "-o", str(f)])
    assert rc == 4 and "not a folder" in err


def test_solver_failure_exit_code_and_summary(tmp_path):
    """A step that cannot converge ends the run as failed (exit 3) and keeps what was written."""
    out = tmp_path / "fail"
    rc, _, err = run_cli(["run", str(BASE), "-o", str(out)] + SMALL_BLOCK + [
        "--set", "solver.max_iterations=1", "--set", "solver.newton_continuations=0", "--set", "solver.max_cutbacks=1",
        "--set", "solver.dt_min=100", "--set", "solver.dt_initial=3600"])
    assert rc == 3, err
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "failed" and "failed" in s["reason"]
    assert (out / "timeseries.csv").exists() and (out / "config.toml").exists()


def test_stalled_run_fails_cleanly(tmp_path):
    """Steps that keep converging but stay tiny (a contact state the mechanics cannot get past)
    end the run as failed, with the reason and the cycle reached, instead of crawling on."""
    out = tmp_path / "stall"
    rc, _, err = run_cli(["run", str(BASE), "-o", str(out)] + SMALL_BLOCK + [
        "--set", 'cycling.protocol=["Lithiate at 1C"]', "--set", "cycling.cycles=1",
        "--set", "solver.dt_initial=1", "--set", "solver.dt_max=1",
        "--set", "solver.stall_steps=10", "--set", "solver.stall_fraction=0.5"])
    assert rc == 3, err
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "failed" and "stalled" in s["reason"] and "cycle 1" in s["reason"]
    assert s["cycle_reached"] == 1 and s["steps"] == 9  # the 10th step completes the stall window


# ---------------------------------------------------------------------------------- checkpoints
def test_kill_and_resume_matches_uninterrupted(tmp_path):
    args = [str(BASE)] + SMALL_BLOCK + ["--set", "cycling.cycles=4", "--set", "solver.checkpoint_every=7",
                                        "--set", "solver.dt_max=600", "--set", "output.fields=none"]
    ref = tmp_path / "ref"
    r = subprocess.run([EXE, "run"] + args + ["-o", str(ref)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "killed"
    p = subprocess.Popen([EXE, "run"] + args + ["-o", str(out)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    ck = out / "checkpoint.npz"
    t0 = time.time()
    while time.time() - t0 < 120:
        if ck.exists() and ck.stat().st_mtime > t0:
            rows = CSVTable.read(out / "timeseries.csv") if (out / "timeseries.csv").exists() else []
            if len(rows) > 20:
                break
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "running"  # killed: not completed
    # resume refused when the physics changed
    bad = subprocess.run([EXE, "run"] + args + ["-o", str(out), "--resume", "--set",
                                                "materials.Se.creep.n=3"], capture_output=True, text=True)
    assert bad.returncode == 2 and "physics part of the config changed" in bad.stderr
    r = subprocess.run([EXE, "run"] + args + ["-o", str(out), "--resume"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    sa = json.loads((ref / "summary.json").read_text())
    sb = json.loads((out / "summary.json").read_text())
    # step, Newton and rejection counters carry over the kill (they are in the checkpoint)
    for k in ("steps", "newton_iterations_total", "rejected_steps"):
        assert sb[k] == sa[k], k
    # wall time: the killed run's time up to its checkpoint plus the resumed run's
    assert sa["resumes"] == 0 and sb["resumes"] == 1
    assert sa["wall_time_s"] == sa["wall_time_this_run_s"]
    assert sb["wall_time_s"] > sb["wall_time_this_run_s"] > 0
    a, b = sa["final"], sb["final"]
    for k, v in a.items():
        if isinstance(v, float):
            assert b[k] == pytest.approx(v, rel=1e-8, abs=1e-14), k
    ta = CSVTable.read(ref / "timeseries.csv")
    tb = CSVTable.read(out / "timeseries.csv")
    assert len(ta) == len(tb)
    ca = CSVTable.read(ref / "cycles.csv")
    cb = CSVTable.read(out / "cycles.csv")
    assert len(ca) == len(cb) == 8


def test_resume_with_more_cycles_extends_a_completed_run(tmp_path):
    """--resume --set cycling.cycles=N (N above the folder's) continues a completed run from its last
    checkpoint to cycle N, as if it had been asked for N cycles from the start; fewer cycles, or any
    other change of physics, is refused."""
    args = [str(BASE)] + SMALL_BLOCK + ["--set", "solver.dt_max=600", "--set", "output.fields=none"]
    ref, out = tmp_path / "ref", tmp_path / "ext"
    r = subprocess.run([EXE, "run"] + args + ["--set", "cycling.cycles=2", "-o", str(ref)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([EXE, "run"] + args + ["--set", "cycling.cycles=1", "-o", str(out)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "summary.json").read_text())["cycles_completed"] == 1
    bad = subprocess.run([EXE, "run"] + args + ["--set", "cycling.cycles=2", "--set", "materials.Se.creep.n=3",
                                                "-o", str(out), "--resume"], capture_output=True, text=True)
    assert bad.returncode == 2 and "physics part of the config changed" in bad.stderr
    r = subprocess.run([EXE, "run"] + args + ["--set", "cycling.cycles=2", "-o", str(out), "--resume"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    sa = json.loads((ref / "summary.json").read_text())
    sb = json.loads((out / "summary.json").read_text())
    assert sb["status"] == "completed" and sb["cycles_completed"] == 2 and sb["resumes"] == 1
    for k in ("steps", "newton_iterations_total", "rejected_steps"):
        assert sb[k] == sa[k], k
    for k, v in sa["final"].items():
        if isinstance(v, float):
            assert sb["final"][k] == pytest.approx(v, rel=1e-8, abs=1e-14), k
    assert len(CSVTable.read(out / "cycles.csv")) == len(CSVTable.read(ref / "cycles.csv")) == 4
    assert len(CSVTable.read(out / "timeseries.csv")) == len(CSVTable.read(ref / "timeseries.csv"))
    # back to fewer cycles: refused, naming the key
    fewer = subprocess.run([EXE, "run"] + args + ["--set", "cycling.cycles=1", "-o", str(out), "--resume"],
                           capture_output=True, text=True)
    assert fewer.returncode == 2 and "only cycling.cycles may grow (from 2)" in fewer.stderr


def test_checkpoint_without_integration_history_resumes_backward_euler_runs(tmp_path):
    """A checkpoint written before the laws had their BDF2 history variables (as the runs made with
    backward Euler before it) resumes with solver.creep_integrator = "backward_euler" and gives
    the uninterrupted run: backward Euler never reads the history, and the physics hash of such
    a config is the one it had before the setting existed."""
    import numpy as np

    args = [str(BASE)] + SMALL_BLOCK + ["--set", "cycling.cycles=2", "--set", "solver.checkpoint_every=7",
                                        "--set", "solver.dt_max=600", "--set", "output.fields=none",
                                        "--set", "solver.creep_integrator=backward_euler"]
    ref, out = tmp_path / "ref", tmp_path / "cut"
    r = subprocess.run([EXE, "run"] + args + ["-o", str(ref)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    env = dict(os.environ, CREEP_CATHODE_INJECT_FAILURE="0:20")
    r = subprocess.run([EXE, "run"] + args + ["-o", str(out)], capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "injected failure" in r.stderr + r.stdout
    # strip the history variables, as an older version wrote the checkpoint
    ck = out / "checkpoint.npz"
    with np.load(ck, allow_pickle=False) as f:
        z = dict(f)
    meta = json.loads(bytes(z["meta"]).decode())
    layout = [tuple(x) for x in meta["cell_fields"]]
    q = z["cell_data"].shape[1] // sum(c for _, c in layout)
    keep = [x for x in layout if x[0] in ("Cp_inv", "eps_cr", "creep_rate")]
    assert len(keep) < len(layout) and layout[:len(keep)] == keep
    z["cell_data"] = z["cell_data"][:, :q * sum(c for _, c in keep)]
    meta["cell_fields"] = [list(x) for x in keep]
    z["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(ck, **z)
    r = subprocess.run([EXE, "run"] + args + ["-o", str(out), "--resume"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    sa = json.loads((ref / "summary.json").read_text())
    sb = json.loads((out / "summary.json").read_text())
    assert sb["steps"] == sa["steps"]
    for k, v in sa["final"].items():
        if isinstance(v, float):
            assert sb["final"][k] == pytest.approx(v, rel=1e-8, abs=1e-14), k


# ---------------------------------------------------------------------------------- MPI
@pytest.mark.mpi
def test_mpi_failure_on_one_rank_ends_job(tmp_path):
    env = dict(os.environ, CREEP_CATHODE_INJECT_FAILURE="1:3")
    t0 = time.time()
    r = subprocess.run([MPIEXEC, "-n", "2", EXE, "run", str(BASE), "-o", str(tmp_path / "x")] + SMALL_BLOCK,
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode != 0, r.stderr
    assert "injected failure on rank 1" in r.stderr + r.stdout, (r.returncode, r.stderr, r.stdout)
    assert time.time() - t0 < 100


# ---------------------------------------------------------------------------------- sweeps
def _sweep_file(tmp_path):
    base = tmp_path / "base.toml"
    data = BASE.read_text()
    base.write_text(data)
    sw = tmp_path / "sweep.toml"
    sw.write_text("""base = "base.toml"
mode = "product"
set = ["rve.kind=\\"block\\"", "rve.phase=\\"Se\\"", "rve.width=4e-6", "rve.height=4e-6", "rve.mesh_size=1e-6",
       "boundary.right=\\"free\\"", "boundary.top=\\"free\\"", "cycling.cycles=1", "output.plots=false",
       "output.fields=\\"none\\""]
[[axis]]
key = "materials.Se.creep.n"
values = [3.0, 6.5]
[[axis]]
key = "cycling.protocol"
values = [["Lithiate at 1C", "Delithiate at 1C"], ["Lithiate at 2C", "Delithiate at 2C"]]
labels = ["1C", "2C"]
""")
    return sw


def test_sweep_local_jobs_and_skip(tmp_path):
    sw = _sweep_file(tmp_path)
    out = tmp_path / "sw"
    r = subprocess.run([EXE, "sweep", str(sw), "-o", str(out), "--jobs", "2"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = CSVTable.read(out / "sweep.csv")
    assert len(rows) == 4 and all(x["status"] == "completed" for x in rows)
    assert {x["case"] for x in rows} == {"000_n=3.0_protocol=1C", "001_n=3.0_protocol=2C",
                                         "002_n=6.5_protocol=1C", "003_n=6.5_protocol=2C"}
    r = subprocess.run([EXE, "sweep", str(sw), "-o", str(out), "--jobs", "2"], capture_output=True, text=True)
    assert r.stdout.count("skipped") == 4
    r = subprocess.run([EXE, "sweep", str(sw), "-o", str(out), "--slurm"], capture_output=True, text=True)
    assert r.returncode == 0 and "#SBATCH --array=0-3%" in (out / "sweep.sbatch").read_text()


@pytest.mark.mpi
def test_sweep_mpi_groups(tmp_path):
    sw = _sweep_file(tmp_path)
    out = tmp_path / "swm"
    r = subprocess.run([MPIEXEC, "-n", "2", EXE, "sweep", str(sw), "-o", str(out), "--ranks-per-case", "1"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = CSVTable.read(out / "sweep.csv")
    assert len(rows) == 4 and all(x["status"] == "completed" for x in rows), rows
