"""Constitutive update of the Hencky/Norton law (solver/laws/hencky_norton.py) at material points,
without DOLFINx. Each check runs on the numba kernel and on the NumPy oracle (tests/creep_oracle.py).

Reference values are closed forms or an independent 3x3 implementation written here (eigh of
be_tr, brentq on the scalar return equation), never stored outputs."""

import math

import numpy as np
import pytest
from scipy.optimize import brentq

import creep_oracle
from creep_cathode import materials
from creep_cathode.laws import hencky_norton


class creep:
    """The kernel ("numba") and the NumPy oracle ("numpy") behind one call."""

    von_mises = staticmethod(hencky_norton.von_mises)

    @staticmethod
    def update(*args, backend="numba", **kw):
        return (hencky_norton.update if backend == "numba" else creep_oracle.update)(*args, **kw)

MU, LAM = 0.38, 0.8  # scaled Lamé constants (E ~ 1)
K = LAM + 2 * MU / 3
I4 = np.array([1.0, 1.0, 0.0, 1.0])

BACKENDS = ["numpy", "numba"]


def _rot(th):
    return np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])


def _F(seed, n=4, amp=0.15):
    """Rotation times a stretch (plus a random perturbation): general in-plane F with det > 0."""
    rng = np.random.default_rng(seed)
    F = np.empty((n, 2, 2))
    for p in range(n):
        R = _rot(rng.uniform(-math.pi, math.pi))
        U = np.diag(1 + amp * rng.uniform(-1, 1, 2))
        F[p] = R @ U + 0.3 * amp * rng.standard_normal((2, 2))
    return F


def _crept_state(n):
    """A previous creep state, det = 1: Fcr^-1 Fcr^-T for Fcr = R diag(1.1, 1/1.1 * 1.02) R^T, F33 = 1/1.02."""
    R = _rot(0.4)
    Fc = R @ np.diag([1.1, 1.02 / 1.1]) @ R.T
    Ci = np.linalg.inv(Fc) @ np.linalg.inv(Fc).T
    return np.tile([Ci[0, 0], Ci[1, 1], Ci[0, 1], 1.02**2], (n, 1))


def _fd(F, C, Jl, A, nexp, sref, dt, backend, h=1e-6):
    r = creep.update(F, C, Jl, MU, LAM, A, nexp, sref, dt, backend=backend)
    num = np.empty_like(r.dPdF)
    for k in range(2):
        for L in range(2):
            Fp, Fm = F.copy(), F.copy()
            Fp[:, k, L] += h
            Fm[:, k, L] -= h
            Pp = creep.update(Fp, C, Jl, MU, LAM, A, nexp, sref, dt, tangent=False, backend=backend).P
            Pm = creep.update(Fm, C, Jl, MU, LAM, A, nexp, sref, dt, tangent=False, backend=backend).P
            num[..., k, L] = (Pp - Pm) / (2 * h)
    scale = np.abs(r.dPdF).reshape(len(F), -1).max(axis=1)
    err = (np.abs(num - r.dPdF).reshape(len(F), -1).max(axis=1) / scale).max()
    return r, err


