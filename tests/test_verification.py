"""Verification of the chemo-mechanics core on a `block` RVE against closed forms (DESIGN section 7).

Each expected number is computed here from a closed form, never from a previous run.
"""

import math
import tomllib
from pathlib import Path

import numpy as np
import pytest

from creep_cathode.config import validate
from mpi_runs import run_serial_and_mpi
from creep_cathode.output import CSVTable

ROOT = Path(__file__).resolve().parents[1]

E, NU = 10e9, 0.32
MU = E / (2 * (1 + NU))
LAM = E * NU / ((1 + NU) * (1 - 2 * NU))
K = E / (3 * (1 - 2 * NU))


def block_cfg(*, creep=None, boundary=None, protocol=("Lithiate at 1C",), jmax=1.98, lithiated=None,
              solver=None, cycles=1, size=4e-6, mesh=1e-6, fields="none"):
    mat = {"active": True, "youngs_modulus": E, "poisson_ratio": NU, "volume_ratio_lithiated": jmax}
    if creep:
        mat["creep"] = creep
    if lithiated:
        mat["lithiated"] = lithiated
    d = {
        "rve": {"kind": "block", "phase": "Se", "width": size, "height": size, "mesh_size": mesh},
        "boundary": boundary or {"left": "roller", "right": "roller", "bottom": "roller", "top": "roller"},
        "materials": {"Se": mat},
        "cycling": {"protocol": list(protocol), "cycles": cycles},
        "solver": {"max_theta_increment": 0.25, **(solver or {})},
        "output": {"fields": fields, "plots": False, "progress": False},
    }
    return validate(d)


def run(cfg, out):
    from creep_cathode.simulation import Simulation, prepare_outdir

    prepare_outdir(out, cfg)
    sim = Simulation(cfg, out).initialise()
    s = sim.run()
    assert s["status"] == "completed", s.get("reason")
    return sim, s, CSVTable.read(Path(out) / "timeseries.csv")


FREE = {"left": "roller", "bottom": "roller", "right": "free", "top": "free"}


def test_constrained_swelling_pure_pressure(tmp_path):
    """All sides on rollers: F = I, F_e = J_l^(-1/3) I -> tau = K ln(J_e) I, deviator zero, no creep flow."""
    creep = {"A": 1e-3, "n": 3, "sigma_ref": 100e6}
    sim, s, ts = run(block_cfg(creep=creep), tmp_path)
    last = ts[-1]
    Jl = 1.98
    p_exact = K * math.log(Jl)  # compression
    assert last["pressure_mean_Se_Pa"] == pytest.approx(p_exact, rel=1e-8)
    assert last["s33_mean_Se_Pa"] == pytest.approx(-p_exact, rel=1e-8)
    assert last["vm_max_Se_Pa"] < 1e-8 * p_exact
    assert last["creep_eq_mean_Se"] < 1e-12
    assert last["solid_area_ratio"] == pytest.approx(1.0, abs=1e-12)


def test_free_swelling_plane_strain_closed_form(tmp_path):
    """Left/bottom rollers, no creep: F = diag(a, a, 1), in-plane tau = 0 gives
    ln a = K ln J_l / (2 (lam + mu)) and sigma_33 = (lam tr(ee) - 2 mu ln(J_l)/3) / a^2."""
    Jl = 1.3
    sim, s, ts = run(block_cfg(boundary=FREE, jmax=Jl), tmp_path)
    last = ts[-1]
    lna = K * math.log(Jl) / (2 * (LAM + MU))
    a = math.exp(lna)
    tr = 2 * lna - math.log(Jl)
    s33 = (LAM * tr - 2 * MU * math.log(Jl) / 3) / a**2
    assert last["solid_area_ratio"] == pytest.approx(a**2, rel=1e-9)
    assert last["width_change"] == pytest.approx(a - 1, rel=1e-8)
    assert last["s33_mean_Se_Pa"] == pytest.approx(s33, rel=1e-8)
    assert last["vm_mean_Se_Pa"] == pytest.approx(abs(s33), rel=1e-8)


def _relax_exact(s0, n, A, sref, Emod, t):
    if n == 1:
        return s0 * np.exp(-Emod * A / sref * t)
    return (s0 ** (1 - n) + (n - 1) * Emod * A * sref ** (-n) * t) ** (1 / (1 - n))


