"""Hostile and mistaken inputs (issue 16, items 4-9): strict numbers and physical bounds, finite
protocols, geometry decided at `check`, one short line and exit 2 (4 for the file system) for
every bad input, a normalised config that always loads again, sweeps confined to -o with an
honest exit code, quoted SLURM scripts. Property-based tests of the config layer, the TOML
writer and the protocol parser."""

import json
import math
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from creep_cathode import sweep as sweepmod
from creep_cathode.config import (ConfigError, _dump_toml, apply_overrides, load_toml, physics_hash, to_dict, to_toml,
                                  validate)
from creep_cathode.meshes import packing
from creep_cathode.output import CSVTable
from creep_cathode.protocol import MAX_C_RATE, MAX_REST_S, MIN_C_RATE, ProtocolError, parse_step, schedule
from creep_cathode.text import MAX_LINE
from test_robustness import BASE, EXE, SMALL_BLOCK, run_cli

BASE_DATA = load_toml(BASE)


def refused(overrides) -> str:
    """The one-line ConfigError of BASE with these overrides."""
    with pytest.raises(ConfigError) as e:
        validate(apply_overrides(BASE_DATA, overrides))
    msg = str(e.value)
    assert "\n" not in msg and len(msg) <= MAX_LINE, msg
    return msg


def accepted(overrides):
    return validate(apply_overrides(BASE_DATA, overrides))


def one_error_line(rc, err, code=2):
    assert rc == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert len(lines[0]) <= MAX_LINE + len("error: "), len(lines[0])
    return lines[0]


# ------------------------------------------------------------- item 7: meaningless runs refused
@pytest.mark.parametrize("ovs,fragment", [
    (['cycling.protocol=["Lithiate at 1e13C to 0.3"]'], "C-rate must be in [1e-05, 1000] C"),
    (['cycling.protocol=["Lithiate at 1e400C"]'], "C-rate must be in"),
    (['cycling.protocol=["Delithiate at 1e-300C"]'], "C-rate must be in"),
    (['cycling.protocol=["Rest for 1e400 s"]'], "duration must be at most 1e+09 s"),
    (['cycling.protocol=["Rest for 1e300 hours"]'], "duration must be at most"),
    (["materials.Se.youngs_modulus=1e300"], "materials.Se.youngs_modulus: must be <= 1e+13"),
    (["solver.atol=1e300"], "solver.atol: must be <= 0.001"),
])
def test_item7_meaningless_inputs_refused(ovs, fragment):
    assert fragment in refused(ovs)


# ------------------------------------------------------------- item 8: strict types and bounds
@pytest.mark.parametrize("ov", ["materials.Se.youngs_modulus=true", "cycling.cycles=true", "rve.width=false",
                                "rve.seed=true", "solver.element_degree=true", "contact.stiffness=true",
                                "materials.Se.creep.n=true", "boundary.top={pressure=true}",
                                'rve.width="16e-6"', 'cycling.temperature="343"', "materials.Se.active=1",
                                "output.plots=0", 'rve.mesh_pores="yes"'])
def test_item8_no_booleans_for_numbers_nor_numbers_for_booleans(ov):
    msg = refused([ov])
    assert msg.startswith(ov.split("=")[0].replace("={pressure", "")) and "expected" in msg, msg


