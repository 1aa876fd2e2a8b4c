"""Fracture-risk indicator (creep_cathode.fracture, metrics.FractureRisk): maximum principal stress
against closed forms, the area share over a stub mechanics with known stresses, the strength's
sources (config, library linear in theta, none -> NaN), and one short block run whose hydrostatic
stress is known in closed form (rollers all round: sigma = -K ln J_l(theta))."""

import math
from pathlib import Path

import numpy as np
import pytest
from mpi4py import MPI

from creep_cathode import metrics
from creep_cathode.config import ConfigError, validate
from creep_cathode.fracture import Strength, exceeding_share, max_principal, phase_strengths
from creep_cathode.library import get_entry
from creep_cathode.output import CSVTable


# ---------------------------------------------------------------- max principal stress
def _rotated(a, b, phi, s33):
    """[11, 22, 12, 33] of principal in-plane stresses a, b rotated by phi."""
    c, s = math.cos(phi), math.sin(phi)
    return [a * c * c + b * s * s, a * s * s + b * c * c, (a - b) * s * c, s33]


@pytest.mark.parametrize("a,b,s33", [(3.0, -1.0, 0.5), (-2.0, -5.0, -3.0), (1.0, 1.0, 4.0), (-1.0, 2.0, 2.0)])
@pytest.mark.parametrize("phi", [0.0, 0.3, math.pi / 4, 2.0])
def test_max_principal_of_a_rotated_state(a, b, s33, phi):
    assert max_principal(np.array([_rotated(a, b, phi, s33)]))[0] == pytest.approx(max(a, b, s33), abs=1e-12)


def test_max_principal_pure_shear_and_uniaxial():
    s = max_principal(np.array([[0.0, 0.0, 7.0, 0.0], [-4.0, 0.0, 0.0, -1.0], [0.0, 0.0, 0.0, -2.0]]))
    assert s == pytest.approx([7.0, 0.0, 0.0])  # shear tau -> +tau; uniaxial compression -> 0 (the free direction)


def test_exceeding_share_is_strict_and_weighted():
    s1 = np.array([1.0, 2.0, 3.0, 4.0])
    w = np.array([1.0, 2.0, 3.0, 4.0])
    assert exceeding_share(s1, w, 2.0) == pytest.approx(7 / 10)  # 3 and 4 exceed; 2 does not (strict)
    assert exceeding_share(s1, w, 2.0, MPI.COMM_WORLD) == pytest.approx(7 / 10)  # same arrays on every rank
    assert math.isnan(exceeding_share(s1[:0], w[:0], 0.0))


# ---------------------------------------------------------------- strengths
def _cfg(materials, phases):
    parts = [{"phase": p, "center": [2e-6 + 5e-6 * i, 3e-6], "radius": 1.5e-6} for i, p in enumerate(phases)]
    return validate({"rve": {"kind": "particles", "width": 6e-6 * len(phases), "height": 6e-6, "mesh_size": 1e-6,
                             "particles": parts}, "materials": materials})


ELASTIC = {"youngs_modulus": 10e9, "poisson_ratio": 0.3}
MATS = {"A": {**ELASTIC, "strength": 100e6},                  # config strength
        "B": {"use": "Se"},                                    # library: Se -> Li2Se, linear in theta
        "C": dict(ELASTIC),                                    # neither: NaN
        "D": {"use": "Se", "strength": 30e6}}                  # config overrides the library


def test_strength_sources():
    se = get_entry("Se")
    s = phase_strengths(_cfg(MATS, ["A", "B", "C", "D"]))
    assert s["A"] == Strength(100e6, 100e6, "config")
    assert s["B"] == Strength(se.value("strength"), se.value("lithiated", "strength"), "library Se")
    assert s["B"].at(0.25) == pytest.approx(0.75 * se.value("strength") + 0.25 * se.value("lithiated", "strength"))
    assert s["C"] is None
    assert s["D"] == Strength(30e6, 30e6, "config")


def test_config_strength_is_reported_in_the_descriptors():
    from creep_cathode.descriptors import descriptors_for_config

    d = descriptors_for_config(_cfg(MATS, ["A", "B", "D"]))["phases"]
    assert d["A"]["strength_config_Pa"] == 100e6 and d["D"]["strength_config_Pa"] == 30e6
    assert "strength_config_Pa" not in d["B"] and d["B"]["strength_Pa"] == get_entry("Se").value("strength")


def test_strength_config_key_is_checked():
    with pytest.raises(ConfigError, match=r"^materials\.A\.strength: "):
        _cfg({"A": {**ELASTIC, "strength": -1.0}}, ["A"])


# ---------------------------------------------------------------- the metric over a stub mechanics
class StubMechanics:
    """What FractureRisk reads: cfg, phases, qphase, Cauchy stress per point (model units), S0, the
    reference area weights wdet and the area ratio J per point, comm."""

    def __init__(self, cfg, qphase, sig, wdet, J, S0=1e9):
        self.cfg, self.phases = cfg, list(cfg.used_materials())
        self.qphase, self.sig_q, self.wdet, self.J_q = np.asarray(qphase), np.asarray(sig) / S0, np.asarray(wdet), np.asarray(J)
        self.S0, self.comm = S0, MPI.COMM_SELF