# name: (F, Cp_inv state, J_l, A, n, sigma_ref, minimum 1 - sigma_e/sigma_e_tr required)
_I = np.eye(2)[None]
_TANGENT_CASES = {
    "elastic": (_F(1), _crept_state(4), 1.3, 0.0, 1.0, 0.01, None),
    "n1_large_step": (_F(2), _crept_state(4), 1.3, 1.0, 1.0, 0.01, 0.5),
    "n6.5_large_step": (_F(3), _crept_state(4), 1.3, 1e-2, 6.5, 0.01, 0.5),
    "n20_large_step": (_F(4), _crept_state(4), 1.3, 1e2, 20.0, 0.01, 0.5),
    "n6.5_small_step": (_F(5), _crept_state(4), 1.0, 1e-12, 6.5, 0.01, None),
    "large_stretch_n3": (_rot(0.3)[None] @ np.diag([4.0, 0.3])[None], I4[None].copy(), 1.98, 1e-1, 3.0, 0.01, 0.5),
    "identity_elastic": (_I.copy(), I4[None].copy(), 1.0, 0.0, 1.0, 1.0, None),
    "identity_n1": (_I.copy(), I4[None].copy(), 1.0, 1.0, 1.0, 0.01, 0.5),  # sigma_e_tr = 0, relaxed modulus
    "identity_n6.5": (_I.copy(), I4[None].copy(), 1.2, 1e-2, 6.5, 0.01, None),
    "identity_1e-9_n6.5": (_I + 1e-9 * np.array([[[0.3, -0.7], [0.2, 0.5]]]), I4[None].copy(), 1.2, 1e-2, 6.5, 0.01, None),
    # equal in-plane eigenvalues but creeping (e33 != e11 = e22)
    "equal_eig_creeping": (np.diag([1.1, 1.1])[None] @ _rot(0.3)[None], I4[None].copy(), 1.0, 1e-1, 6.5, 0.01, 0.5),
    "near_equal_eig_creeping": (np.diag([1.1, 1.1 + 1e-9])[None] @ _rot(0.3)[None], I4[None].copy(), 1.0, 1e-1,
                                20.0, 0.01, 0.5),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(_TANGENT_CASES))
def test_tangent_matches_central_differences(case, backend):
    F, C, Jl, A, nexp, sref, relax = _TANGENT_CASES[case]
    r, err = _fd(F, C, Jl, A, nexp, sref, 1.0, backend)
    assert err < 1e-6, err
    if relax is not None:  # the large-creep-step branch is exercised: sigma_e <= (1 - relax) sigma_e_tr
        assert (1.0 - r.ratio).min() > relax
    D = r.dPdF.reshape(len(F), 4, 4)  # the update derives from an incremental potential
    assert np.abs(D - D.transpose(0, 2, 1)).max() <= 1e-12 * np.abs(D).max()


# ----------------------------------------------------------------------------- independent reference
def _ref_update(F2, C4, Jl, A, nexp, sref, dt):
    """Straight 3x3 implementation (eigh, brentq) of the same backward-Euler exponential-map step."""
    F = np.eye(3)
    F[:2, :2] = F2
    Cp = np.array([[C4[0], C4[2], 0], [C4[2], C4[1], 0], [0, 0, C4[3]]])
    be = Jl ** (-2 / 3) * F @ Cp @ F.T
    w, Q = np.linalg.eigh(be)
    e = 0.5 * np.log(w)
    dev = e - e.sum() / 3
    se_tr = math.sqrt(1.5) * 2 * MU * np.linalg.norm(dev)
    if A > 0 and se_tr > 0:
        se = brentq(lambda s: s - se_tr + 3 * MU * dt * A * (s / sref) ** nexp, 0.0, se_tr,
                    xtol=1e-300, rtol=1e-15, maxiter=500)
    else:
        se = se_tr
    deps = (se_tr - se) / (3 * MU)
    e_new = e - (deps * 1.5 * 2 * MU / se_tr * dev if se_tr > 0 else 0.0)
    tau_p = LAM * e_new.sum() + 2 * MU * e_new
    tau = Q @ np.diag(tau_p) @ Q.T
    be_new = Q @ np.diag(np.exp(2 * e_new)) @ Q.T
    Fi = np.linalg.inv(F)
    Cn = Jl ** (2 / 3) * Fi @ be_new @ Fi.T
    J = np.linalg.det(F)
    P = (tau @ Fi.T)[:2, :2]
    return {"P": P, "tau": np.array([tau[0, 0], tau[1, 1], tau[0, 1], tau[2, 2]]),
            "Cp_inv": np.array([Cn[0, 0], Cn[1, 1], Cn[0, 1], Cn[2, 2]]),
            "deps": deps, "se": se, "se_tr": se_tr, "J": J, "ee_tr": e}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("A,nexp,dt", [(0.0, 1.0, 1.0), (1e-1, 1.0, 1.0), (1e-2, 6.5, 1.0), (1e-2, 6.5, 1e-4),
                                       (1e2, 20.0, 1.0), (1.0, 20.0, 1e-9)])
