"""Config validation: every kind of error gives one line naming the key (no DOLFINx needed)."""

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from creep_cathode.config import ConfigError, apply_overrides, load_config, load_toml, physics_hash, to_toml, validate
from creep_cathode.protocol import parse_step, schedule, parse_protocol, ProtocolError

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "configs" / "se_mse.toml"


def base() -> dict:
    return load_toml(BASE)


@pytest.mark.parametrize("name", ["se_mse.toml", "lco_mse.toml", "fes_mse.toml"])
def test_shipped_configs_valid(name):
    cfg = load_config(ROOT / "configs" / name)
    assert cfg.rve.kind == "random"
    # the paper's composition (Se-MSe): 35.6 % + 39.7 % solid, 24.7 % pores
    assert sum(cfg.rve.fractions.values()) == pytest.approx(1 - 0.247)


@pytest.mark.parametrize("name,base_name,p", [("se_mse_stack100.toml", "se_mse.toml", 100e6),
                                               ("se_mse_stack10.toml", "se_mse.toml", 10e6),
                                               ("fes_mse_stack100.toml", "fes_mse.toml", 100e6),
                                               ("fes_mse_stack10.toml", "fes_mse.toml", 10e6)])
def test_stack_pressure_configs_are_their_base_plus_pressure(name, base_name, p):
    """The stack-pressure configs (Xiong 2024, Methods: ~100 MPa lab cell, ~10 MPa pouch cell) are
    their rollers config with a pressure on the top side and a rest that applies it first."""
    cfg, ref = load_config(ROOT / "configs" / name), load_config(ROOT / "configs" / base_name)
    assert cfg.boundary.kind("top") == "pressure" and cfg.boundary.top.pressure == p
    assert all(cfg.boundary.kind(s) == "roller" for s in ("left", "right", "bottom"))
    assert cfg.cycling.protocol == ["Rest for 1 min", *ref.cycling.protocol]
    a, b = cfg.model_dump(), ref.model_dump()
    for d in (a, b):
        d.pop("boundary")
        d["cycling"].pop("protocol")
    assert a == b


def test_roundtrip_normalised_toml():
    cfg = load_config(BASE)
    again = validate(tomllib.loads(to_toml(cfg)))
    assert again == cfg
    assert physics_hash(again) == physics_hash(cfg)


def test_overrides():
    cfg = load_config(BASE, ["rve.seed=3", "rve.kind=block", "rve.phase=Se",
                             'cycling.protocol=["Lithiate at 1C", "Rest for 2 hours"]', "boundary.top={pressure=1e6}"])
    assert cfg.rve.seed == 3 and cfg.rve.kind == "block" and cfg.rve.phase == "Se"
    assert cfg.cycling.protocol == ["Lithiate at 1C", "Rest for 2 hours"]
    assert cfg.boundary.top.pressure == 1e6
    assert physics_hash(cfg) != physics_hash(load_config(BASE))
    # output settings do not change the physics hash
    assert physics_hash(load_config(BASE, ["output.fields=none"])) == physics_hash(load_config(BASE))
    # a citation is not physics: editing it does not block --resume
    assert physics_hash(load_config(BASE, ['materials.Se.source="another citation"'])) == physics_hash(load_config(BASE))
    # the creep integrator changes the answer
    assert physics_hash(load_config(BASE, ["solver.creep_integrator=backward_euler"])) != physics_hash(load_config(BASE))