@pytest.mark.parametrize("n,A", [(1, 1e-4), (1, 1e-2), (3, 1e-4), (3, 1e-2), (7, 1e-4), (7, 1e-2)])
def test_norton_relaxation_free_block(tmp_path, n, A):
    """Free block lithiated quickly to a small theta, then rested: sigma_33 relaxes as
    sigma(t) = [sigma0^(1-n) + (n-1) E A sigma_ref^(-n) t]^(1/(1-n)) (uniaxial stress in 33 with
    eps_33 = 0; small strain). Long-time limit: the whole volume change goes in-plane (area -> J_l).
    Default solver settings: the creep error control (solver.creep_tolerance) picks the steps, from
    a relaxation time of ~1 s (n = 1, A = 1e-2) to hours (n = 7, A = 1e-4)."""
    sref = 100e6
    jmax = 1.98
    theta = 0.01  # eps_l = 0.98 % volume -> sigma0 ~ E eps_l / 3 ~ 30 MPa
    prot = ["Lithiate at 36C to %g" % theta, "Rest for 4 hours"]  # lithiation takes 1 s
    cfg = block_cfg(creep={"A": A, "n": n, "sigma_ref": sref}, boundary=FREE, protocol=prot, jmax=jmax, solver=None)
    assert cfg.solver == type(cfg.solver)(max_theta_increment=0.25)  # defaults (theta moves 0.01 here)
    sim, s, ts = run(cfg, tmp_path)
    rest = [r for r in ts if r["time_s"] >= 1.0 - 1e-9]
    t0 = rest[0]["time_s"]
    s0 = -rest[0]["s33_mean_Se_Pa"]
    assert s0 > 0
    errs = []
    for r in rest[1:]:
        ex = _relax_exact(s0, n, A, sref, E, r["time_s"] - t0)
        errs.append(abs(-r["s33_mean_Se_Pa"] - ex) / s0)
    assert max(errs) < 0.02, max(errs)
    Jl = 1 + (jmax - 1) * theta
    final = ts[-1]
    if _relax_exact(s0, n, A, sref, E, 4 * 3600) < 1e-3 * s0:
        assert final["solid_area_ratio"] == pytest.approx(Jl, rel=2e-4)


@pytest.mark.parametrize("defaults", [False, True])
def test_creep_under_stack_pressure(tmp_path, defaults):
    """Lateral rollers, top pressure p, plane strain, no lithiation. With s = sigma_11 = sigma_33 and
    q = s - sigma_22 = s + p (the von Mises stress), eps_11 = 0 gives
    dq/dt = -E/(2(1-nu)) A (q/sigma_ref)^n, q0 = p (1-2nu)/(1-nu); and
    eps_22(t) = (-p - 2 nu s)/E + 2 (1-nu)(s - s0)/E (small strain).
    Within 1 % with small hand-set steps; within 2 % with the default settings (creep error control)."""
    p, n, A, sref = 20e6, 3, 1e-4, 50e6
    bnd = {"left": "roller", "right": "roller", "bottom": "roller", "top": {"pressure": p}}
    cfg = block_cfg(creep={"A": A, "n": n, "sigma_ref": sref}, boundary=bnd, jmax=1.0,
                    protocol=["Rest for 2 hours"],
                    solver=None if defaults else {"dt_initial": 1.0, "dt_max": 60.0, "max_creep_increment": 2e-5})
    tol = 0.02 if defaults else 0.01
    cfg.materials["Se"].active = False
    sim, s, ts = run(cfg, tmp_path)
    q0 = p * (1 - 2 * NU) / (1 - NU)
    s0 = q0 - p
    Eeff = E / (2 * (1 - NU))
    for r in ts[1:]:
        t = r["time_s"]
        q = _relax_exact(q0, n, A, sref, Eeff, t)
        sv = q - p
        assert r["vm_mean_Se_Pa"] == pytest.approx(q, rel=tol, abs=1e-3 * q0)
        e22 = (-p - 2 * NU * sv) / E + 2 * (1 - NU) * (sv - s0) / E
        assert r["height_change"] == pytest.approx(e22, rel=tol)