def test_update_matches_independent_3x3_implementation(A, nexp, dt, backend):
    F = _F(11, n=5, amp=0.25)
    C = _crept_state(5)
    Jl = np.array([1.0, 1.3, 1.98, 1.1, 1.5])
    r = creep.update(F, C, Jl, MU, LAM, A, nexp, 0.01, dt, backend=backend)
    for p in range(len(F)):
        ref = _ref_update(F[p], C[p], Jl[p], A, nexp, 0.01, dt)
        s = np.abs(ref["tau"]).max()
        assert np.allclose(r.tau[p], ref["tau"], rtol=0, atol=1e-12 * s)
        assert np.allclose(r.P[p], ref["P"], rtol=0, atol=1e-12 * s)
        assert np.allclose(r.sigma[p], ref["tau"] / ref["J"], rtol=0, atol=1e-12 * s)
        assert np.allclose(r.Cp_inv[p], ref["Cp_inv"], rtol=0, atol=1e-12)
        assert r.deps[p] == pytest.approx(ref["deps"], rel=1e-10, abs=1e-15)
        assert r.ratio[p] == pytest.approx(ref["se"] / ref["se_tr"], rel=1e-10)
        assert r.vm[p] == pytest.approx(creep.von_mises(ref["tau"][None] / ref["J"])[0], rel=1e-10)