# (key, beyond the bound, at or inside the bound): each bound is stated in the key's description
BOUNDS = [
    ("materials.Se.youngs_modulus", "2e13", "1e13"),
    ("materials.Se.youngs_modulus", "500", "1e5"),
    ("materials.Se.lithiated.youngs_modulus", "2e13", "1e13"),
    ("materials.MSe.youngs_modulus", "1e300", "1e12"),
    ("materials.Se.volume_ratio_lithiated", "11", "10"),
    ("materials.Se.volume_ratio_lithiated", "0.05", "0.1"),
    ("materials.Se.creep.A", "2e6", "1e-3"),
    ("materials.Se.creep.sigma_ref", "2e12", "1e12"),
    ("materials.Se.creep.sigma_ref", "0.5", "1"),
    ("materials.Se.creep.Q", "3e6", "1e5"),
    ("materials.Se.creep.T_ref", "4000", "3000"),
    ("cycling.temperature", "4000", "400"),
    ("cycling.temperature", "0.5", "300"),
    ("boundary.top", "{pressure=2e10}", "{pressure=1e10}"),
    ("boundary.top", "{pressure=-2e10}", "{pressure=-1e10}"),
    ("contact.stiffness", "2e3", "1e3"),
    ("contact.proximal", "2e3", "1e3"),
    ("contact.proximal_tolerance", "2", "1"),
    ("contact.dhat", "2e-6", "1.6e-6"),
    ("contact.tolerance", "2e-6", "1.6e-6"),
    ("solver.atol", "2e-3", "1e-3"),
    ("solver.dt_max", "2e9", "1e9"),
    ("solver.dt_initial", "2e9", "1e9"),
    ("solver.max_creep_increment", "2", "1"),
    ("solver.checkpoint_every", "10000000000", "1000000000"),
    ("rve.width", "1", "1.6e-5"),
    ("rve.mesh_size", "1e-300", "0.6e-6"),  # mesh_size**2 underflowed: ZeroDivisionError, exit 1
    ("rve.seed", str(2**63), str(2**63 - 1)),
]


@pytest.mark.parametrize("key,bad,good", BOUNDS, ids=[f"{k}={b}" for k, b, _ in BOUNDS])
def test_item8_physical_bounds(key, bad, good):
    msg = refused([f"{key}={bad}"])
    assert msg.startswith(key), msg
    accepted([f"{key}={good}"])


def test_item8_schedule_length_and_moduli_ratio_and_arrhenius():
    steps = '["' + '", "'.join(["Lithiate at 1C to 0.1", "Rest for 1 s"] * 10) + '"]'
    assert "cycling.cycles" in refused([f"cycling.protocol={steps}", "cycling.cycles=100000"])
    assert "materials.Se.lithiated.youngs_modulus" in refused(["materials.MSe.youngs_modulus=1e13",
                                                               "materials.Se.lithiated.youngs_modulus=1e6"])
    # exp(-Q/R (1/T - 1/T_ref)) at T = 3000 K, Q = 2e5 J/mol: exp(62.1), A = 1.9e-8 -> 1.9e19 1/s
    msg = refused(["materials.Se.creep.Q=2e5", "cycling.temperature=3000"])
    assert msg.startswith("materials.Se.creep.Q") and "exp(62.08)" in msg
    assert "underflows" in refused(["materials.Se.creep.Q=2e5", "cycling.temperature=1"])


PARTICLES = ['rve.kind="particles"', "rve.min_gap=0.05e-6"]


@pytest.mark.parametrize("ovs,key,fragment", [
    (PARTICLES + ['rve.particles=[{phase="Se", center=[8e-6, 8e-6], radius=100e-6}]'], "rve.particles[0].radius",
     "covers the whole box"),
    (PARTICLES + ['rve.particles=[{phase="Se", center=[1e-3, 1e-3], radius=2e-6}]'], "rve.particles[0]",
     "lies outside the box"),
    (PARTICLES + ['rve.particles=[{phase="Se", center=[5e-6, 5e-6], radius=3e-6}, '
                  '{phase="MSe", center=[9e-6, 5e-6], radius=3e-6}]'], "rve.particles[1]", "overlap"),
    (PARTICLES + ['rve.particles=[{phase="Se", center=[5e-6, 5e-6], radius=1e-8}]'], "rve.particles[0].radius",
     "far below rve.mesh_size"),
    (PARTICLES + ['rve.particles=[{phase="Se", center=[1e-5, 1e300], radius=1e300}]'],
     "rve.particles[0].center[1]", "must be <= 0.01"),
    (["rve.fractions.Se=0.45"], "rve.fractions", "above the densest random packing"),
    (["rve.width=8e-6", "rve.height=8e-6"], "rve.size.MSe.mean_diameter", "too big for the box"),
    (["rve.size.Se.mean_diameter=40e-9", "rve.size.MSe.mean_diameter=40e-9", "rve.min_gap=10e-9"],
     "rve.size.", "far below rve.mesh_size"),
    (["rve.width=1e-3", "rve.height=1e-3", "rve.mesh_size=1.1e-6"], "rve.size.Se.mean_diameter", "at most 20000"),
])
def test_item8_geometry_decided_at_check(ovs, key, fragment):
    msg = refused(ovs)
    assert msg.startswith(key) and fragment in msg, msg