@pytest.mark.parametrize("jmax", [1.0, 1.98])
def test_elastic_block_under_stack_pressure_uniaxial_strain(tmp_path, jmax):
    """Elastic block, rollers on left/right/bottom, dead-load pressure p on the top, swollen to J_l
    (1.0: pressure only). Uniaxial strain F = diag(1, s, 1), F_e = J_l^(-1/3) F, Hencky:
    ee = diag(-a, ln s - a, -a), a = ln(J_l)/3, tau = lam tr(ee) I + 2 mu ee. The nominal stress on
    the top is P22 = tau22 / s = -p, i.e. (lam + 2 mu) ln s - lam ln J_l - 2 mu a = -p s, solved for
    s; the thickness change is s - 1 (small strain, J_l = 1: -p (1+nu)(1-2nu)/(E(1-nu))). Cauchy:
    sigma22 = -p, sigma11 = sigma33 = (lam (ln s - ln J_l) - 2 mu a) / s."""
    from scipy.optimize import brentq

    p = 100e6  # the lab cell's stack pressure (Xiong 2024, Methods)
    bnd = {"left": "roller", "right": "roller", "bottom": "roller", "top": {"pressure": p}}
    prot = ["Rest for 1 min"] if jmax == 1.0 else ["Lithiate at 1C"]
    cfg = block_cfg(boundary=bnd, jmax=jmax, protocol=prot)
    if jmax == 1.0:
        cfg.materials["Se"].active = False
    sim, s, ts = run(cfg, tmp_path)
    last = ts[-1]
    a = math.log(jmax) / 3
    f = lambda ls: (LAM + 2 * MU) * ls - LAM * math.log(jmax) - 2 * MU * a + p * math.exp(ls)
    ls = brentq(f, -1.0, 1.0, xtol=1e-15)
    st = math.exp(ls)
    if jmax == 1.0:  # the small-strain uniaxial-strain compliance, to first order in p/E
        assert st - 1 == pytest.approx(-p * (1 + NU) * (1 - 2 * NU) / (E * (1 - NU)), rel=2e-2)
    s11 = (LAM * (ls - math.log(jmax)) - 2 * MU * a) / st
    assert last["height_change"] == pytest.approx(st - 1, rel=1e-8)
    assert last["width_change"] == pytest.approx(0.0, abs=1e-12)
    assert last["s33_mean_Se_Pa"] == pytest.approx(s11, rel=1e-8)
    assert last["vm_mean_Se_Pa"] == pytest.approx(abs(s11 + p), rel=1e-8)
    assert last["pressure_mean_Se_Pa"] == pytest.approx(-(2 * s11 - p) / 3, rel=1e-8)
    assert last["solid_area_ratio"] == pytest.approx(st, rel=1e-8)
    assert last["porosity"] == pytest.approx(0.0, abs=1e-9)


def test_newton_quadratic_convergence(tmp_path):
    """Consistent algorithmic tangent: residual history of a creeping step converges quadratically."""
    from creep_cathode.simulation import Simulation, prepare_outdir

    cfg = block_cfg(creep={"A": 1e-3, "n": 5, "sigma_ref": 50e6}, boundary=FREE,
                    protocol=["Lithiate at 10C to 0.2"],
                    solver={"dt_initial": 30.0, "max_creep_increment": 1.0, "rtol": 1e-14, "atol": 1e-13})
    prepare_outdir(tmp_path, cfg)
    sim = Simulation(cfg, tmp_path).initialise()
    hist = []
    orig = sim.stepper.solve

    def spy():
        info = orig()
        hist.append(info.history)
        return info

    sim.stepper.solve = spy
    sim.run()
    h = max(hist, key=len)
    h = [x for x in h if x > 1e-12 * h[0]]
    assert len(h) >= 3
    # quadratic: log r_{k+1} / log r_k -> 2 (normalised by r_0)
    rates = [math.log(h[k + 1] / h[0]) / math.log(h[k] / h[0]) for k in range(1, len(h) - 1) if h[k] < 1e-2 * h[0]]
    assert rates and max(rates) > 1.8, (h, rates)


