"""scripts/screening.py (table and design map of the screening sweep) on synthetic case folders: no
simulation. The expected numbers are the ones written into the synthetic files (and Norton's law)."""

import importlib.util
import json
import math
import tomllib
from pathlib import Path

import pytest

from creep_cathode.output import CSVTable

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("screening", ROOT / "scripts" / "screening.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _case(root: Path, name, material, *, dv, th, creep=None, fw_E=100e9, top="roller", status="completed",
          contact=((0.5, 0.1), (0.6, 0.3)), risk=(0.0, 0.25), vm=(0.1e9, 0.08e9), peak=2e9, bound=None,
          prox=(1e-5, 2e-4), prox_ends=1e-4):
    """A case folder as `creep-cathode sweep` leaves it: config.toml, summary.json, cycles.csv,
    timeseries.csv. contact: per cycle (lithiated, delithiated) of contact_AM_any; risk: fracture_risk_AM
    at two steps; vm: mean von Mises of AM at the end of the first and last lithiation; prox: the proximal
    energy ratio at the two steps; prox_ends: at the cycle ends (cycles.csv)."""
    f = root / name
    f.mkdir(parents=True)
    top_toml = '"roller"' if top == "roller" else f"{{ pressure = {top} }}"
    cr = "" if not creep else "creep = { " + ", ".join(f"{k} = {v!r}" for k, v in creep.items()) + " }\n"
    (f / "config.toml").write_text(
        f'[boundary]\ntop = {top_toml}\n[cycling]\ntemperature = 343.15\n'
        f'[materials.AM]\nactive = true\nyoungs_modulus = 10e9\npoisson_ratio = 0.3\n'
        f'volume_ratio_lithiated = {1 + dv!r}\nsource = "library {material}: test"\n{cr}'
        f'[materials.FW]\nactive = false\nyoungs_modulus = {fw_E!r}\npoisson_ratio = 0.3\nsource = "library Mo6Se8: x"\n')
    tomllib.loads((f / "config.toml").read_text())  # valid TOML
    desc = {"volume_change": dv, "homologous_temperature": th, "creeps": creep is not None}
    if bound:
        desc["homologous_temperature_bound"] = bound
    (f / "summary.json").write_text(json.dumps({"status": status, "wall_time_s": 120.0,
                                                "descriptors": {"phases": {"AM": desc}}}))
    rows = []
    for c, (lit, delit) in enumerate(contact, start=1):
        for state, v in (("lithiated", lit), ("delithiated", delit)):
            rows.append({"cycle": c, "state": state, "time_s": c, "contact_AM_any": v, "contact_FW_AM": 0.9 * v,
                         "vm_mean_AM_Pa": vm[0] if c == 1 else vm[1], "vm_max_AM_Pa": 1e8, "vm_max_FW_Pa": peak,
                         "vm_mean_FW_Pa": 1e8, "fracture_risk_AM": risk[1], "fracture_risk_FW": float("nan"),
                         "porosity": 0.1, "height_change": 0.02, "proximal_energy_ratio": prox_ends})
    CSVTable(f / "cycles.csv", rows).flush()
    ts = [{"time_s": 0.0, "cycle": 1, "theta_AM": 0.0, "contact_AM_any": 0.0, "vm_mean_AM_Pa": 0.0, "vm_max_AM_Pa": 0.0, "vm_mean_FW_Pa": 0.0, "vm_max_FW_Pa": 0.0,
           "fracture_risk_AM": risk[0], "fracture_risk_FW": float("nan"), "proximal_energy_ratio": prox[0]},
          {"time_s": 1.0, "cycle": len(contact), "theta_AM": 0.5, "contact_AM_any": contact[-1][0], "vm_mean_AM_Pa": 1e8, "vm_max_AM_Pa": 3e8, "vm_mean_FW_Pa": 1e8, "vm_max_FW_Pa": peak,
           "fracture_risk_AM": risk[1], "fracture_risk_FW": float("nan"), "proximal_energy_ratio": prox[1]}]
    CSVTable(f / "timeseries.csv", ts).flush()
    return f


@pytest.fixture
def sweep(tmp_path):
    se_creep = {"A": 2e-8, "n": 6.5, "sigma_ref": 100e6, "Q": 0.0, "T_ref": 343.15}
    _case(tmp_path, "000_active=Se_framework=100GPa_top=roller", "Se", dv=0.98, th=0.69, creep=se_creep,
          contact=((0.7, 0.4), (0.8, 0.5)), vm=(0.2e9, 0.1e9), peak=0.6e9, risk=(0.0, 0.5))
    _case(tmp_path, "001_active=FeS_framework=22GPa_top=100MPa", "FeS", dv=1.0, th=0.23, fw_E=22e9, top=100e6,
          contact=((0.4, 0.0), (0.4, 0.0)), peak=13e9, risk=(0.0, 1.0), prox=(3.0, 0.5), prox_ends=0.5)
    _case(tmp_path, "002_active=HE-PBA_framework=100GPa_top=roller", "HE-PBA", dv=0.005, th=float("nan"),
          contact=((0.0, 0.0), (0.0, 0.0)), peak=0.1e9, risk=(0.0, 0.0))
    _case(tmp_path, "003_active=LiCoO2_framework=100GPa_top=roller", "LiCoO2", dv=0.02, th=0.3, bound="upper",
          status="failed", contact=((0.01, 0.0),))
    return tmp_path