def test_item8_circle_beyond_floating_point_range_is_outside():
    """Its clipped area is NaN (r^2 overflows): that used to pass the 'piece inside' test."""
    with pytest.raises(packing.PackingError, match="lies outside the box"):
        packing.validate_particles([packing.Circle("Se", 1e-5, 1e300, 1e300)], 16e-6, 16e-6, 0.0)


def test_item8_tiny_random_rve_never_reaches_gmsh(tmp_path):
    """A 10 nm particle RVE used to die in Gmsh with std::bad_alloc (exit 1): now exit 2 at once,
    before anything is written."""
    out = tmp_path / "m"
    rc, _, err = run_cli(["mesh", str(BASE), "-o", str(out), "--set", "rve.size.Se.mean_diameter=10e-9",
                          "--set", "rve.size.MSe.mean_diameter=10e-9", "--set", "rve.min_gap=1e-9"])
    assert "rve.size." in one_error_line(rc, err)
    assert not out.exists()


@pytest.mark.timeout(600)
def test_item8_packing_gives_up_within_its_budget(tmp_path):
    """The budget is a config key with a default of at most 1e6 iterations (was 1e7, 3 minutes on a
    fast core); when it is spent, `mesh` ends with exit 2 and one line naming the key."""
    from creep_cathode.config import RVE

    assert RVE.model_fields["packing_iterations"].default == packing.MAX_ITERATIONS <= 1_000_000
    ovs = ["rve.width=8e-6", "rve.height=8e-6", "rve.fractions.Se=0.39", "rve.fractions.MSe=0.39",
           "rve.size.Se.mean_diameter=1e-6", "rve.size.MSe.mean_diameter=1e-6", "rve.min_gap=0.05e-6",
           "rve.mesh_size=0.5e-6", "rve.packing_iterations=2000"]
    accepted(ovs)  # effective fraction 0.858 < 0.86: not decidable without packing
    args = [x for o in ovs for x in ("--set", o)]
    rc, _, err = run_cli(["mesh", str(BASE), "-o", str(tmp_path / "m")] + args)
    line = one_error_line(rc, err)
    assert "max_iterations = 2000" in line and "rve.packing_iterations" in line


# ------------------------------------------------------------- item 9: exit 2, one short line
def test_item9_hostile_files_one_line_exit_2(tmp_path):
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 100000 + "]" * 100000 + "\n")
    digits = tmp_path / "digits.toml"
    digits.write_text("[rve]\nseed = 1" + "0" * 5000 + "\n")
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(b'[materials.Se]\nsource = "S\xe9"\n')
    nested = tmp_path / "nested.toml"
    nested.write_text("x = " + "[" * 40 + "1" + "]" * 40 + "\n")
    for p, fragment in [(deep, "nested too deeply"), (digits, "too many digits"), (latin1, "not UTF-8"),
                        (nested, "nested deeper than 32"), (Path("/dev/zero"), "not a regular file")]:
        rc, out, err = run_cli(["check", str(p)])
        assert fragment in one_error_line(rc, err), (p, err)
    rc, _, err = run_cli(["check", str(BASE), "--set", "rve.seed=1" + "0" * 5000])
    assert "too many digits" in one_error_line(rc, err)


def test_item9_fifo_as_config_does_not_hang(tmp_path):
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    r = subprocess.run([EXE, "check", str(fifo)], capture_output=True, text=True, timeout=60)
    assert "not a regular file" in one_error_line(r.returncode, r.stderr)