@pytest.mark.parametrize("integrator,order", [("backward_euler", 1), ("bdf2", 2)])
def test_time_step_convergence_order(tmp_path, integrator, order):
    """Backward Euler is first order in dt, BDF2 second order (its first step of the rest is a
    backward Euler step, which costs one local error of order dt^2 and keeps the global order):
    successive differences of sigma_33 at t = 20 min of Norton relaxation, |s(dt) - s(dt/2)|,
    fall by 2^order when dt halves (Richardson ratio); against the closed form within 1 %, and for
    backward Euler the error shrinks with dt (BDF2's time error is below the 0.7 % by which the
    finite-strain block differs from the small-strain closed form)."""
    n, A, sref = 3, 1e-4, 100e6
    vals, errs = [], []
    for dt in ((240.0, 120.0, 60.0, 30.0) if order == 1 else (120.0, 60.0, 30.0, 15.0)):  # 2nd: asymptotic range
        cfg = block_cfg(creep={"A": A, "n": n, "sigma_ref": sref}, boundary=FREE,
                        protocol=["Lithiate at 36C to 0.01", "Rest for 20 min"], mesh=2e-6,
                        solver={"dt_initial": dt, "dt_max": dt, "max_creep_increment": 1.0,
                                "max_theta_increment": 0.5, "growth": 1.0001, "creep_integrator": integrator,
                                "creep_tolerance": 0.0})  # fixed steps (no error control): the point of the test
        sim, s, ts = run(cfg, tmp_path / f"dt{dt:g}")
        rest = [r for r in ts if r["time_s"] >= 1.0 - 1e-9]
        s0 = -rest[0]["s33_mean_Se_Pa"]
        vals.append(-rest[-1]["s33_mean_Se_Pa"])
        errs.append(abs(vals[-1] - _relax_exact(s0, n, A, sref, E, rest[-1]["time_s"] - rest[0]["time_s"])))
    d = np.abs(np.diff(vals))
    ratios = d[:-1] / d[1:]
    assert np.all((ratios > 0.9 * 2**order) & (ratios < 1.1 * 2**order)), (vals, ratios)
    assert errs[-1] < 0.01 * s0  # the closed form (small strain) to 1 %
    if order == 1:
        assert errs[-1] < errs[0] / 4  # BDF2's time error is already below the small-strain closed form's


@pytest.mark.mpi
def test_serial_vs_mpi(tmp_path):
    """Same metrics from 1 and 2 ranks (1e-8 relative)."""
    args = ["run", str(ROOT / "configs" / "se_mse.toml"), "--set", "rve.kind=block", "--set", "rve.phase=Se",
            "--set", "rve.width=4e-6", "--set", "rve.height=4e-6", "--set", "rve.mesh_size=0.5e-6",
            "--set", "boundary.right=free", "--set", "boundary.top=free",
            "--set", 'cycling.protocol=["Lithiate at 2C to 0.3", "Rest for 30 min", "Delithiate at 2C"]',
            "--set", "cycling.cycles=1", "--set", "output.progress=false", "--set", "output.plots=false"]
    assert_same_serial_and_mpi(args, tmp_path)


def assert_same_serial_and_mpi(args, tmp_path):
    """`creep-cathode ARGS` on 1 and 2 ranks: the same timeseries (1e-8 relative; dt_s aside)."""
    s1, s2 = run_serial_and_mpi(args, tmp_path)
    a = CSVTable.read(s1 / "timeseries.csv")
    b = CSVTable.read(s2 / "timeseries.csv")
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        for k, v in ra.items():
            if isinstance(v, float) and k not in ("dt_s",):
                assert rb[k] == pytest.approx(v, rel=1e-8, abs=1e-12 * max(1.0, abs(v))), k


