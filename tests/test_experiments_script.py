"""scripts/experiments.py: the pressed reference of a stack-pressure run is the end of the first rest,
not a later return to theta = 0 (a full delithiation)."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "experiments.py"


def _module():
    spec = importlib.util.spec_from_file_location("experiments_script", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_pressed_reference_is_the_end_of_the_first_rest():
    rows = [{"time_s": 0, "theta_A": 0.0, "height_change": 0.0},
            {"time_s": 30, "theta_A": 0.0, "height_change": -0.02},
            {"time_s": 60, "theta_A": 0.0, "height_change": -0.03},   # end of the first rest
            {"time_s": 90, "theta_A": 0.5, "height_change": 0.10},
            {"time_s": 120, "theta_A": 0.0, "height_change": 0.04},   # fully delithiated
            {"time_s": 180, "theta_A": 0.0, "height_change": 0.038}]  # the next cycle's rest
    assert _module().pressed_reference(rows)["time_s"] == 60
    assert _module().pressed_reference(rows[:1] + rows[3:]) is None  # no rest before lithiation


def test_a_state_held_by_the_proximal_term_is_not_in_equilibrium():
    """A cycle-end state whose proximal / stored energy exceeds 10x the run's proximal tolerance (the
    screening's flag) is marked; a run without the column is taken as it is."""
    m = _module()
    assert m.equilibrium_flag(Path("/nonexistent")) == 1e-2
    assert m.in_equilibrium({"proximal_energy_ratio": 7.2e-3})
    assert not m.in_equilibrium({"proximal_energy_ratio": 58.6})
    assert m.in_equilibrium({"proximal_energy_ratio": ""}) and m.in_equilibrium({})


def test_rest_ends_are_the_last_steps_that_keep_theta():
    """The first rest's end is the pressed reference; a rest at the start of a later cycle, after a
    delithiation, is the electrode pressed again."""
    th = [0.0, 0.0, 0.0, 0.5, 1.0, 0.5, 0.0, 0.0, 0.0, 0.5]
    rows = [{"time_s": 30 * i, "cycle": 1 if i < 7 else 2, "theta_A": t} for i, t in enumerate(th)]
    assert [r["time_s"] for r in _module().rest_ends(rows)] == [60, 240]
    # a run that stopped inside a rest: that rest has not ended (finished=False); a completed run's
    # last rest has
    stopped = rows[:8]
    assert [r["time_s"] for r in _module().rest_ends(stopped, finished=False)] == [60]
    assert [r["time_s"] for r in _module().rest_ends(stopped)] == [60, 210]