def test_item9_long_values_abbreviated_and_keys_escaped(tmp_path):
    huge = "x" * 1_000_000
    for ov in [f"rve.kind={huge}", f"{huge}=1", f"rve.{huge}=1", f'cycling.protocol=["{huge}"]',
               f"materials.Se.youngs_modulus={huge}"]:
        rc, _, err = run_cli(["check", str(BASE), "--set", ov])
        one_error_line(rc, err)
    p = tmp_path / "newline_key.toml"
    p.write_text(BASE.read_text().replace("[rve]", '[rve]\n"a\\nb\\u0000c" = 1', 1))
    rc, _, err = run_cli(["check", str(p)])
    assert "unknown key" in one_error_line(rc, err)
    # argparse errors: one line too (not the usage block)
    rc, _, err = run_cli(["sweep", str(BASE), "-o", str(tmp_path), "--jobs", "abc" * 1000])
    one_error_line(rc, err)
    rc, _, err = run_cli(["frobnicate"])
    one_error_line(rc, err)


def test_item9_non_ascii_text_round_trips(tmp_path):
    """A phase name or source with non-ASCII text (é, an emoji) used to give a normalised TOML that
    did not load again."""
    text = re.sub(r"\bSe = ", '"Sé" = ', BASE.read_text()).replace("[materials.Se]", '[materials."Sé"]')
    p = tmp_path / "accent.toml"
    p.write_text(text)
    rc, out, err = run_cli(["check", str(p), "--set", 'materials.MSe.source="Mo₆Se₈ 😀 \\u0007 tab\\t"'])
    assert rc == 0, err
    q = tmp_path / "again.toml"
    q.write_text(out)
    rc2, out2, err2 = run_cli(["check", str(q)])
    assert rc2 == 0 and out2 == out, err2
    cfg = validate(tomllib.loads(out))
    assert "Sé" in cfg.materials and cfg.materials["MSe"].source == "Mo₆Se₈ 😀 \x07 tab\t"
    assert refused(['materials.MSe.source="\udce9"']).startswith("materials.MSe.source")
    assert "phase name" in refused(['rve.fractions."Se😀"=0.1'])


@pytest.mark.timeout(120)
def test_item9_protocol_parser_never_hangs():
    """A failing match on a long run of digits backtracked in quadratic time (8000 digits: ~2 min);
    steps are now at most 200 characters and the number pattern backtracks linearly."""
    from creep_cathode.protocol import _NUM

    for text in ["Lithiate at " + "9" * 100_000 + "x", "Rest for " + "9" * 100_000 + " x"]:
        with pytest.raises(ProtocolError, match="too long"):
            parse_step(text)
    assert re.fullmatch(_NUM, "9" * 1_000_000 + "x") is None
    assert re.fullmatch(_NUM, "9" * 100_000 + "e" + "9" * 100_000 + "x") is None
    assert [re.fullmatch(_NUM, x) is not None for x in ["1", "1.5", ".5", "15e-3", "1.", "1.e3", "e3"]] == \
        [True, True, True, True, False, False, False]


# ------------------------------------------------------------- sweeps (items 3, 4, 5, 6)
def _sweep(tmp_path, axes: str, extra_set: str = "") -> Path:
    (tmp_path / "base.toml").write_text(BASE.read_text())
    sw = tmp_path / "sweep.toml"
    sw.write_text(f"""base = "base.toml"
set = ["rve.kind=\\"block\\"", "rve.phase=\\"Se\\"", "rve.width=4e-6", "rve.height=4e-6", "rve.mesh_size=1e-6",
       "boundary.right=\\"free\\"", "boundary.top=\\"free\\"", "cycling.cycles=1", "output.plots=false",
       "output.fields=\\"none\\"", "cycling.protocol=[\\"Lithiate at 2C to 0.1\\"]"{extra_set}]
{axes}""")
    return sw


def _fake_run(monkeypatch, code: str):
    """Cases run `python -c CODE run INPUT -o FOLDER ...` instead of a simulation."""
    monkeypatch.setattr(sweepmod, "_exe", lambda: [sys.executable, "-c", code])


def _args(sw, out, **kw):
    return SimpleNamespace(sweep=str(sw), out=str(out), jobs=1, ranks_per_case=1, slurm=False, case=None, **kw)