@pytest.mark.parametrize("platen", [False, True])
def test_stack_pressure_platen_carries_p_times_width(tmp_path, platen):
    """A disk cut by the top and bottom sides (a pillar with curved free flanks), bottom on rollers, pressure
    p on the top. Discrete equilibrium tested with v = (0, Y), which the finite-element space holds and
    the bottom roller admits, gives exactly ∫ P_22 dX = -F H: the force the top transmits times the height.
    Under a rigid platen F = p W (the box width: the stack pressure acts on the whole electrode, pores
    included) and the top faces stay flat; as a dead load on the cut faces F = p L (their length)."""
    W, H, R = 8e-6, 4e-6, 3e-6
    p = 100e6
    top = {"pressure": p, "platen": True} if platen else {"pressure": p}
    d = {
        "rve": {"kind": "particles", "width": W, "height": H, "mesh_size": 0.5e-6, "min_gap": 0.1e-6,
                "particles": [{"phase": "Se", "center": [W / 2, H / 2], "radius": R}]},
        "boundary": {"left": "roller", "right": "roller", "bottom": "roller", "top": top},
        "materials": {"Se": {"youngs_modulus": E, "poisson_ratio": NU}},
        "cycling": {"protocol": ["Rest for 1 min"], "cycles": 1},
        "output": {"fields": "none", "plots": False, "progress": False},
    }
    sim, s, ts = run(validate(d), tmp_path)
    mech = sim.mech
    F, r = mech._update(mech.u.x.array, tangent=False)
    L0, S0 = mech.scaling.length, mech.scaling.stress
    sum_P22 = float(np.sum(r.P[:, 1, 1] * mech.wdet)) * S0 * L0**2
    L = 2 * math.sqrt(R**2 - (H / 2) ** 2)
    force = p * (W if platen else L)
    assert sum_P22 == pytest.approx(-force * H, rel=1e-6)
    top_dofs = mech.bc.side_dofs["top"]
    uy = mech.u.x.array[top_dofs]  # the top's vertical displacements
    if platen:
        assert np.ptp(uy) < 1e-3 * abs(np.mean(uy))
    else:  # the dead load bends the cut face: it bulges down in the middle
        assert np.ptp(uy) > 1e-2 * abs(np.mean(uy))


PLATEN_TOML = """
[rve]
kind = "particles"
width = 12e-6
height = 4e-6
mesh_size = 0.4e-6
min_gap = 0.1e-6
particles = [{ phase = "MSe", center = [3e-6, 2e-6], radius = 2.4e-6 },
             { phase = "MSe", center = [9e-6, 2e-6], radius = 2.4e-6 },
             { phase = "Se", center = [6e-6, 3.4e-6], radius = 0.5e-6 }]
[boundary]
top = { pressure = 100e6, platen = true }
[materials.Se]
use = "Se"
[materials.MSe]
use = "Mo6Se8"
[cycling]
protocol = ["Rest for 1 min", "Lithiate at 2C"]
cycles = 1
[output]
fields = "none"
plots = false
progress = false
"""


def test_platen_is_a_wall_for_uncut_particles(tmp_path):
    """Two Mo6Se8 pillars cut by the top and bottom carry a 100 MPa platen; a small Se particle
    between them, 0.1 um below the top side, swells by 98 % (its radius by 26 %, 0.13 um more than the
    gap) and meets the platen, which holds it: its top stays below the platen (within the barrier
    width d̂), while the pillars keep the platen where they put it (elastic, ~-0.3 %)."""
    from creep_cathode.config import load_config

    (tmp_path / "c.toml").write_text(PLATEN_TOML)
    sim, s, ts = run(load_config(tmp_path / "c.toml"), tmp_path / "out")
    mech = sim.mech
    X = mech.V.tabulate_dof_coordinates()[:, :2] * mech.L0
    x = X + mech.u.x.array.reshape(-1, 2) * mech.L0
    small = np.linalg.norm(X - np.array([6e-6, 3.4e-6]), axis=1) < 0.55e-6
    platen = 4e-6 * (1 + ts[-1]["height_change"])
    assert x[small, 1].max() > 4e-6 - 0.1e-6 + 0.05e-6  # it swelled towards the platen
    assert x[small, 1].max() < platen  # and stayed below it
    assert platen - x[small, 1].max() < mech.contact.dhat * mech.L0
    assert -1e-2 < ts[-1]["height_change"] < 0


