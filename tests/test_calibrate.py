"""scripts/calibrate.py: the objective against the paper's Fig. 4 numbers, and reuse of finished runs."""

import importlib.util
import json
import math
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("calibrate", ROOT / "scripts" / "calibrate.py")
calibrate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(calibrate)


def _row(cycle, **v):
    return {"cycle": cycle, "state": "lithiated", **v}


def test_objective_is_zero_at_the_paper_and_rms_otherwise():
    paper = {1: dict(contact_Se_Se=0.705, contact_MSe_Se=0.670, vm_mean_Se_Pa=0.099e9, vm_mean_MSe_Pa=0.171e9),
             20: dict(contact_Se_Se=0.844, contact_MSe_Se=0.795, vm_mean_Se_Pa=0.067e9, vm_mean_MSe_Pa=0.156e9)}
    rows = [_row(c, contact_Se_MSe=0.3, **v) for c, v in paper.items()]  # Se boundary: not the paper's
    J, detail = calibrate.objective(rows, 20)
    assert J == 0.0 and len(detail) == 8
    assert "contact_Se_MSe@1" not in detail and "contact_MSe_Se@1" in detail
    off = [_row(c, **{k: 1.1 * x for k, x in v.items()}) for c, v in paper.items()]  # every number 10 % high
    assert math.isclose(calibrate.objective(off, 20)[0], 0.1, rel_tol=1e-12)
    assert calibrate.objective(off[:1], 1)[1].keys() == {f"{k}@1" for k in paper[1]}  # one cycle: its 4 targets


def test_paper_se_mse_ratio_cannot_be_on_the_se_boundary():
    """Se -> Se + Se -> MSe <= 100 %: the paper's Se-Se and Se-MSe add up to more, so Se-MSe is MSe -> Se."""
    P = calibrate.PAPER
    for c in (1, 20):
        assert P["contact_Se_Se"][c] + P["contact_MSe_Se"][c] > 1.0
    assert "contact_Se_MSe" not in P


def test_finished_evaluation_is_reused(tmp_path):
    key = {"config": "c.toml", "overrides": ["materials.Se.creep.A=1.5e-07"]}
    f0 = calibrate._eval_folder(tmp_path, key)
    assert f0.name == "eval_000" and not any(f0.iterdir())
    (f0 / "eval.json").write_text(json.dumps({"key": key, "wall_s": 12.0}))
    f1 = calibrate._eval_folder(tmp_path, {"config": "c.toml", "overrides": ["materials.Se.creep.A=3e-07"]})
    assert f1.name == "eval_001"  # a new point never overwrites an old folder
    assert calibrate._eval_folder(tmp_path, key) == f0
    # the finished run is not launched again (c.toml does not even exist)
    assert calibrate.run_once("c.toml", f0, key["overrides"], "eval.json") == (0, 12.0, "(reused)")


def test_param_spec_with_its_own_number_of_points():
    assert calibrate.parse_param("materials.Se.creep.A=1e-8:1e-6") == ("materials.Se.creep.A", 1e-8, 1e-6, None)
    assert calibrate.parse_param("x=2.5e9:3.5e9:2") == ("x", 2.5e9, 3.5e9, 2)
    for bad in ("x=3:2", "x=1:2:0", "x=1", "x=1:2:3:4"):
        try:
            calibrate.parse_param(bad)
        except SystemExit:
            continue
        raise AssertionError(bad)
    g = calibrate.log_grid(1.875e-8, 7.5e-8, 3)
    assert [f"{v:.6g}" for v in g] == ["1.875e-08", "3.75e-08", "7.5e-08"]  # the keys of reused runs


def test_replicates_are_scored_by_their_mean_numbers():
    """Two packings 10 % high and 10 % low on every number average to the paper: J = 0."""
    paper = {c: {k: v[c] for k, v in calibrate.PAPER.items() if k.endswith(("Se_Se", "_Pa"))} for c in (1, 20)}
    hi = [_row(c, **{k: 1.1 * x for k, x in v.items()}) for c, v in paper.items()]
    lo = [_row(c, **{k: 0.9 * x for k, x in v.items()}) for c, v in paper.items()]
    mean = calibrate.mean_rows([hi, lo])
    assert [r["cycle"] for r in mean] == [1, 20]
    assert math.isclose(calibrate.objective(hi, 20)[0], 0.1, rel_tol=1e-12)
    assert calibrate.objective(mean, 20)[0] < 1e-12
    # a replicate that stopped early: only the cycles every run reached are kept
    assert [r["cycle"] for r in calibrate.mean_rows([hi, lo[:1]])] == [1]
    assert calibrate.objective(calibrate.mean_rows([hi, lo[:1]]), 20)[0] == math.inf


def test_replicate_equal_to_the_config_is_the_plain_run():
    cfg = {"rve": {"seed": 1, "width": 16e-6}}
    assert calibrate.parse_replicate(None, cfg) == [[]]
    assert calibrate.parse_replicate("rve.seed=1,2,3", cfg) == [[], ["rve.seed=2"], ["rve.seed=3"]]
    assert calibrate.parse_replicate("rve.width=16e-6,24e-6", cfg) == [[], ["rve.width=24e-6"]]
    for bad in ("rve.seed=", "=1,2"):
        try:
            calibrate.parse_replicate(bad, cfg)
        except SystemExit:
            continue
        raise AssertionError(bad)