def test_records_from_case_folders(sweep):
    s = _script()
    recs = {r["material"]: r for r in (s.case_record(f) for f in s.case_folders(sweep))}
    assert set(recs) == {"Se", "FeS", "HE-PBA", "LiCoO2"}
    se, fes = recs["Se"], recs["FeS"]
    assert se["contact_lithiated_first"] == 0.7 and se["contact_lithiated_last"] == 0.8
    assert se["contact_delithiated_last"] == 0.5  # end of the last delithiation
    assert se["fw_covered_last"] == pytest.approx(0.72)
    assert se["peak_vm_GPa"] == pytest.approx(0.6) and fes["peak_vm_GPa"] == pytest.approx(13.0)
    assert se["fracture_risk_active_max"] == 0.5 and math.isnan(se["fracture_risk_framework_max"])
    assert se["fracture_risk_active_lithiated_last"] == 0.5 == se["fracture_risk_active_delithiated_last"]
    assert se["norton_rate_1_s"] == pytest.approx(2e-8 * 2.0 ** 6.5)  # A (sigma/sigma_ref)^n at 200 MPa
    assert fes["norton_rate_1_s"] == 0.0 and not fes["creeps"] and se["creeps"]
    assert fes["framework_E_GPa"] == pytest.approx(22.0) and fes["top"] == "100 MPa" and se["top"] == "roller"
    assert se["volume_change"] == 0.98 and se["homologous_temperature"] == 0.69 and se["cycles"] == 2
    assert math.isnan(recs["HE-PBA"]["homologous_temperature"])
    assert recs["LiCoO2"]["status"] == "failed" and recs["LiCoO2"]["homologous_temperature_bound"] == "upper"
    assert recs["LiCoO2"]["reached"] == "cycle 1, theta 0.50" and recs["LiCoO2"]["contact_last_step"] == 0.01
    assert se["proximal_ratio_max"] == 2e-4 and fes["proximal_ratio_max"] == 3.0  # largest of any step
    assert se["proximal_ratio_states_max"] == 1e-4 and fes["proximal_ratio_states_max"] == 0.5  # of the cycle ends
    assert se["proximal_tolerance"] == 1e-3  # the config's default
    assert se["height_change_last"] == 0.02


def test_norton_rate_arrhenius():
    s = _script()
    c = {"A": 1e-6, "n": 3.0, "sigma_ref": 1e8, "Q": 50e3, "T_ref": 300.0}
    assert s.norton_rate(c, 2e8, 300.0) == pytest.approx(8e-6)
    assert s.norton_rate(c, 2e8, 350.0) == pytest.approx(8e-6 * math.exp(-50e3 / 8.314462618 * (1 / 350 - 1 / 300)))
    assert s.norton_rate(None, 2e8, 300.0) == 0.0


def test_table_and_map_written(sweep):
    s = _script()
    assert s.main([str(sweep)]) == 0
    md = (sweep / "screening.md").read_text()
    lines = md.strip().splitlines()
    assert len(lines) == 2 + 4 and lines[0].count("|") == len(s.COLUMNS) + 1
    se = next(line for line in lines if line.startswith("| Se "))
    assert "| 98.0 % |" in se and "| 0.69 |" in se and "| 80.0 % | 50.0 % |" in se  # dV, T/T_m, last contacts
    lco = next(line for line in lines if line.startswith("| LiCoO2 "))
    assert "≤ 0.30" in lco and "| failed (cycle 1, theta 0.50) |" in lco and "| no creep |" in lco
    assert "| — |" in next(line for line in lines if line.startswith("| HE-PBA "))  # no T_m
    fes = next(line for line in lines if line.startswith("| FeS "))
    assert "| 22 | 100 MPa | completed |" in fes and "| 2.0 % | 3 |" in fes  # top side; box height, proximal ratio
    rows = CSVTable.read(sweep / "screening.csv")
    assert [r["material"] for r in rows] == ["Se", "FeS", "HE-PBA", "LiCoO2"]
    png = (sweep / "design_map.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_missing_folder_is_exit_2(tmp_path, capsys):
    assert _script().main([str(tmp_path / "nope")]) == 2
    assert "no such sweep folder" in capsys.readouterr().err


def test_shipped_sweep_is_material_x_framework_x_stack_pressure():
    """configs/sweep_screening.toml is the issue's sweep: the five active materials x two framework stiffnesses x
    rollers / a top-side pressure, every case at the same composition (only the swept keys differ)."""
    from creep_cathode.sweep import load_sweep

    sw = load_sweep(ROOT / "configs" / "sweep_screening.toml")
    cases = sw["cases"]
    assert len(cases) == 5 * 2 * 2
    mats = {c["config"].materials["AM"].source.split(":")[0] for c in cases}
    assert mats == {f"library {m}" for m in ("Se", "FeS", "LiCoO2", "HE-NASICON", "HE-PBA")}
    assert {c["config"].materials["FW"].youngs_modulus for c in cases} == {100e9, 22e9}
    tops = {c["config"].boundary.kind("top") for c in cases}
    assert tops == {"roller", "pressure"}
    assert {c["config"].boundary.top.pressure for c in cases if c["config"].boundary.kind("top") == "pressure"} == {10e6}
    assert len({(c["config"].rve.fractions["AM"], c["config"].rve.fractions["FW"], c["config"].rve.seed)
                for c in cases}) == 1  # equal composition and packing
    # the index rule the README gives: I = 4 x active + 2 x framework + top
    assert cases[1]["name"] == "001_active=Se_framework=100GPa_top=10MPa"
    assert cases[9]["name"] == "009_active=LiCoO2_framework=100GPa_top=10MPa"