def test_platen_wall_gradient_and_hessian_match_the_energy(tmp_path):
    """Finite differences of Π(u) with a particle within d̂ of a moving platen wall (the barrier
    depends on u through the platen's mean displacement w̄ too): gradient and Hessian exact."""
    from creep_cathode.config import load_config
    from creep_cathode.simulation import Simulation, prepare_outdir

    (tmp_path / "c.toml").write_text(PLATEN_TOML)
    cfg = load_config(tmp_path / "c.toml")
    prepare_outdir(tmp_path / "out", cfg)
    m = Simulation(cfg, tmp_path / "out").initialise().mech
    m.set_state({"Se": 0.0, "MSe": 0.0}, 1.0)
    X = m.V.tabulate_dof_coordinates()[:, :2] * m.L0
    u = np.zeros(m.get_u().shape)
    small = np.flatnonzero(np.linalg.norm(X - np.array([6e-6, 3.4e-6]), axis=1) < 0.55e-6)
    top = m.bc.side_dofs["top"]
    u[2 * small + 1] = 0.1e-6 / m.L0 - 0.3 * m.contact.dhat  # the particle's top 0.3 d̂ below the side
    u[top] = -0.1 * m.contact.dhat  # and the platen 0.1 d̂ down onto it: a gap of 0.2 d̂
    assert m.contact.num_active(u) > 0
    rng = np.random.default_rng(1)
    dv = rng.standard_normal(len(u)) * 1e-3 * m.contact.dhat
    dv[m.bc.dirichlet_owned] = 0.0
    dv[top] += 3e-3 * m.contact.dhat  # the platen moves too
    b, A = m.assemble(u)
    g = b.array.copy()
    x, Ad = A.createVecRight(), A.createVecRight()
    x.array[:] = dv
    A.mult(x, Ad)
    Ad = Ad.array.copy()
    eps = 1e-2
    dE = (m.energy(u + eps * dv) - m.energy(u - eps * dv)) / (2 * eps)
    gp = m.assemble(u + eps * dv)[0].array.copy()  # (assemble reuses its vector)
    dg = (gp - m.assemble(u - eps * dv)[0].array) / (2 * eps)
    assert dE == pytest.approx(g @ dv, rel=1e-6)
    assert np.linalg.norm(dg - Ad) < 1e-6 * np.linalg.norm(Ad)
    # the barrier alone (its wall terms are a small part of the whole)
    c = m.contact

    def grad_B(v):
        bv = A.createVecRight()
        c.add_gradient(bv, v)
        return bv.array.copy()

    HB = m.A.duplicate()
    HB.zeroEntries()
    c.add_hessian(HB, u)
    HB.assemble()
    HBd = HB.createVecRight()
    HB.mult(x, HBd)
    dB = (c.energy(u + eps * dv) - c.energy(u - eps * dv)) / (2 * eps)
    assert dB == pytest.approx(grad_B(u) @ dv, rel=1e-5)
    dgB = (grad_B(u + eps * dv) - grad_B(u - eps * dv)) / (2 * eps)
    assert np.linalg.norm(dgB - HBd.array) < 1e-4 * np.linalg.norm(HBd.array)


@pytest.mark.mpi
def test_platen_serial_vs_mpi(tmp_path):
    """The platen couples DoFs across ranks (its rank-one block and its wall): two Mo6Se8 pillars under
    100 MPa through a platen and a swelling Se particle that meets it give the same metrics on 1 and 2
    ranks (1e-8 relative)."""
    cfg = tmp_path / "platen.toml"
    cfg.write_text(PLATEN_TOML)
    assert_same_serial_and_mpi(["run", str(cfg)], tmp_path)


FLOATING_TOML = """
[rve]
kind = "particles"
width = 8e-6
height = 4e-6
mesh_size = 0.4e-6
min_gap = 0.1e-6
particles = [{ phase = "Se", center = [2e-6, 2e-6], radius = 1e-6 }, { phase = "Se", center = [5.2e-6, 2e-6], radius = 1.1e-6 }]
[materials.Se]
active = true
youngs_modulus = 10e9
poisson_ratio = 0.32
volume_ratio_lithiated = 1.98
creep = { A = 1e-4, n = 3, sigma_ref = 100e6 }
[cycling]
protocol = ["Lithiate at 1C to 0.6", "Delithiate at 1C to 0.2"]
cycles = 1
[output]
fields = "none"
plots = false
progress = false
"""