BAD = [
    # (overrides, expected fragment)
    (["foo.bar=1"], "foo: unknown key"),
    (["rve.colour=1"], "rve.colour: unknown key"),
    (["materials.Se.density=1"], "materials.Se.density: unknown key"),
    (["rve.kind=hexagonal"], "rve.kind"),
    (["rve.width=-1"], "rve.width"),
    (["rve.height=0"], "rve.height"),
    (["rve.width=nan"], "rve.width"),
    (["rve.mesh_size=inf"], "rve.mesh_size"),
    (["rve.mesh_size=1e-9"], "too small for the RVE"),
    (["rve.mesh_size=30e-6"], "rve.mesh_size"),
    (["rve.seed=-2"], "rve.seed"),
    (['rve.seed="x"'], "rve.seed"),
    (["rve.min_gap=-1e-9"], "rve.min_gap"),
    (["rve.min_gap=3e-6"], "rve.min_gap"),
    (["rve.fractions.Se=1.5"], "rve.fractions.Se"),
    (["rve.fractions.Se=0"], "rve.fractions.Se"),
    (["rve.fractions.Se=0.7"], "sum to < 1"),
    (["rve.size.Se.mean_diameter=-5e-6"], "rve.size.Se.mean_diameter"),
    (["rve.size.Se.cv=-0.1"], "rve.size.Se.cv"),
    (["rve.fractions.LCO=0.1"], "rve.size.LCO"),
    (["rve.kind=block"], "rve.phase"),
    (["rve.kind=particles"], "rve.particles"),
    (["rve.kind=block", "rve.phase=Cu"], "materials.Cu"),
    (["materials.Se.youngs_modulus=-10e9"], "materials.Se.youngs_modulus"),
    (["materials.Se.youngs_modulus=0"], "materials.Se.youngs_modulus"),
    (["materials.Se.poisson_ratio=0.5"], "materials.Se.poisson_ratio"),
    (["materials.Se.poisson_ratio=-1"], "materials.Se.poisson_ratio"),
    (['materials.Se.poisson_ratio="abc"'], "materials.Se.poisson_ratio"),
    (["materials.Se.volume_ratio_lithiated=0"], "materials.Se.volume_ratio_lithiated"),
    (["materials.Se.creep.n=0.5"], "materials.Se.creep.n"),
    (["materials.Se.creep.A=-1"], "materials.Se.creep.A"),
    (["materials.Se.creep.sigma_ref=0"], "materials.Se.creep.sigma_ref"),
    (["materials.Se.lithiated.poisson_ratio=0.7"], "materials.Se.lithiated.poisson_ratio"),
    (["materials.MSe.volume_ratio_lithiated=1.5"], "only active materials swell"),
    (["boundary.top=sticky"], "boundary.top"),
    (["boundary.top={pressure=nan}"], "boundary.top"),
    (["boundary.left=free", "boundary.right=free"], "at least one roller"),
    (['cycling.protocol=["Lithiate at zero"]'], "Lithiate at zero"),
    (['cycling.protocol=["Lithiate at 0.1C to 1.5"]'], "target state of lithiation"),
    (['cycling.protocol=["Rest for -2 hours"]'], "Rest for -2 hours"),
    (["cycling.protocol=[]"], "protocol is empty"),
    (["cycling.cycles=0"], "cycling.cycles"),
    (["cycling.temperature=-5"], "cycling.temperature"),
    (["solver.element_degree=3"], "solver.element_degree"),
    (["solver.dt_min=10", "solver.dt_max=1"], "dt_min"),
    (["output.fields=sometimes"], "output.fields"),
    (["contact.tolerance=-1"], "contact.tolerance"),
]


@pytest.mark.parametrize("ovs,fragment", BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_config_one_line(ovs, fragment):
    with pytest.raises(ConfigError) as e:
        validate(apply_overrides(base(), ovs))
    msg = str(e.value)
    assert fragment in msg
    assert "\n" not in msg


def test_missing_sections_and_files(tmp_path):
    d = base()
    del d["materials"]
    with pytest.raises(ConfigError, match="materials: required key missing"):
        validate(d)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    (tmp_path / "bad.toml").write_text("[rve\nkind = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


def test_cli_check_bad_config_exit_code_no_traceback(tmp_path):
    exe = [sys.executable, "-m", "creep_cathode.cli"]
    ok = subprocess.run(exe + ["check", str(BASE)], capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr
    assert "[materials.Se]" in ok.stdout
    bad = subprocess.run(exe + ["check", str(BASE), "--set", "rve.fractions.Se=2"], capture_output=True, text=True,
                         cwd=ROOT)
    assert bad.returncode == 2
    assert "rve.fractions.Se" in bad.stderr
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


# ------------------------------------------------------------------ protocol
def test_protocol_parse_and_schedule():
    st = parse_protocol(["Lithiate at 0.1C", "Delithiate at 0.1C to 0.22", "Lithiate at 2C to 0.5",
                         "Rest for 2 hours", "Rest for 30 min"])
    assert [s.kind for s in st] == ["lithiate", "delithiate", "lithiate", "rest", "rest"]
    segs = schedule(st, cycles=2)
    # full 0 -> 1 at 0.1 C takes 10 h
    assert segs[0].t1 - segs[0].t0 == pytest.approx(36000.0)
    # 1 -> 0.22 at 0.1 C: 7.8 h
    assert segs[1].t1 - segs[1].t0 == pytest.approx(0.78 * 36000.0)
    # 0.22 -> 0.5 at 2 C: 0.28 / 2 h
    assert segs[2].t1 - segs[2].t0 == pytest.approx(0.28 / 2 * 3600.0)
    assert segs[3].t1 - segs[3].t0 == pytest.approx(7200.0)
    assert segs[4].t1 - segs[4].t0 == pytest.approx(1800.0)
    assert segs[5].cycle == 2 and segs[5].theta0 == pytest.approx(0.5)
    assert segs[2].theta(segs[2].t0 + 0.5 * (segs[2].t1 - segs[2].t0)) == pytest.approx(0.36)


@pytest.mark.parametrize("bad", ["Lithiate", "Lithiate at C", "Charge at 1C", "Rest for two hours",
                                 "Lithiate at 0C", "Rest for 2 fortnights"])
def test_protocol_bad_steps(bad):
    with pytest.raises(ProtocolError, match="step"):
        parse_step(bad)


def test_config_reference_is_current():
    """docs/config.md is generated from the schema: regenerate with `python -m solver.config > docs/config.md`."""
    from creep_cathode.config import config_reference

    assert (ROOT / "docs" / "config.md").read_text().strip() == config_reference().strip()