# ----------------------------------------------------------------------------- closed forms
@pytest.mark.parametrize("backend", BACKENDS)
def test_stress_free_reference(backend):
    r = creep.update(np.eye(2)[None], I4[None], 1.0, MU, LAM, 1e-2, 3.0, 0.01, 1.0, backend=backend)
    assert np.abs(r.P).max() == 0.0 and np.abs(r.tau).max() == 0.0 and r.deps[0] == 0.0
    assert np.array_equal(r.Cp_inv[0], I4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_plane_strain_swelling_closed_form(backend):
    """F = diag(a, a, 1), J_l: ee = (ln a - ln J_l/3, ln a - ln J_l/3, -ln J_l/3), Hencky tau."""
    a, Jl = 1.1, 1.5
    F = np.diag([a, a])[None]
    r = creep.update(F, I4[None], Jl, MU, LAM, 0.0, 1.0, 1.0, 1.0, backend=backend)
    e1 = math.log(a) - math.log(Jl) / 3
    e3 = -math.log(Jl) / 3
    tr = 2 * e1 + e3
    t1, t3 = LAM * tr + 2 * MU * e1, LAM * tr + 2 * MU * e3
    assert np.allclose(r.tau[0], [t1, t1, 0.0, t3], rtol=1e-13, atol=1e-15)
    assert np.allclose(r.sigma[0], np.array([t1, t1, 0.0, t3]) / a**2, rtol=1e-13, atol=1e-15)
    assert np.allclose(r.P[0], np.diag([t1 / a, t1 / a]), rtol=1e-13, atol=1e-15)
    assert r.vm[0] == pytest.approx(2 * MU * abs(e1 - e3) / a**2, rel=1e-12)  # sqrt(3 J2) of diag(t1,t1,t3)
    assert r.deps[0] == 0.0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("nexp", [1.0, 6.5])
def test_constrained_swelling_pure_pressure_no_flow(nexp, backend):
    """F = I, J_l > 1: Je = 1/J_l, ee = ln(Je)/3 I, tau = K ln(Je) I; the deviator is zero, so no
    creep however fast (A dt large), including n = 1 where the return ratio is 1/(1 + k) != 1."""
    Jl = 1.98
    r = creep.update(np.eye(2)[None], I4[None], Jl, MU, LAM, 1e3, nexp, 0.01, 1e3, backend=backend)
    p = K * math.log(1 / Jl)
    assert np.allclose(r.tau[0], [p, p, 0.0, p], rtol=1e-13, atol=1e-15)
    assert r.deps[0] == 0.0 and r.vm[0] < 1e-14
    assert np.allclose(r.Cp_inv[0], I4, atol=1e-15)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("nexp", [1.0, 4.0, 6.5, 20.0])
def test_single_step_solves_scalar_equation(nexp, backend):
    """sigma_e = sigma_e_tr - 3 mu dt A (sigma_e / sigma_ref)^n to 1e-10, d_eps = (se_tr - se)/(3 mu)."""
    F = np.array([[[1.02, 0.01], [0.0, 0.99]]])
    C = _crept_state(1)
    el = creep.update(F, C, 1.2, MU, LAM, 0.0, 1.0, 1.0, 1.0, backend=backend)
    se_tr = creep.von_mises(el.tau)[0]
    sref = 0.01
    for A, dt in [(5e-2, 2.0), (1e-5, 1e-3), (1e-10, 1e-3), (1e3, 1e3)]:
        r = creep.update(F, C, 1.2, MU, LAM, A, nexp, sref, dt, backend=backend)
        se = r.ratio[0] * se_tr
        # both sides of  se_tr - se = 3 mu dt A (se/sref)^n  (se_tr - se is tiny for the tiny A dt)
        assert 3 * MU * r.deps[0] == pytest.approx(3 * MU * dt * A * (se / sref) ** nexp, rel=1e-10)
        assert 3 * MU * r.deps[0] == pytest.approx(se_tr - se, rel=1e-10 * se_tr / (se_tr - se))
        assert se == pytest.approx(se_tr - 3 * MU * dt * A * (se / sref) ** nexp, rel=1e-10)
        # the stress itself: von Mises of tau (a difference of components of the size of the pressure)
        assert creep.von_mises(r.tau)[0] == pytest.approx(se, rel=0, abs=1e-14 * np.abs(r.tau).max())


@pytest.mark.parametrize("backend", BACKENDS)
def test_huge_step_relaxes_deviator(backend):
    """Delta t -> infinity: dev tau -> 0, d_eps -> sqrt(2/3) |dev ee_tr| = sigma_e_tr/(3 mu), tr tau kept."""
    F = _F(2, amp=0.2)
    C = _crept_state(len(F))
    Jl = 1.4
    r = creep.update(F, C, Jl, MU, LAM, 1e15, 3.0, 0.01, 1e15, backend=backend)  # sigma_e/sigma_e_tr ~ 1e-11
    for p in range(len(F)):
        ref = _ref_update(F[p], C[p], Jl, 0.0, 1.0, 1.0, 1.0)
        e = ref["ee_tr"]
        dev_norm = np.linalg.norm(e - e.sum() / 3)
        assert r.deps[p] == pytest.approx(math.sqrt(2 / 3) * dev_norm, rel=1e-10)
        tr = r.tau[p, 0] + r.tau[p, 1] + r.tau[p, 3]
        assert tr == pytest.approx(3 * K * e.sum(), rel=1e-12)
    assert r.ratio.max() < 1e-10
    se_tr = creep.von_mises(creep.update(F, C, Jl, MU, LAM, 0.0, 1.0, 1.0, 1.0).tau)
    assert np.allclose(creep.von_mises(r.tau), r.ratio * se_tr, rtol=0, atol=1e-14 * np.abs(r.tau).max())


@pytest.mark.parametrize("backend", BACKENDS)
def test_isochoric_creep_many_steps(backend):
    """det Cp^-1 = 1 (det Fcr = 1) after 200 creeping steps under a varying F."""
    F0 = _F(7, amp=0.2)
    C = np.tile(I4, (len(F0), 1))
    for k in range(200):
        F = F0 @ _rot(0.01 * k)[None] * (1 + 0.001 * k)
        C = creep.update(F, C, 1 + 0.004 * k, MU, LAM, 1e-1, 6.5, 0.01, 1.0, tangent=False, backend=backend).Cp_inv
    detC = (C[:, 0] * C[:, 1] - C[:, 2] ** 2) * C[:, 3]
    assert np.abs(detC - 1).max() < 1e-12
    assert np.abs(C - I4).max() > 0.05  # it did creep


@pytest.mark.parametrize("backend", BACKENDS)
def test_extreme_exponent_no_overflow_and_zero_trial_stress(backend):
    F = _F(3, amp=0.3)
    C = np.tile(I4, (len(F), 1))
    se_tr = creep.von_mises(creep.update(F, C, 1.98, MU, LAM, 0.0, 1.0, 1.0, 1.0).tau)
    for nexp in (1.0, 20.0, 50.0):
        r = creep.update(F, C, 1.98, MU, LAM, 1.0, nexp, 1e-6, 1e3, backend=backend)  # sigma_e_tr >> sigma_ref
        for v in (r.P, r.dPdF, r.tau, r.Cp_inv, r.deps, r.ratio):
            assert np.all(np.isfinite(v))
        assert np.all(r.ratio > 0) and np.all(r.ratio < 1) and r.iters <= 6
        se = r.ratio * se_tr
        assert np.allclose(r.deps, 1e3 * (se / 1e-6) ** nexp, rtol=1e-9)
    for nexp in (1.0, 20.0):
        r = creep.update(np.eye(2)[None], I4[None], 1.0, MU, LAM, 1.0, nexp, 1e-6, 1e3, backend=backend)
        assert r.deps[0] == 0.0 and np.all(np.isfinite(r.dPdF)) and np.all(np.isfinite(r.ratio))


def test_return_ratio_solves_y_plus_k_y_n():
    lk = np.tile(np.linspace(-60, 700, 381), 8)
    n = np.repeat([1.0, 1.5, 2.0, 3.0, 6.5, 10.0, 20.0, 50.0], 381)
    z, omy, it = creep_oracle.return_ratio(lk, n)
    y = np.exp(z)
    # y + k y^n = 1  <=>  1 - y = exp(log k + n z), to the round-off of the exponent log k + n z
    assert np.all(np.abs(omy / np.exp(lk + n * z) - 1) <= 5e-15 * (1 + np.abs(lk)))
    assert np.allclose(omy, 1 - y, rtol=1e-12, atol=1e-16)
    assert it <= 6
    z, omy, it = creep_oracle.return_ratio(np.array([-np.inf]), np.array([3.0]))
    assert z[0] == 0.0 and omy[0] == 0.0 and it == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_objectivity(backend):
    F = _F(4)
    C = _crept_state(len(F))
    Q = _rot(0.7)
    r1 = creep.update(F, C, 1.3, MU, LAM, 1e-2, 6.5, 0.01, 1.0, backend=backend)
    r2 = creep.update(Q @ F, C, 1.3, MU, LAM, 1e-2, 6.5, 0.01, 1.0, backend=backend)
    assert np.allclose(r2.P, Q @ r1.P, atol=1e-13)
    assert np.allclose(r2.dPdF, np.einsum("ia,kb,naJbL->niJkL", Q, Q, r1.dPdF), atol=1e-12)
    assert np.allclose(r2.deps, r1.deps, rtol=1e-10)
    assert np.allclose(r2.Cp_inv, r1.Cp_inv, atol=1e-12)
    assert np.allclose(r2.vm, r1.vm, rtol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_multistep_relaxation_at_a_point(backend):
    r"""Constant F = diag(1+g, 1/(1+g)) (pure shear, small g), many small steps.

    Total strain fixed: d(dev ee)/dt = -d(eps_cr)/dt = -dot(eps) 3/2 dev(tau)/sigma_e, and with
    dev tau = 2 mu dev ee, sigma_e = sqrt(3/2) |dev tau|:
    d sigma_e/dt = sqrt(3/2) 2 mu d|dev ee|/dt = -sqrt(3/2) 2 mu sqrt(3/2) dot(eps) = -3 mu A (sigma_e/sigma_ref)^n
    (the direction of dev ee does not change). So the relaxation modulus is 3 mu and
    sigma_e^(1-n) = sigma_0^(1-n) + (n - 1) 3 mu A sigma_ref^(-n) t   (n != 1),
    sigma_e = sigma_0 exp(-3 mu A t / sigma_ref)                       (n = 1)."""
    g, A, sref = 1e-3, 1e-2, 1e-3
    F = np.diag([1 + g, 1 / (1 + g)])[None]
    s0 = creep.von_mises(creep.update(F, I4[None], 1.0, MU, LAM, 0.0, 1.0, 1.0, 1.0).tau)[0]
    for nexp in (1.0, 3.0):
        C = I4[None].copy()
        t, dt, errs = 0.0, 2e-4, []  # relaxation times ~0.01 - 0.05
        for _ in range(500):
            r = creep.update(F, C, 1.0, MU, LAM, A, nexp, sref, dt, tangent=False, backend=backend)
            C = r.Cp_inv
            t += dt
            if nexp == 1.0:
                ex = s0 * math.exp(-3 * MU * A * t / sref)
            else:
                ex = (s0 ** (1 - nexp) + (nexp - 1) * 3 * MU * A * sref ** (-nexp) * t) ** (1 / (1 - nexp))
            errs.append(abs(creep.von_mises(r.tau)[0] - ex) / s0)
        assert ex < 0.5 * s0  # relaxed substantially
        assert max(errs) < 0.01


def test_backends_agree_with_mixed_per_point_properties():
    """numba and numpy give the same results to round-off; (N,) property arrays = per-point scalars."""
    rng = np.random.default_rng(5)
    N = 300
    F = _F(9, n=N, amp=0.3)
    C = _crept_state(N)
    Jl = 1 + rng.random(N)
    mu = MU * (1 + rng.random(N))
    lam = LAM * (1 + rng.random(N))
    A = np.where(rng.random(N) < 0.3, 0.0, 10.0 ** rng.uniform(-6, 2, N))
    n = rng.choice([1.0, 3.0, 6.5, 20.0], N)
    sref = 10.0 ** rng.uniform(-3, -1, N)
    dt = 0.5
    a = creep.update(F, C, Jl, mu, lam, A, n, sref, dt, backend="numba")
    b = creep.update(F, C, Jl, mu, lam, A, n, sref, dt, backend="numpy")
    for f in ("P", "dPdF", "tau", "sigma", "Cp_inv", "deps", "ratio"):
        x, y = getattr(a, f), getattr(b, f)
        assert np.abs(x - y).max() <= 1e-12 * np.abs(y).max(), f
    assert np.allclose(a.vm, b.vm, rtol=1e-10, atol=1e-14 * np.abs(b.sigma).max())
    assert a.iters == b.iters
    for p in (0, 7, 123):
        s = creep.update(F[p:p + 1], C[p:p + 1], Jl[p], mu[p], lam[p], A[p], n[p], sref[p], dt)
        assert np.allclose(s.P[0], a.P[p], rtol=0, atol=1e-14) and np.allclose(s.dPdF[0], a.dPdF[p], rtol=0, atol=1e-13)
    assert creep.update(F, C, Jl, mu, lam, A, n, sref, dt, tangent=False).dPdF is None


def test_arrhenius():
    assert materials.arrhenius(0.0, 300.0, 343.15) == 1.0
    assert materials.arrhenius(50e3, 343.15, 343.15) == 1.0
    assert materials.arrhenius(50e3, 300.0, 343.15) == pytest.approx(math.exp(-50e3 / 8.314462618 * (1 / 300 - 1 / 343.15)))


@pytest.mark.parametrize("x", [0.01, 0.1, 0.5, 1.0, 3.0, 10.0, 100.0])
def test_step_error_is_the_local_error_of_maxwell_relaxation(x):
    r"""The law's error estimate of one backward Euler step against the exact local error.

    Maxwell relaxation (n = 1) at a fixed small pure shear from sigma_n with the creep rate of
    sigma_n as the state: exact sigma_n exp(-x), backward Euler sigma_n / (1 + x), x = k dt,
    k = 3 mu A / sigma_ref. The estimate 3 mu |d_eps - dt rate_n| / 2 / (1 + x) =
    x^2 sigma_n / (2 (1 + x)^2) is the leading term of |exp(-x) - 1/(1 + x)| sigma_n: within 10 %
    up to x = 1, never below 0.9 of it, and bounded (0.5 sigma_n) where the step relaxes the point
    many times over (the undamped CETOL difference, x^2 sigma_n / (2 (1 + x)), grows without bound;
    it stays the estimate of solver.creep_integrator = "backward_euler")."""
    g, A, sref = 1e-4, 1e-2, 1e-3
    F = np.diag([1 + g, 1 / (1 + g)])[None]
    s_n = creep.von_mises(creep.update(F, I4[None], 1.0, MU, LAM, 0.0, 1.0, 1.0, 1.0).tau)[0]
    law = hencky_norton.HenckyNorton()
    props = law.Properties(MU, LAM, 1.0, A, 1.0, sref)
    dt = x * sref / (3 * MU * A)
    state = {v.name: v.initial_array(1) for v in law.state_variables}  # no history: a backward Euler step
    state["creep_rate"][:] = A * s_n / sref
    resp = law.update(F, state, props, dt, tangent=False)
    assert resp.vm[0] == pytest.approx(s_n / (1 + x), rel=1e-3)  # backward Euler (small strain)
    true = abs(math.exp(-x) - 1 / (1 + x)) * s_n
    est = law.step_error(resp, state, props, dt)[0]
    assert est == pytest.approx(x**2 * s_n / (2 * (1 + x) ** 2), rel=1e-3)
    assert est >= 0.9 * true
    if x <= 1.0:
        assert est == pytest.approx(true, rel=0.1)
    assert est <= 0.5 * s_n
    law.integrator = "backward_euler"  # the estimate of the runs made before BDF2: the CETOL difference alone
    assert law.step_error(resp, state, props, dt)[0] == pytest.approx(x**2 * s_n / (2 * (1 + x)), rel=1e-3)


def test_extrapolate_cp_is_log_linear():
    """Cp_inv* = exp(ln Cn + c (ln Cn - ln Cm)) against scipy's logm/expm of the in-plane block
    (and C33 alone), for random isochoric states; c = 0 returns Cn."""
    from scipy.linalg import expm, logm

    rng = np.random.default_rng(3)

    def rand_cp():
        a = rng.normal(size=(2, 2)) * 0.2
        L = a + a.T
        M = expm(L)
        return np.array([M[0, 0], M[1, 1], M[0, 1], math.exp(-np.trace(L))])

    Cn = np.array([rand_cp() for _ in range(6)] + [I4])
    Cm = np.array([rand_cp() for _ in range(6)] + [I4])
    c = np.array([0.0, 0.2, 1 / 3, 0.5, 1.0, 4 / 5, 0.3])
    out = hencky_norton.extrapolate_cp(Cn, Cm, c)
    for i in range(len(c)):
        blk = lambda C: np.array([[C[0], C[2]], [C[2], C[1]]])  # noqa: E731
        Ln = logm(blk(Cn[i])).real
        M = expm(Ln + c[i] * (Ln - logm(blk(Cm[i])).real))
        c33 = Cn[i, 3] * (Cn[i, 3] / Cm[i, 3]) ** c[i]
        assert np.allclose(out[i], [M[0, 0], M[1, 1], M[0, 1], c33], rtol=1e-12, atol=1e-12)
    assert np.allclose(hencky_norton.extrapolate_cp(Cn, Cm, 0.0), Cn, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("integrator,order", [("backward_euler", 1), ("bdf2", 2)])
def test_law_time_integration_order_at_a_point(integrator, order):
    """Norton relaxation (n = 3) at a fixed small pure shear through the law object, steps of
    dt, dt/2, dt/4, dt/8 (the first step of each run backward Euler): the error against the
    closed form sigma_e^(1-n) = sigma_0^(1-n) + (n - 1) 3 mu A sigma_ref^(-n) t falls by 2 per
    halving with backward Euler and by at least 4 with BDF2."""
    g, A, sref, nexp, T = 1e-4, 1e-2, 1e-4, 3.0, 0.02
    F = np.diag([1 + g, 1 / (1 + g)])[None]
    law = hencky_norton.HenckyNorton()
    law.integrator = integrator
    props = law.Properties(MU, LAM, 1.0, A, nexp, sref)
    s0 = creep.von_mises(creep.update(F, I4[None], 1.0, MU, LAM, 0.0, 1.0, 1.0, 1.0).tau)[0]
    exact = (s0 ** (1 - nexp) + (nexp - 1) * 3 * MU * A * sref ** (-nexp) * T) ** (1 / (1 - nexp))
    assert exact < 0.6 * s0
    errs = []
    for nsteps in (20, 40, 80, 160):
        state = {v.name: v.initial_array(1) for v in law.state_variables}
        for _ in range(nsteps):
            r = law.update(F, state, props, T / nsteps, tangent=False)
            state = {k: np.array(v, copy=True) for k, v in r.state.items()}
        errs.append(abs(r.vm[0] - exact))
    ratios = np.array(errs[:-1]) / np.array(errs[1:])
    if order == 1:
        assert np.all(np.abs(ratios / 2 - 1) < 0.1), ratios
    else:  # at least second order (here the backward Euler first step and BDF2 nearly cancel at dt^2: 6-15)
        assert np.all(ratios > 0.9 * 4), ratios


def test_bdf2_step_error_is_its_local_error():
    """A BDF2 step of Maxwell relaxation (n = 1) from the exact history (sigma at t = -dt_prev and
    0): the law's error estimate (Milne's device, damped by 1 + k beta dt) against the exact local
    error |sigma_BDF2 - sigma_0 exp(-k dt)|, for small k dt and step ratios w = 1/2, 1, 2."""
    g, A, sref = 1e-4, 1e-2, 1e-3
    F = np.diag([1 + g, 1 / (1 + g)])[None]
    law = hencky_norton.HenckyNorton()
    props = law.Properties(MU, LAM, 1.0, A, 1.0, sref)
    k = 3 * MU * A / sref
    s_tr = creep.von_mises(creep.update(F, I4[None], 1.0, MU, LAM, 0.0, 1.0, 1.0, 1.0).tau)[0]

    def cp_at(s):  # the creep state that leaves von Mises s at F (pure shear: ln-strain scaling)
        y = s / s_tr
        lam = (1 + g) ** 2
        # be = F Cp^-1 F^T with Cp^-1 = diag(p, 1/p): the elastic log strain is y times the total
        p = lam ** (y - 1.0)
        return np.array([p, 1.0 / p, 0.0, 1.0])

    for w in (0.5, 1.0, 2.0):
        for x in (0.02, 0.05):
            dt = x / k
            dtp = dt / w
            sn, sm = s_tr, s_tr * math.exp(k * dtp)  # exact history: sigma(-dtp) = s_n e^{k dtp}
            state = {v.name: v.initial_array(1) for v in law.state_variables}
            state["Cp_inv"][:] = cp_at(sn)
            state["Cp_inv_prev"][:] = cp_at(sm)
            state["creep_rate"][:] = A * sn / sref
            state["creep_rate_prev"][:] = A * sm / sref
            state["dt_prev"][:] = dtp
            state["deps_last"][:] = (sm - sn) / (3 * MU)
            r = law.update(F, state, props, dt, tangent=False)
            true = abs(r.vm[0] - sn * math.exp(-x))
            est = law.step_error(r, state, props, dt)[0]
            assert est == pytest.approx(true, rel=0.2), (w, x, est, true)
            assert law.error_order(state, dt) == 3
            # the step's creep increment: the return's and the explicit part, c = w^2 / (1 + 2w) of the last
            c = w * w / (1 + 2 * w)
            assert law.step_increment(r, dt)[0] == pytest.approx(r.deps[0] + c * state["deps_last"][0], rel=1e-12)