def test_fracture_risk_metric_over_known_stresses():
    MPa = 1e6
    cfg = _cfg(MATS, ["A", "B", "C", "D"])
    se = get_entry("Se")
    theta = {"A": 0.0, "B": 0.5, "C": 0.0, "D": 0.9}
    sB = 0.5 * (se.value("strength") + se.value("lithiated", "strength"))  # library, at theta = 0.5
    pts = [  # (phase index, [11, 22, 12, 33] Pa, reference weight, J)
        (0, _rotated(150 * MPa, -10 * MPa, 0.4, 0.0), 1.0, 1.0),   # A: above 100 MPa
        (0, [50 * MPa, 50 * MPa, 0.0, 50 * MPa], 2.0, 1.0),        # A: below
        (0, [-300 * MPa, -300 * MPa, 0.0, 120 * MPa], 1.5, 2.0),   # A: above through sigma_33; deformed weight 3
        (1, [0.0, 0.0, 1.01 * sB, 0.0], 1.0, 1.0),                 # B: shear just above the interpolated strength
        (1, [0.0, 0.0, 0.99 * sB, 0.0], 3.0, 1.0),                 # B: just below
        (2, [1e3 * MPa, 0.0, 0.0, 0.0], 1.0, 1.0),                 # C: no strength, whatever the stress
        (3, [0.0, 31 * MPa, 0.0, 0.0], 1.0, 0.5),                  # D: above its config 30 MPa (not Se's)
        (3, [0.0, 29 * MPa, 0.0, 0.0], 1.0, 0.5),
    ]
    q, sig, w, J = zip(*pts)
    mech = StubMechanics(cfg, q, sig, w, J)
    probe = metrics.Probe(mech, tolerance=0.0, time=0.0, cycle=1, step=0, theta=theta)
    risk = metrics.FractureRisk()
    assert [c.name for c in risk.columns(mech.phases)] == [f"fracture_risk_{p}" for p in "ABCD"]
    out = risk.compute(probe)
    assert out["fracture_risk_A"] == pytest.approx((1.0 + 3.0) / (1.0 + 2.0 + 3.0))
    assert out["fracture_risk_B"] == pytest.approx(1.0 / 4.0)
    assert math.isnan(out["fracture_risk_C"])
    assert out["fracture_risk_D"] == pytest.approx(0.5)
    # registered: part of every timeseries/cycles row
    assert any(isinstance(m, metrics.FractureRisk) for m in metrics.METRICS)
    assert "fracture_risk_A" in [c.name for c in metrics.columns(mech.phases)]


# ---------------------------------------------------------------- one short real run
def test_block_in_hydrostatic_tension_crosses_the_library_strength(tmp_path):
    """Rollers on all sides, an active phase that shrinks on lithiation (J_l,max = 0.998): F = I, so
    sigma = -K ln J_l(theta) I (hydrostatic tension, 33 included). Phase named Se, no config
    strength: the library's Se -> Li2Se strength, linear in theta, sets the threshold; each row's
    risk is 1 where sigma > strength(theta), else 0."""
    from creep_cathode.simulation import Simulation, prepare_outdir

    E, nu, jmax = 10e9, 0.32, 0.998
    K = E / (3 * (1 - 2 * nu))
    se = get_entry("Se")
    s0, s1 = se.value("strength"), se.value("lithiated", "strength")
    cfg = validate({"rve": {"kind": "block", "phase": "Se", "width": 4e-6, "height": 4e-6, "mesh_size": 1e-6},
                    "materials": {"Se": {"active": True, "youngs_modulus": E, "poisson_ratio": nu,
                                         "volume_ratio_lithiated": jmax}},
                    "cycling": {"protocol": ["Lithiate at 1C"], "cycles": 1},
                    "solver": {"max_theta_increment": 0.1},
                    "output": {"fields": "none", "plots": False, "progress": False}})
    prepare_outdir(tmp_path, cfg)
    s = Simulation(cfg, tmp_path).initialise().run()
    assert s["status"] == "completed", s.get("reason")
    ts = CSVTable.read(Path(tmp_path) / "timeseries.csv")
    seen = set()
    for r in ts:
        th = r["theta_Se"]
        sigma, strength = -K * math.log(1 + (jmax - 1) * th), s0 + (s1 - s0) * th
        if abs(sigma - strength) < 0.02 * strength:
            continue  # too close to call at the solver's tolerance
        expected = 1.0 if sigma > strength else 0.0
        assert r["fracture_risk_Se"] == pytest.approx(expected, abs=1e-12), (th, sigma, strength)
        seen.add(expected)
    assert seen == {0.0, 1.0}  # the run crosses the threshold: both answers checked
    cyc = CSVTable.read(Path(tmp_path) / "cycles.csv")
    assert cyc[-1]["state"] == "lithiated" and cyc[-1]["fracture_risk_Se"] == pytest.approx(1.0)
