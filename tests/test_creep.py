"""Constitutive update (solver/creep.py) at material points, without DOLFINx."""

import math

import numpy as np
import pytest

from solver import creep

MU, LAM = 0.38, 0.8  # scaled Lamé constants (E ~ 1)
K = LAM + 2 * MU / 3
I4 = np.array([1.0, 1.0, 0.0, 1.0])


def _F(seed, n=6, amp=0.1):
    rng = np.random.default_rng(seed)
    return np.eye(2)[None].repeat(n, 0) + amp * rng.standard_normal((n, 2, 2))


def _fd_tangent(F, C, Jl, A, nexp, sref, dt, h=1e-6):
    r = creep.update(F, C, Jl, MU, LAM, A, nexp, sref, dt)
    num = np.empty_like(r.dPdF)
    for k in range(2):
        for L in range(2):
            Fp, Fm = F.copy(), F.copy()
            Fp[:, k, L] += h
            Fm[:, k, L] -= h
            Pp = creep.update(Fp, C, Jl, MU, LAM, A, nexp, sref, dt, tangent=False).P
            Pm = creep.update(Fm, C, Jl, MU, LAM, A, nexp, sref, dt, tangent=False).P
            num[:, :, :, k, L] = (Pp - Pm) / (2 * h)
    return r, np.abs(num - r.dPdF).max() / np.abs(r.dPdF).max()


@pytest.mark.parametrize("A,nexp", [(0.0, 1.0), (1e-3, 1.0), (1e-2, 6.5), (1e2, 20.0)])
def test_tangent_matches_finite_differences(A, nexp):
    F = _F(1)
    C = np.tile(I4, (len(F), 1))
    C[:, 0], C[:, 1], C[:, 2] = 1.05, 1 / 1.05 + 0.01**2 / 1.05, 0.01  # a previous creep state (det 1)
    r, err = _fd_tangent(F, C, 1.3, A, nexp, 0.01, 1.0)
    assert err < 1e-6
    if A > 0:
        assert r.deps.max() > 1e-3  # the creep branch is exercised


@pytest.mark.parametrize("F", [np.eye(2)[None], np.eye(2)[None] * 1.01 + 1e-9 * np.array([[[0.3, -0.7], [0.2, 0.5]]])])
def test_tangent_near_equal_eigenvalues(F):
    C = np.tile(I4, (1, 1))
    for A in (0.0, 1e-2):
        _, err = _fd_tangent(F.copy(), C, 1.2, A, 3.0, 0.01, 1.0)
        assert err < 1e-6


def test_stress_free_reference():
    r = creep.update(np.eye(2)[None], I4[None], 1.0, MU, LAM, 1e-2, 3.0, 0.01, 1.0)
    assert np.abs(r.P).max() < 1e-15 and np.abs(r.tau).max() < 1e-15 and r.deps[0] == 0.0


def test_plane_strain_swelling_closed_form():
    """F = diag(a, a, 1), J_l: ee = (ln a - ln J_l/3, ln a - ln J_l/3, -ln J_l/3), Hencky tau."""
    a, Jl = 1.1, 1.5
    F = np.diag([a, a])[None]
    r = creep.update(F, I4[None], Jl, MU, LAM, 0.0, 1.0, 1.0, 1.0)
    e1 = math.log(a) - math.log(Jl) / 3
    e3 = -math.log(Jl) / 3
    tr = 2 * e1 + e3
    assert r.tau[0, 0] == pytest.approx(LAM * tr + 2 * MU * e1, rel=1e-12)
    assert r.tau[0, 3] == pytest.approx(LAM * tr + 2 * MU * e3, rel=1e-12)
    assert r.sigma[0, 0] == pytest.approx(r.tau[0, 0] / a**2, rel=1e-12)


def test_constrained_swelling_pure_pressure_no_flow():
    """F = I, J_l > 1: ee = -ln(J_l)/3 I, tau = -K ln(J_l) I; deviator zero, so no creep."""
    Jl = 1.98
    r = creep.update(np.eye(2)[None], I4[None], Jl, MU, LAM, 1e3, 6.5, 0.01, 1e3)
    p = K * math.log(Jl)
    assert np.allclose(r.tau[0], [-p, -p, 0.0, -p], rtol=1e-12, atol=1e-14)
    assert r.deps[0] == 0.0 and r.vm[0] < 1e-12