def test_item5_case_names_confined_to_out(tmp_path, monkeypatch):
    sw = _sweep(tmp_path, """[[axis]]
key = "materials.Se.creep.n"
name = "../../up"
values = [3.0, 6.5]
labels = ["/../../escaped", "..\\\\..\\\\win"]
""")
    done = ("import json, pathlib, sys; f = pathlib.Path(sys.argv[sys.argv.index('-o') + 1]); "
            "(f / 'summary.json').write_text(json.dumps({'status': 'completed'}))")
    _fake_run(monkeypatch, done)
    out = tmp_path / "a" / "out"
    assert sweepmod.run_sweep(_args(sw, out)) == 0
    made = sorted(p.name for p in out.iterdir() if p.is_dir() and p.name != "plots")
    assert made == ["000_up=escaped", "001_up=win"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "base.toml", "sweep.toml"]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["out"]


def test_item4_failed_case_gives_nonzero_exit_and_its_folder_says_why(tmp_path, monkeypatch):
    """A case whose process dies without a final status (here: exit 1, nothing written) is failed in
    its folder and in sweep.csv, and the sweep exits 3 (it used to exit 0)."""
    sw = _sweep(tmp_path, '[[axis]]\nkey = "materials.Se.creep.n"\nvalues = [3.0]\n')
    _fake_run(monkeypatch, "import sys; print('boom: died'); sys.exit(1)")
    out = tmp_path / "out"
    assert sweepmod.run_sweep(_args(sw, out)) == 3
    s = json.loads((out / "000_n=3.0" / "summary.json").read_text())
    assert s["status"] == "failed" and "exit code 1" in s["reason"] and "boom: died" in s["reason"]
    rows = CSVTable.read(out / "sweep.csv")
    assert [r["status"] for r in rows] == ["failed"]


def test_item4_relative_out_from_outside_the_repository(tmp_path):
    """Real runs from another working directory with a relative -o (every case used to fail with
    'config file not found' while the sweep exited 0): one case completes, one fails as a solver
    failure; the sweep exits 3 and sweep.csv says which."""
    sw = _sweep(tmp_path, '[[axis]]\nkey = "solver.max_iterations"\nvalues = [40, 1]\n',
                ', "solver.newton_continuations=0", "solver.max_cutbacks=1", "solver.dt_min=100", '
                '"solver.dt_initial=3600"')
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    r = subprocess.run([EXE, "sweep", os.path.relpath(sw, cwd), "-o", "rel/out"], cwd=cwd, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 3, r.stdout + r.stderr
    rows = {x["case"]: x for x in CSVTable.read(cwd / "rel" / "out" / "sweep.csv")}
    assert rows["000_max_iterations=40"]["status"] == "completed"
    assert rows["001_max_iterations=1"]["status"] == "failed"
    assert "failed after" in rows["001_max_iterations=1"]["reason"]


def test_item3_mpi_backend_any_exception_is_the_cases(tmp_path, monkeypatch):
    """Under MPI (--ranks-per-case) an exception of any type in a case is recorded in its folder;
    the other cases run and sweep.csv is written."""
    import creep_cathode.simulation as simmod

    class Boom:
        def __init__(self, cfg, folder, comm):
            if cfg.materials["Se"].creep.n == 3.0:
                raise KeyError("boom")
            raise ZeroDivisionError("also boom")

    monkeypatch.setattr(simmod, "Simulation", Boom)
    sw = _sweep(tmp_path, '[[axis]]\nkey = "materials.Se.creep.n"\nvalues = [3.0, 6.5]\n')
    out = tmp_path / "out"
    out.mkdir()
    loaded = sweepmod.load_sweep(sw)
    sweepmod._run_mpi(loaded, out, 1)
    sweepmod.collect(out, loaded)
    rows = {x["case"]: x for x in CSVTable.read(out / "sweep.csv")}
    assert rows["000_n=3.0"]["status"] == "failed" and "KeyError" in rows["000_n=3.0"]["reason"]
    assert rows["001_n=6.5"]["status"] == "failed" and "ZeroDivisionError" in rows["001_n=6.5"]["reason"]


@pytest.mark.mpi
def test_item3_mpi_sweep_failures_recorded_and_exit_3(tmp_path):
    sw = _sweep(tmp_path, '[[axis]]\nkey = "materials.Se.creep.n"\nvalues = [3.0, 6.5]\n')
    out = tmp_path / "out"
    env = dict(os.environ, CREEP_CATHODE_INJECT_FAILURE="0:2")
    r = subprocess.run([str(Path(EXE).parent / "mpiexec"), "-n", "2", EXE, "sweep", str(sw), "-o", str(out),
                        "--ranks-per-case", "1"], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 3, r.stdout + r.stderr
    rows = CSVTable.read(out / "sweep.csv")
    assert len(rows) == 2 and all(x["status"] == "failed" and "injected failure" in x["reason"] for x in rows)


def test_item6_sbatch_quotes_every_path(tmp_path):
    sw = _sweep(tmp_path, '[[axis]]\nkey = "materials.Se.creep.n"\nvalues = [3.0]\n')
    out = tmp_path / "o $(touch PWNED) `touch PWNED2` 100%"
    rc, stdout, err = run_cli(["sweep", str(sw), "-o", str(out), "--slurm"])
    assert rc == 0, err
    script = (out / "sweep.sbatch").read_text()
    assert f"-o {shlex.quote(str(out.resolve()))} " in script
    # run it with a stand-in srun: nothing in a path may execute
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_ / "srun").chmod(0o755)
    r = subprocess.run(["bash", str(out / "sweep.sbatch")], cwd=tmp_path, capture_output=True, text=True,
                       env=dict(os.environ, PATH=f"{bin_}:{os.environ['PATH']}", SLURM_ARRAY_TASK_ID="0"))
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "PWNED2").exists()
    rc, _, err = run_cli(["sweep", str(sw), "-o", str(tmp_path / "line\nbreak"), "--slurm"])
    assert "control characters" in one_error_line(rc, err)