@pytest.mark.mpi
def test_extrapolated_proximal_anchor_serial_vs_mpi(tmp_path):
    """The extrapolated proximal anchor removes each body's rigid motion with sums over the body's
    nodes on every rank: two floating swelling and shrinking disks (BDF2) give the same metrics on 1
    and 2 ranks (1e-8 relative)."""
    cfg = tmp_path / "floating.toml"
    cfg.write_text(FLOATING_TOML)
    assert_same_serial_and_mpi(["run", str(cfg)], tmp_path)


def test_platen_without_solid_on_its_side_is_a_config_error(tmp_path):
    """A platen on a side that no particle reaches has nothing to press on: exit 2 naming the key."""
    from test_robustness import run_cli

    cfg = tmp_path / "c.toml"  # the pillars of PLATEN_TOML reach the top and bottom, not the left side
    cfg.write_text(PLATEN_TOML.replace("top = { pressure = 100e6, platen = true }",
                                       "left = { pressure = 10e6, platen = true }"))
    rc, out, err = run_cli(["run", str(cfg), "-o", str(tmp_path / "out")])
    assert rc == 2
    assert "boundary.left.platen" in err


def test_floating_particles_proximal_anchor(tmp_path):
    """Two creeping Se disks floating apart in a box (no contact: only the proximal term holds their
    rigid motion) swell at 1C to theta = 0.3. Wherever the proximal term is anchored, each expands
    homogeneously about its own centre without drifting or turning (the anchor pins a free body's
    rigid motion and nothing pushes it), to the same stretch, with the proximal energy left below the
    tolerance. Anchored at the extrapolated step it resists only the departure from the steady
    swelling: after the first step (no extrapolation yet) its energy stays orders of magnitude below
    the tolerance and the relaxation re-solves are gone."""
    W, H, R = 8e-6, 4e-6, 1e-6
    stretch, relax = {}, {}
    for anchor in ("extrapolated", "last_step"):
        d = {
            "rve": {"kind": "particles", "width": W, "height": H, "mesh_size": 0.4e-6, "min_gap": 0.1e-6,
                    "particles": [{"phase": "Se", "center": [W / 4, H / 2], "radius": R},
                                  {"phase": "Se", "center": [3 * W / 4, H / 2], "radius": R}]},
            "materials": {"Se": {"active": True, "youngs_modulus": E, "poisson_ratio": NU,
                                 "volume_ratio_lithiated": 1.98, "creep": {"A": 1e-4, "n": 3, "sigma_ref": 100e6}}},
            "cycling": {"protocol": ["Lithiate at 1C to 0.3"], "cycles": 1},
            "solver": {"proximal_anchor": anchor},
            "output": {"fields": "none", "plots": False, "progress": False},
        }
        sim, s, ts = run(validate(d), tmp_path / anchor)
        mech = sim.mech
        assert float(mech.k_prox.value) > 0
        nloc = mech.V.dofmap.index_map.size_local
        Xall = mech.V.tabulate_dof_coordinates()[:nloc, :2]
        uall = mech.u.x.array.reshape(-1, 2)[:nloc]
        mid = 0.5 * (Xall[:, 0].min() + Xall[:, 0].max())
        for k, disk in enumerate((Xall[:, 0] < mid, Xall[:, 0] > mid)):
            # uniform lithiation of a free disk: a homogeneous in-plane expansion about its centre,
            # u = a (X - c), which P2 holds exactly; a translation t or rotation w would add t + w e3 x (X - c)
            X, u = Xall[disk], uall[disk]
            X = X - 0.5 * (X.min(axis=0) + X.max(axis=0))
            rad = 0.5 * np.ptp(X[:, 0])
            one, zero = np.ones(len(X)), np.zeros(len(X))
            M = np.vstack([np.column_stack([X[:, 0], one, zero, -X[:, 1]]),
                           np.column_stack([X[:, 1], zero, one, X[:, 0]])])
            b = np.concatenate([u[:, 0], u[:, 1]])
            (a, tx, ty, w), *_ = np.linalg.lstsq(M, b, rcond=None)
            assert a > 0.05  # it swelled (in-plane stretch - 1)
            assert np.abs(M @ [a, tx, ty, w] - b).max() < 1e-4 * a * rad  # homogeneous, up to the proximal forces
            assert max(abs(tx), abs(ty), abs(w * rad)) < 1e-3 * a * rad  # no drift
            stretch[anchor, k] = a
        assert max(r["proximal_energy_ratio"] for r in ts) <= 1e-3
        if anchor == "extrapolated":
            assert max(r["proximal_energy_ratio"] for r in ts[2:]) < 1e-5
        relax[anchor] = s["newton_iterations_total"] - sum(r["newton_iterations"] for r in ts)  # spent re-solving
    for k in (0, 1):
        assert stretch["extrapolated", k] == pytest.approx(stretch["last_step", k], rel=1e-4)
    assert relax["extrapolated"] < 0.5 * relax["last_step"], relax