def test_single_step_solves_scalar_equation():
    """sigma_e = sigma_e_tr - 3 mu dt A (sigma_e / sigma_ref)^n to 1e-10."""
    F = np.array([[[1.02, 0.01], [0.0, 0.99]]])
    el = creep.update(F, I4[None], 1.0, MU, LAM, 0.0, 1.0, 1.0, 1.0)
    se_tr = creep.von_mises(el.tau)[0]
    A, nexp, sref, dt = 5e-2, 4.0, 0.01, 2.0
    r = creep.update(F, I4[None], 1.0, MU, LAM, A, nexp, sref, dt)
    se = creep.von_mises(r.tau)[0]
    assert se == pytest.approx(se_tr - 3 * MU * dt * A * (se / sref) ** nexp, rel=1e-10)
    assert r.deps[0] == pytest.approx((se_tr - se) / (3 * MU), rel=1e-10)


def test_huge_step_relaxes_deviator_and_stays_isochoric():
    F = _F(2, amp=0.2)
    C = np.tile(I4, (len(F), 1))
    r = creep.update(F, C, 1.4, MU, LAM, 1e6, 5.0, 0.01, 1e6)
    assert creep.von_mises(r.tau).max() < 1e-3 * K
    detC = (r.Cp_inv[:, 0] * r.Cp_inv[:, 1] - r.Cp_inv[:, 2] ** 2) * r.Cp_inv[:, 3]
    assert np.allclose(detC, 1.0, atol=1e-12)


def test_extreme_exponent_no_overflow_and_zero_stress():
    F = _F(3, amp=0.3)
    C = np.tile(I4, (len(F), 1))
    for nexp in (1.0, 20.0, 50.0):
        r = creep.update(F, C, 1.98, MU, LAM, 1.0, nexp, 1e-6, 1e3)  # sigma_e_tr >> sigma_ref
        assert np.all(np.isfinite(r.P)) and np.all(np.isfinite(r.dPdF)) and np.all(np.isfinite(r.deps))
    r = creep.update(np.eye(2)[None], I4[None], 1.0, MU, LAM, 1.0, 20.0, 1e-6, 1e3)
    assert r.deps[0] == 0.0 and np.all(np.isfinite(r.dPdF))


def test_objectivity():
    F = _F(4)
    C = np.tile(I4, (len(F), 1))
    th = 0.7
    Q = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    r1 = creep.update(F, C, 1.3, MU, LAM, 1e-2, 6.5, 0.01, 1.0)
    r2 = creep.update(Q @ F, C, 1.3, MU, LAM, 1e-2, 6.5, 0.01, 1.0)
    assert np.allclose(r2.P, Q @ r1.P, atol=1e-13)
    assert np.allclose(r2.deps, r1.deps, rtol=1e-10)
    assert np.allclose(r2.Cp_inv, r1.Cp_inv, atol=1e-12)


def test_multistep_relaxation_at_a_point():
    """Constant pure shear F = diag(1+g, 1/(1+g)) (small g), many small steps: the deviatoric
    stress relaxes as sigma(t) = [sigma0^(1-n) + (n-1) 3 mu A sigma_ref^(-n) t]^(1/(1-n))
    (total deviatoric strain fixed: d sigma_e/dt = -3 mu d eps/dt)."""
    g, nexp, A, sref = 1e-3, 3.0, 1e-2, 1e-3
    F = np.diag([1 + g, 1 / (1 + g)])[None]
    C = I4[None].copy()
    s0 = creep.von_mises(creep.update(F, C, 1.0, MU, LAM, 0.0, 1.0, 1.0, 1.0).tau)[0]
    t, dt, errs = 0.0, 1e-3, []  # relaxation time ~0.05 s
    for _ in range(1000):
        r = creep.update(F, C, 1.0, MU, LAM, A, nexp, sref, dt, tangent=False)
        C = r.Cp_inv
        t += dt
        ex = (s0 ** (1 - nexp) + (nexp - 1) * 3 * MU * A * sref ** (-nexp) * t) ** (1 / (1 - nexp))
        errs.append(abs(creep.von_mises(r.tau)[0] - ex) / s0)
    assert max(errs) < 0.01


def test_arrhenius():
    assert creep.arrhenius(0.0, 300.0, 343.15) == 1.0
    assert creep.arrhenius(50e3, 343.15, 343.15) == 1.0
    assert creep.arrhenius(50e3, 300.0, 343.15) == pytest.approx(math.exp(-50e3 / 8.314462618 * (1 / 300 - 1 / 343.15)))
