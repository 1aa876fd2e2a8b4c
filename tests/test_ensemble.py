"""Ensemble statistics on synthetic inputs (issue 14): known means and 95 % intervals."""

import math

import pytest

from creep_cathode.ensemble import mean_ci, plot_bands, summarise, t_quantile


def test_t_quantiles_are_students():
    # tabulated two-sided 95 % values of Student's t
    for n, t in ((2, 12.7062), (3, 4.3027), (5, 2.7764), (10, 2.2622), (31, 2.0423)):
        assert t_quantile(n) == pytest.approx(t, abs=1e-4)
    assert math.isnan(t_quantile(1))


def test_mean_and_interval_of_known_samples():
    m, h, n = mean_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    s = math.sqrt(2.5)  # sample standard deviation of 1..5
    assert (m, n) == (3.0, 5) and h == pytest.approx(2.7764 * s / math.sqrt(5), rel=1e-4)
    m, h, n = mean_ci([2.0, 2.0, 2.0])
    assert (m, h, n) == (2.0, 0.0, 3)
    m, h, n = mean_ci([7.0, float("nan"), "x"])
    assert (m, n) == (7.0, 1) and math.isnan(h)


def test_summarise_per_cycle_and_state(tmp_path):
    """Three packings; the third stopped after cycle 1: cycle 2 has n = 2."""
    def rows(a, b):
        return [{"cycle": 1, "state": "lithiated", "contact_Se_Se": a, "vm_mean_Se_Pa": 1e8},
                {"cycle": 1, "state": "delithiated", "contact_Se_Se": a / 2, "vm_mean_Se_Pa": 2e7},
                {"cycle": 2, "state": "lithiated", "contact_Se_Se": b, "vm_mean_Se_Pa": 9e7}]
    runs = [rows(0.5, 0.6), rows(0.6, 0.8), rows(0.7, 0.7)[:2]]
    out = summarise(runs)
    assert [(r["cycle"], r["state"]) for r in out] == [(1, "lithiated"), (1, "delithiated"), (2, "lithiated")]
    assert out[0]["contact_Se_Se_mean"] == pytest.approx(0.6) and out[0]["contact_Se_Se_n"] == 3
    assert out[0]["contact_Se_Se_ci95"] == pytest.approx(4.3027 * 0.1 / math.sqrt(3), rel=1e-4)
    assert out[2]["contact_Se_Se_n"] == 2 and out[2]["contact_Se_Se_mean"] == pytest.approx(0.7)
    assert out[2]["contact_Se_Se_ci95"] == pytest.approx(12.7062 * math.sqrt(0.02) / math.sqrt(2), rel=1e-4)
    assert out[1]["vm_mean_Se_Pa_ci95"] == 0.0
    files = plot_bands(out, tmp_path)
    assert [f.name for f in files] == ["ensemble_contact.png", "ensemble_stress.png"]