SETTLE_TOML = """
[rve]
kind = "particles"
width = 2.2e-6
height = 3.6e-6
mesh_size = 0.25e-6
min_gap = 0.1e-6
particles = [{ phase = "Se", center = [1.1e-6, 3.6e-6], radius = 1e-6 },
             { phase = "Se", center = [1.1e-6, 1.3e-6], radius = 1e-6 }]
[boundary]
left = "roller"
right = "roller"
bottom = "roller"
top = { pressure = 10e6, platen = true }
[materials.Se]
active = true
youngs_modulus = 10e9
poisson_ratio = 0.32
volume_ratio_lithiated = 1.98
[cycling]
protocol = ["Rest for 1 min"]
cycles = 1
[contact]
settle_relaxations = 1000
[output]
fields = "none"
plots = false
"""


def test_a_rest_settles_a_stack_of_two_disks_under_a_platen(tmp_path):
    """A platen at 10 MPa presses a half-disk (cut by the top side, so it carries the platen) onto a
    floating disk that hangs g = 0.3 um above the bottom wall and g below the half-disk, in a channel
    0.1 um wider than the disks on each side (rollers), so the stack cannot slide apart. In
    equilibrium both gaps are closed: the platen comes down by 2 g, less at most the barrier's gap
    d̂ at each of the two contacts, plus the elastic flattening of the two contacts, ≤ 0.02 um (2D
    Hertz, F = p W = 22 N/m, E* = E / (1 - ν²): δ ≈ 2F/(π E*) (2 ln(4R/b) - 1) ≈ 0.01 um per disk).
    A rest with `contact.settle_relaxations` gets there with proximal / stored ≤ the tolerance and
    leaves the proximal stiffness as configured; with the 3 plain re-solves it stays up, held by the
    proximal term."""
    W, R, g = 2.2e-6, 1e-6, 0.3e-6
    H = 3 * R + 2 * g
    dhat = min(0.1e-6 / 2, 0.25e-6 / 8)  # the default d̂: min(min_gap / 2, mesh_size / 8)
    drop = {}
    for settle in (0, 1000):
        d = tomllib.loads(SETTLE_TOML)  # the stack (W, H, R, g) above
        assert d["rve"]["particles"][1]["center"][1] == pytest.approx(R + g)
        assert d["rve"]["height"] == pytest.approx(H) and d["rve"]["width"] == pytest.approx(W)
        d["contact"]["settle_relaxations"], d["output"]["progress"] = settle, False
        sim, s, ts = run(validate(d), tmp_path / f"settle{settle}")
        drop[settle] = -ts[-1]["height_change"] * H
        if settle:
            assert ts[-1]["proximal_energy_ratio"] <= 1e-3
            assert float(sim.mech.k_prox.value) == sim.mech.k_prox_nominal > 0
            assert 2 * g - 2 * dhat <= drop[settle] <= 2 * g + 0.02e-6, drop
        else:
            assert ts[-1]["proximal_energy_ratio"] > 1e-3 and drop[settle] < 2 * g - 2 * dhat, drop


def test_settling_serial_vs_mpi(tmp_path):
    """The softened settle of the two-disk stack above (its decisions rest on allreduced ratios and
    Newton's collective convergence) gives the same metrics on 1 and 2 ranks (1e-8 relative)."""
    cfg = tmp_path / "settle.toml"
    cfg.write_text(SETTLE_TOML)
    assert_same_serial_and_mpi(["run", str(cfg)], tmp_path)