def test_sweep_file_hostile_shapes(tmp_path):
    (tmp_path / "base.toml").write_text(BASE.read_text())
    for body in ['base = "base.toml"\naxis = 1', 'base = 3\n[[axis]]\nkey = "rve.seed"\nvalues = [1]',
                 'base = "base.toml"\n[[axis]]\nkey = 7\nvalues = [1]',
                 'base = "base.toml"\n[[axis]]\nkey = "rve.seed"\nvalues = [1]\nlabels = [{a = 1}]',
                 'base = "base.toml"\nset = "x"\n[[axis]]\nkey = "rve.seed"\nvalues = [1]',
                 'base = "base.toml"\n[[axis]]\nkey = "rve.seed.x"\nvalues = [1]',
                 'base = "/dev/zero"\n[[axis]]\nkey = "rve.seed"\nvalues = [1]']:
        sw = tmp_path / "sw.toml"
        sw.write_text(body)
        rc, _, err = run_cli(["sweep", str(sw), "-o", str(tmp_path / "o"), "--slurm"])
        one_error_line(rc, err)
    sw.write_text('base = "base.toml"\n[[axis]]\nkey = "rve.seed"\nvalues = [1]')
    rc, _, err = run_cli(["sweep", str(sw), "-o", str(tmp_path / "o"), "--case", "5"])
    assert "--case 5" in one_error_line(rc, err)


