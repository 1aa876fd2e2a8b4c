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