# ------------------------------------------------------------- property-based: config layer
# documented domain of numeric keys: (key, lo, hi, integer)
NUMERIC = [
    ("rve.width", 1e-8, 1e-2, False), ("rve.seed", 0, 2**63 - 1, True), ("rve.min_gap", 0, 8e-6, False),
    ("rve.mesh_size", 1.6e-8, 8e-6, False), ("rve.packing_iterations", 1000, 1e8, True),
    ("rve.fractions.Se", 0, 1, False), ("rve.size.Se.cv", 0, 2, False),
    ("materials.Se.youngs_modulus", 1e3, 1e13, False), ("materials.Se.poisson_ratio", -1, 0.5, False),
    ("materials.Se.volume_ratio_lithiated", 0.1, 10, False), ("materials.Se.creep.A", 0, 1e6, False),
    ("materials.Se.creep.n", 1, 50, False), ("materials.Se.creep.sigma_ref", 1, 1e12, False),
    ("materials.Se.creep.Q", 0, 2e6, False), ("materials.Se.creep.T_ref", 1, 3000, False),
    ("materials.Se.lithiated.youngs_modulus", 1e3, 1e13, False), ("cycling.cycles", 1, 1e5, True),
    ("cycling.temperature", 1, 3000, False), ("cycling.initial_theta", 0, 1, False),
    ("contact.stiffness", 0, 1e3, False), ("contact.proximal", 0, 1e3, False),
    ("contact.proximal_tolerance", 0, 1, False), ("contact.dhat", 0, 1.6e-6, False),
    ("solver.rtol", 0, 1, False), ("solver.atol", 0, 1e-3, False), ("solver.dt_max", 0, 1e9, False),
    ("solver.max_creep_increment", 0, 1, False), ("solver.checkpoint_every", 0, 1e9, True),
    ("solver.max_iterations", 1, 500, True), ("solver.growth", 1, 10, False),
]
JUNK = st.one_of(
    st.booleans(), st.text(max_size=8), st.none(), st.lists(st.integers(), max_size=2),
    st.floats(allow_nan=True, allow_infinity=True), st.floats(min_value=-1e-3, max_value=1e-3),
    st.integers(min_value=-(10**30), max_value=10**30), st.integers(min_value=-5, max_value=10**6),
    st.sampled_from([1e300, -1e300, 1e-300, 2**63, 2**64, 10**4000, 0, 1, 0.5, 1e13, 1e6, 3000.5, 1e-9]),
)


def _set_path(data, key, value):
    d = json.loads(json.dumps(data))
    node = d
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return d


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(item=st.sampled_from(NUMERIC), value=JUNK)
def test_property_numbers_strict_and_within_documented_bounds(item, value):
    """Any value at any numeric key: refused with one line naming the key, or accepted as a finite
    number (never a boolean) within the key's documented bounds."""
    key, lo, hi, integer = item
    try:
        cfg = validate(_set_path(BASE_DATA, key, value))
    except ConfigError as e:
        msg = str(e)
        assert "\n" not in msg and len(msg) <= MAX_LINE
        return
    got = cfg.model_dump()
    for p in key.split("."):
        got = got[p]
    if got is None:  # an optional key left unset (TOML has no null; a Python caller may pass None)
        assert value is None
        return
    assert not isinstance(value, bool) and isinstance(value, (int, float)), (key, value)
    assert math.isfinite(got) and lo <= got <= hi, (key, value, got)
    assert not integer or float(value).is_integer()


PHASE = st.builds(lambda a, b: a + b, st.characters(categories=["Lu", "Ll", "Lo"]),
                  st.text(alphabet=st.one_of(st.characters(categories=["L", "Nd"]), st.sampled_from("_-+.")),
                          max_size=10))
TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(phase=PHASE, source=TEXT)
def test_property_normalised_config_always_loads_again(phase, source):
    """`check`'s output (to_toml) of any valid config, with any phase name and any source text,
    loads again to the same config and hash."""
    explicit = to_dict(validate(BASE_DATA))  # the library's values written out (no `use = "Se"` to rename)
    data = json.loads(json.dumps(explicit).replace('"Se"', json.dumps(phase)))
    data["materials"][phase]["source"] = source
    try:
        cfg = validate(data)
    except ConfigError as e:  # only a phase name the schema refuses (e.g. a non-alphanumeric digit)
        assert "phase name" in str(e) or phase == "MSe", str(e)
        return
    text = to_toml(cfg)
    assert text.isascii()
    again = validate(tomllib.loads(text))
    assert again == cfg and physics_hash(again) == physics_hash(cfg)


SCALAR = st.one_of(TEXT, st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
                   st.floats(allow_nan=False, allow_infinity=False))
TREE = st.recursive(st.dictionaries(TEXT, SCALAR, max_size=4),
                    lambda c: st.dictionaries(TEXT, st.one_of(SCALAR, c, st.lists(SCALAR, max_size=3),
                                                              st.lists(c, min_size=1, max_size=2)), max_size=4),
                    max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(tree=TREE)
def test_property_toml_writer_round_trips_any_tree(tree):
    assert tomllib.loads(_dump_toml(tree)) == tree


# ------------------------------------------------------------- property-based: protocol parser
@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=60))
def test_property_protocol_any_text(text):
    try:
        parse_step(text)
    except ProtocolError as e:
        assert "\n" not in str(e) and len(str(e)) <= MAX_LINE


NUM = st.one_of(st.floats(min_value=0, allow_nan=False, allow_infinity=False).map(repr),
                st.integers(min_value=0, max_value=10**30).map(str),
                st.sampled_from(["1e400", "1e-400", "0", "0.0", "1e13", "1000", "1000.0001", "1e-5", "9e-6",
                                 "1e9", "1000000000.0001"]))


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(["Lithiate", "Delithiate"]), c=NUM, to=st.one_of(st.none(), NUM))
def test_property_charge_steps(kind, c, to):
    """Accepted iff the C-rate is in [1e-5, 1000] C and the target in [0, 1]; the step then lasts
    |d theta| / c hours (closed form), a finite time."""
    text = f"{kind} at {c}C" + (f" to {to}" if to is not None else "")
    rate = float(c)
    target = float(to) if to is not None else (1.0 if kind == "Lithiate" else 0.0)
    ok = MIN_C_RATE <= rate <= MAX_C_RATE and 0.0 <= target <= 1.0
    try:
        step = parse_step(text)
    except ProtocolError as e:
        assert not ok and "\n" not in str(e), (text, str(e))
        return
    assert ok, text
    theta0 = 0.5
    seg = schedule([step], 1, theta0)[0]
    moved = target > theta0 if kind == "Lithiate" else target < theta0
    expected = abs(target - theta0) / rate * 3600.0 if moved else 0.0
    assert math.isfinite(seg.t1) and seg.t1 - seg.t0 == pytest.approx(expected, rel=1e-12)


@settings(max_examples=200, deadline=None)
@given(d=NUM, unit=st.sampled_from([("s", 1.0), ("min", 60.0), ("hours", 3600.0), ("h", 3600.0)]))
def test_property_rest_steps(d, unit):
    seconds = float(d) * unit[1]
    ok = 0 < seconds <= MAX_REST_S
    try:
        step = parse_step(f"Rest for {d} {unit[0]}")
    except ProtocolError:
        assert not ok
        return
    assert ok and step.duration_s == seconds


def test_sweep_prints_progress_while_cases_run(tmp_path, monkeypatch, capsys):
    """With local processes the sweep says, while cases run, how many are done and where each running
    case is (cycle, step, simulated time from its timeseries.csv)."""
    sw = _sweep(tmp_path, '[[axis]]\nkey = "materials.Se.creep.n"\nvalues = [3.0]\n')
    slow = ("import json, pathlib, sys, time; f = pathlib.Path(sys.argv[sys.argv.index('-o') + 1]); "
            "(f / 'timeseries.csv').write_text('time_s,cycle,step\\n0,1,0\\n7200,1,12\\n'); time.sleep(1.5); "
            "(f / 'summary.json').write_text(json.dumps({'status': 'completed'}))")
    _fake_run(monkeypatch, slow)
    assert sweepmod.run_sweep(_args(sw, tmp_path / "out", progress_every=0.3)) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("sweep ")]
    assert lines and "0 of 1 done; running: 000_n=3.0 cycle 1/1, step 12, t = 2.0 h" in lines[-1]
    # and none with progress_every = 0
    _fake_run(monkeypatch, slow.replace("time.sleep(1.5)", "time.sleep(0.5)"))
    assert sweepmod.run_sweep(_args(sw, tmp_path / "out2", progress_every=0)) == 0
    assert not [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("sweep ")]
