r"""The Hencky + Norton material-point law: finite-strain Hencky elasticity, swelling and Norton
creep at quadrature points (no DOLFINx).

`HenckyNorton` is the law object (properties, internal variables, step energy, stress and
tangent); `update` is its one fast kernel (numba, one pass over the points). A vectorised NumPy
transcription of the same arithmetic is kept as the test oracle (tests/creep_oracle.py).

Kinematics (plane strain): F = [[F11, F12, 0], [F21, F22, 0], [0, 0, 1]], F = Fe Fl Fcr with
Fl = J_l^(1/3) I and Fcr isochoric. Internal variable Cp^-1 = Fcr^-1 Fcr^-T, block diagonal,
stored per point as [C11, C22, C12, C33] (initially [1, 1, 0, 1]).

Trial state  be = J_l^(-2/3) F Cp^-1 F^T,  ee = 1/2 ln be,  tau = lam tr(ee) I + 2 mu ee.
Backward Euler with the exponential map (Weber & Anand 1990; Eterovic & Bathe 1990; Simo 1992)
is a radial return in principal logarithmic strains (coaxial with be_tr):

    ee = ee_tr - d_eps 3/2 dev(tau)/sigma_e,   sigma_e = sigma_e_tr - 3 mu d_eps,
    d_eps = dt A (sigma_e / sigma_ref)^n.

With y = sigma_e / sigma_e_tr this is  y + k y^n = 1,  k = 3 mu dt A sigma_e_tr^(n-1) / sigma_ref^n,
solved in z = ln y from z0 = min(0, -ln(k)/n) (f(z) = expm1(z) + e^(ln k + n z) is increasing and
convex, f(z0) >= 0) by safeguarded Halley/Newton steps, at most
5 iterations for n in [1, 50]. Only ln k is formed, so nothing overflows for any n or
sigma_e_tr / sigma_ref; A dt = 0 is exactly elastic; sigma_e_tr = 0 gives d_eps = 0 (and, for
n = 1, the relaxed modulus y = 1/(1 + k) in the tangent).

In-plane spectral quantities are written without eigenvectors where possible. With
b = be_tr (in-plane 2x2 block), m = tr(b)/2, r = sqrt(((b11-b22)/2)^2 + b12^2), x = r/m:

    l1 = m + r,  l2 = det(b)/l1 (det b = J^2 det(J_l^(-2/3) Cp^-1): no cancellation),
    e1 - e2 = a = atanh(x) = 1/2 log1p(2 r l1 / det b),   (e1 + e2)/2 = ln(det b)/4,
    f12 = (ln l1 - ln l2)/(l1 - l2) = (atanh(x)/x)/m        (series for small x),
    tau_in-plane = tau_m I + g12 (b - m I),   g12 = (tau1 - tau2)/(l1 - l2) = mu y f12,

so the stress is exactly isotropic at b = m I and loses no accuracy for nearly equal eigenvalues.

Consistent tangent (chain rule): the algorithmic modulus in principal log strains
D_ab = (K - 2 mu y/3) + 2 mu y delta_ab + 2 mu (gamma - y) N_a N_b, gamma = d sigma_e / d sigma_e_tr
= y / (y + n (1 - y)), N = dev(ee_tr)/|dev(ee_tr)|; the derivative of the isotropic function
tau(b) (normal part: d e_a = (P_a : db)/(2 l_a); shear part: g12); db = dF G F^T + F G dF^T,
G = J_l^(-2/3) Cp^-1; and dP = dtau F^-T - tau F^-T dF^T F^-T. In components:

    dP_iJ/dF_kL = g12 delta_ik G_LJ + (g12 V_iL - P_iL) Finv_Jk + sum_a (P_a F^-T)_iJ w_a,kL,
    V = F G,  w_a = sum_b D_ab (P_b V)/l_b - 2 g12 (P_a V),

with P_a = (I +- U)/2 the in-plane eigenprojections of b (U = (b - m I)/r). The w_a terms that
depend on U carry factors O(r) (1/l_a - f12, N_1 - N_2), so an ill-determined U near r = 0 does not
spoil the tangent. The tangent is major-symmetric (the update derives from an incremental potential).
"""


from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .. import materials
from . import MaterialLaw, PointResponse, StateVariable, register

class CreepUpdate(NamedTuple):
    P: np.ndarray  # (N,2,2) first Piola-Kirchhoff (in-plane)
    dPdF: np.ndarray | None  # (N,2,2,2,2) dP_iJ / dF_kL
    tau: np.ndarray  # (N,4) Kirchhoff [11,22,12,33]
    sigma: np.ndarray  # (N,4) Cauchy
    vm: np.ndarray  # (N,) von Mises of Cauchy (3D, with sigma_33)
    Cp_inv: np.ndarray  # (N,4) updated [C11, C22, C12, C33]
    deps: np.ndarray  # (N,) equivalent creep strain increment of the step
    iters: int  # most local Newton iterations at any point
    ratio: np.ndarray | None = None  # (N,) sigma_e / sigma_e_trial of the return (1 = elastic step)



def von_mises(s4):
    """Von Mises equivalent of (N,4) stresses [11, 22, 12, 33] (plane strain: 13 = 23 = 0)."""
    s4 = np.asarray(s4, dtype=float)
    tr = (s4[:, 0] + s4[:, 1] + s4[:, 3]) / 3.0
    d0, d1, d3 = s4[:, 0] - tr, s4[:, 1] - tr, s4[:, 3] - tr
    return np.sqrt(1.5 * (d0 * d0 + d1 * d1 + d3 * d3 + 2.0 * s4[:, 2] * s4[:, 2]))



def update(F2, Cp_inv_n, Jl, mu, lam, A, n, sigma_ref, dt, *, tangent=True) -> CreepUpdate:
    """Backward-Euler Hencky/Norton update at N points (numba kernel); see the module docstring.

    Takes F2 (N,2,2) in-plane deformation gradients (F33 = 1); Cp_inv_n (N,4) state at the start
    of the step; Jl, mu, lam, A, n, sigma_ref, dt scalars or (N,) arrays (A = 0 or dt = 0:
    elastic). Returns a CreepUpdate (dPdF is None unless `tangent`)."""
    return _update_numba(F2, Cp_inv_n, Jl, mu, lam, A, n, sigma_ref, dt, tangent)



def _prop(v, N):
    v = np.ascontiguousarray(np.asarray(v, dtype=float).reshape(-1))
    if v.shape[0] not in (1, N):
        raise ValueError(f"property of length {v.shape[0]} for {N} points")
    return v


def _update_numba(F2, Cp_inv_n, Jl, mu, lam, A, n, sigma_ref, dt, tangent):
    F = np.ascontiguousarray(np.asarray(F2, dtype=float).reshape(-1, 4))
    N = F.shape[0]
    C = np.ascontiguousarray(np.asarray(Cp_inv_n, dtype=float).reshape(N, 4))
    props = [_prop(v, N) for v in (Jl, mu, lam, A, n, sigma_ref, dt)]
    P = np.empty((N, 2, 2))
    dPdF = np.empty((N if tangent else 0, 2, 2, 2, 2))
    tau, sig, Cn = np.empty((N, 4)), np.empty((N, 4)), np.empty((N, 4))
    vm, deps, ratio = np.empty(N), np.empty(N), np.empty(N)
    iters = _get_kernel()(F, C, *props, bool(tangent), P, dPdF, tau, sig, vm, Cn, deps, ratio)
    return CreepUpdate(P, dPdF if tangent else None, tau, sig, vm, Cn, deps, int(iters), ratio)


def _kernel_py(F, C, Jl_, mu_, lam_, A_, n_, sref_, dt_, tangent, Pout, Dout, tau, sig, vm, Cn, deps, ratio):
    """Per point: the return mapping, stresses, internal variable and tangent; compiled with numba."""
    N = F.shape[0]
    maxit = 0
    sJ, smu, slam, sA, sn, ssr, sdt = (Jl_.shape[0] > 1, mu_.shape[0] > 1, lam_.shape[0] > 1, A_.shape[0] > 1,
                                       n_.shape[0] > 1, sref_.shape[0] > 1, dt_.shape[0] > 1)
    for p in range(N):
        Jl = Jl_[p if sJ else 0]
        mu = mu_[p if smu else 0]
        lam = lam_[p if slam else 0]
        A = A_[p if sA else 0]
        n = n_[p if sn else 0]
        sref = sref_[p if ssr else 0]
        dt = dt_[p if sdt else 0]
        K = lam + (2.0 / 3.0) * mu
        f00, f01, f10, f11 = F[p, 0], F[p, 1], F[p, 2], F[p, 3]
        s23 = math.exp((-2.0 / 3.0) * math.log(Jl))
        G00, G11, G01, g33 = s23 * C[p, 0], s23 * C[p, 1], s23 * C[p, 2], s23 * C[p, 3]
        V00, V01 = f00 * G00 + f01 * G01, f00 * G01 + f01 * G11
        V10, V11 = f10 * G00 + f11 * G01, f10 * G01 + f11 * G11
        b00, b11, b01 = V00 * f00 + V01 * f01, V10 * f10 + V11 * f11, V00 * f10 + V01 * f11
        J = f00 * f11 - f01 * f10
        detb = J * J * (G00 * G11 - G01 * G01)
        m = 0.5 * (b00 + b11)
        h = 0.5 * (b00 - b11)
        r = math.sqrt(h * h + b01 * b01)
        l1 = m + r
        x = r / m
        a = 0.5 * math.log1p(2.0 * r * l1 / detb)
        if x < 1e-3:
            x2 = x * x
            ath = 1.0 + x2 * (1.0 / 3.0 + x2 * (0.2 + x2 / 7.0))
        else:
            ath = a / x
        f12 = ath / m
        em = 0.25 * math.log(detb)
        e3 = 0.5 * math.log(g33)
        d = em - e3
        tr = 2.0 * em + e3
        devn2 = (2.0 / 3.0) * d * d + 0.5 * a * a
        se_tr = mu * math.sqrt(4.0 * d * d + 3.0 * a * a)
        # radial return: y + k y^n = 1, Newton in z = ln y
        y, omy, z = 1.0, 0.0, 0.0
        if mu * A * dt > 0.0 and (se_tr > 0.0 or n == 1.0):
            lse = 0.0 if n == 1.0 else (n - 1.0) * math.log(se_tr)
            log_k = math.log(3.0 * mu * dt * A) + lse - n * math.log(sref)
            z = min(0.0, -log_k / n)
            it = 0
            while it < 60:
                it += 1
                eam1 = math.expm1(z)
                ea = eam1 + 1.0
                eb = math.exp(min(log_k + n * z, 700.0))
                fp = ea + n * eb
                dz = (eam1 + eb) / fp
                L = 0.5 * dz * (ea + n * n * eb) / fp
                if L < 0.5:
                    dz = dz / (1.0 - L)
                z = z - dz
                if not n * dz * dz > 1e-16:
                    break
            maxit = max(maxit, it)
            y = math.exp(z)
            omy = -math.expm1(z)
        deps[p] = se_tr * omy / (3.0 * mu)
        ratio[p] = y
        # stresses
        g12 = mu * y * f12
        Ktr = K * tr
        muyd = mu * y * d
        tm = Ktr + (2.0 / 3.0) * muyd
        t00, t11, t01 = tm + g12 * h, tm - g12 * h, g12 * b01
        t33 = Ktr - (4.0 / 3.0) * muyd
        iJ = 1.0 / J
        i00, i01, i10, i11 = f11 * iJ, -f01 * iJ, -f10 * iJ, f00 * iJ
        P00, P01 = t00 * i00 + t01 * i01, t00 * i10 + t01 * i11
        P10, P11 = t01 * i00 + t11 * i01, t01 * i10 + t11 * i11
        Pout[p, 0, 0], Pout[p, 0, 1], Pout[p, 1, 0], Pout[p, 1, 1] = P00, P01, P10, P11
        tau[p, 0], tau[p, 1], tau[p, 2], tau[p, 3] = t00, t11, t01, t33
        s0, s1, s2, s3 = t00 * iJ, t11 * iJ, t01 * iJ, t33 * iJ
        sig[p, 0], sig[p, 1], sig[p, 2], sig[p, 3] = s0, s1, s2, s3
        st = (s0 + s1 + s3) / 3.0
        vm[p] = math.sqrt(1.5 * ((s0 - st) ** 2 + (s1 - st) ** 2 + (s3 - st) ** 2 + 2.0 * s2 * s2))
        # internal variable
        trd = tr / 3.0
        ya = y * a
        lnE = 2.0 * trd + (2.0 / 3.0) * y * d
        B1, B2 = math.exp(lnE + ya), math.exp(lnE - ya)
        E = math.sqrt(B1 * B2)
        if abs(ya) < 0.1:
            ya2 = ya * ya
            shc = 1.0 + ya2 * (1.0 / 6.0 + ya2 * (1.0 / 120.0 + ya2 * (1.0 / 5040.0 + ya2 / 362880.0)))
        else:
            shc = 0.5 * (B1 - B2) / E / ya
        Bm = 0.5 * (B1 + B2)
        Bd = E * y * shc * f12
        q00, q11, q01 = Bm + Bd * h, Bm - Bd * h, Bd * b01
        u00, u01 = i00 * q00 + i01 * q01, i00 * q01 + i01 * q11
        u10, u11 = i10 * q00 + i11 * q01, i10 * q01 + i11 * q11
        is23 = 1.0 / s23
        if omy == 0.0:
            Cn[p, 0], Cn[p, 1], Cn[p, 2], Cn[p, 3] = C[p, 0], C[p, 1], C[p, 2], C[p, 3]
        else:
            Cn[p, 0] = (u00 * i00 + u01 * i01) * is23
            Cn[p, 1] = (u10 * i10 + u11 * i11) * is23
            Cn[p, 2] = (u00 * i10 + u01 * i11) * is23
            Cn[p, 3] = detb * g33 / (B1 * B2) * is23
        if not tangent:
            continue
        gamma = y / (y + n * omy)
        devn = math.sqrt(devn2)
        idn = 1.0 / devn if devn > 0.0 else 0.0
        N1, N2 = (d / 3.0 + 0.5 * a) * idn, (d / 3.0 - 0.5 * a) * idn
        if r > 0.0:
            ch, sh = h / r, b01 / r
        else:
            ch, sh = 1.0, 0.0
        l2 = detb / l1
        W00, W01 = ch * V00 + sh * V10, ch * V01 + sh * V11
        W10, W11 = sh * V00 - ch * V10, sh * V01 - ch * V11
        il1, il2 = 1.0 / l1, 1.0 / l2
        cK = K - (2.0 / 3.0) * mu * y
        cN = 2.0 * mu * (gamma - y)
        c1 = 2.0 * mu * y * (il1 - f12)
        c2 = 2.0 * mu * y * (il2 - f12)
        X00, X01 = ch * i00 + sh * i01, ch * i10 + sh * i11
        X10, X11 = sh * i00 - ch * i01, sh * i10 - ch * i11
        for kL in range(4):
            k, L = kL // 2, kL % 2
            if kL == 0:
                v_, u_ = V00, W00
            elif kL == 1:
                v_, u_ = V01, W01
            elif kL == 2:
                v_, u_ = V10, W10
            else:
                v_, u_ = V11, W11
            S1, S2 = 0.5 * (v_ + u_), 0.5 * (v_ - u_)
            de1, de2 = S1 * il1, S2 * il2
            base = cK * (de1 + de2)
            nd = cN * (N1 * de1 + N2 * de2)
            w1 = base + N1 * nd + c1 * S1
            w2 = base + N2 * nd + c2 * S2
            for iJc in range(4):
                i, Jc = iJc // 2, iJc % 2
                if iJc == 0:
                    ft, xx = i00, X00
                elif iJc == 1:
                    ft, xx = i10, X01
                elif iJc == 2:
                    ft, xx = i01, X10
                else:
                    ft, xx = i11, X11
                VL = (V00 if L == 0 else V01) if i == 0 else (V10 if L == 0 else V11)
                PL = (P00 if L == 0 else P01) if i == 0 else (P10 if L == 0 else P11)
                FiJk = (i00 if k == 0 else i01) if Jc == 0 else (i10 if k == 0 else i11)
                v = 0.5 * (ft + xx) * w1 + 0.5 * (ft - xx) * w2 + (g12 * VL - PL) * FiJk
                if i == k:
                    v += g12 * ((G00 if Jc == 0 else G01) if L == 0 else (G01 if Jc == 0 else G11))
                Dout[p, i, Jc, k, L] = v
    return maxit


_KERNEL = []


def _get_kernel():
    """Compile on first use (numba imported lazily: ~0.3 s; cached machine code loads in ~0.2 s,
    a first compilation takes a few seconds and is stored in __pycache__ beside this file)."""
    if not _KERNEL:
        import numba

        _KERNEL.append(numba.njit(cache=True, nogil=True, error_model="numpy")(_kernel_py))
    return _KERNEL[0]



#: the largest step ratio dt / dt_prev of a BDF2 step (variable-step BDF2 is zero-stable below 1 + sqrt 2)
OMEGA_MAX = 2.0


def _sym2_fun(C, fm, fdiff):
    """f of the in-plane SPD blocks [[C11, C12], [C12, C22]] of (N,4) rows [C11, C22, C12, C33]
    (and f(C33)), without eigenvectors: f(M) = a I + b (M - m I) with m = tr M / 2, r the half
    eigenvalue gap, a = (f(m + r) + f(m - r)) / 2, b = (f(m + r) - f(m - r)) / (2 r); fm(m, r)
    returns a and fdiff(m, r) returns b (smooth at r = 0)."""
    m = 0.5 * (C[:, 0] + C[:, 1])
    h = 0.5 * (C[:, 0] - C[:, 1])
    r = np.sqrt(h * h + C[:, 2] ** 2)
    a, b = fm(m, r), fdiff(m, r)
    return np.stack([a + b * h, a - b * h, b * C[:, 2]], axis=1)


def _log_fm(m, r):
    return 0.5 * np.log((m - r) * (m + r))


def _log_fdiff(m, r):
    x = r / m
    small = x < 1e-4
    xs = np.where(small, 0.5, x)
    return np.where(small, (1.0 + x * x / 3.0) / m, np.arctanh(xs) / (xs * m))


def _exp_fm(m, r):
    return np.exp(m) * np.cosh(r)


def _exp_fdiff(m, r):
    small = r < 1e-4
    rs = np.where(small, 1.0, r)
    return np.exp(m) * np.where(small, 1.0 + r * r / 6.0, np.sinh(rs) / rs)


def extrapolate_cp(Cn, Cm, c):
    """Cp_inv* = exp(ln Cn + c (ln Cn - ln Cm)) for (N,4) rows [C11, C22, C12, C33] (the in-plane
    block and C33 separately; c scalar or (N,)), scaled to det = 1 against round-off."""
    c = np.broadcast_to(np.asarray(c, dtype=float), (len(Cn),))
    Ln = _sym2_fun(Cn, _log_fm, _log_fdiff)
    L = Ln + c[:, None] * (Ln - _sym2_fun(Cm, _log_fm, _log_fdiff))
    out = np.empty_like(Cn)
    out[:, :3] = _sym2_fun(np.column_stack([L, np.zeros(len(L))]), _exp_fm, _exp_fdiff)
    l33 = np.log(Cn[:, 3])
    out[:, 3] = np.exp(l33 + c * (l33 - np.log(Cm[:, 3])))
    det = (out[:, 0] * out[:, 1] - out[:, 2] ** 2) * out[:, 3]
    return out * det[:, None] ** (-1.0 / 3.0)


# ----------------------------------------------------------------------------- the law object
@register
class HenckyNorton(MaterialLaw):
    """Hencky elasticity + isotropic swelling J_l(theta) + Norton creep (J2 flow), backward Euler
    with the exponential map; the config keys of `[materials.<phase>]` (E, nu, J_l,max, `creep`,
    `lithiated`) are its properties. Internal variables: Cp^-1, the equivalent creep strain and its
    rate at the end of the last step (for the error estimate of the next)."""

    name = "hencky_norton"
    state_variables = (
        StateVariable("Cp_inv", 4, (1.0, 1.0, 0.0, 1.0), "inverse creep right Cauchy-Green tensor [C11, C22, C12, C33]"),
        StateVariable("eps_cr", 1, (0.0,), "equivalent creep strain", field="creep_eq"),
        StateVariable("creep_rate", 1, (0.0,), "equivalent creep strain rate at the end of the last step [1/s]"),
        # the history of the two-step (BDF2) integration: the state one step further back
        StateVariable("Cp_inv_prev", 4, (1.0, 1.0, 0.0, 1.0), "Cp_inv at the start of the last step", history=True),
        StateVariable("creep_rate_prev", 1, (0.0,), "creep_rate at the start of the last step [1/s]", history=True),
        StateVariable("dt_prev", 1, (0.0,), "the last step [s] (0: no history yet)", history=True),
        StateVariable("deps_last", 1, (0.0,), "equivalent creep strain increment of the last step", history=True),
    )

    #: time integration of the creep rate: "bdf2" (second order, the default) or "backward_euler";
    #: MaterialPoints sets it from solver.creep_integrator
    integrator = "bdf2"


    @dataclass(frozen=True)
    class Properties:
        """Per phase (floats) or per point (arrays), model units: shear modulus and Lamé lambda
        (/ S0), J_l, Norton rate A [1/s], exponent n, reference stress (/ S0)."""

        mu: float
        lam: float
        Jl: float
        A: float
        n: float
        sigma_ref: float

    def properties(self, material, theta, temperature, scaling):
        el = materials.elastic(material, theta)
        cr = materials.norton(material, theta, temperature)
        S0 = scaling.stress
        return self.Properties(el.mu / S0, el.lam / S0, el.Jl, cr.A, cr.n, cr.sigma_ref / S0)

    def _bdf2(self, state, dt):
        """The variable-step BDF2 coefficients of a step dt at each point, or None (backward Euler
        everywhere): eps_{n+1} = eps_n + c (eps_n - eps_{n-1}) + beta dt rate(sigma_{n+1}),
        c = w^2 / (1 + 2w), beta = (1 + w) / (1 + 2w), w = dt / dt_prev. Returns (c, beta, w, use):
        `use` marks the points with a last step and w <= OMEGA_MAX (zero-stability of variable-step
        BDF2 needs w < 1 + sqrt 2); the others take a backward Euler step (c = 0, beta = 1)."""
        if self.integrator != "bdf2" or dt <= 0:
            return None
        dtp = np.asarray(state["dt_prev"], dtype=float)
        use = (dtp > 0) & (dt <= OMEGA_MAX * dtp)
        if not use.any():
            return None
        w = np.where(use, dt / np.where(use, dtp, 1.0), 1.0)
        c = np.where(use, w * w / (1.0 + 2.0 * w), 0.0)
        beta = np.where(use, (1.0 + w) / (1.0 + 2.0 * w), 1.0)
        return c, beta, w, use

    def start(self, state, props, dt):
        """The step's start state of the return, once per step (MaterialPoints passes it back as
        state["_start"]): Cp_inv_n, or BDF2's extrapolated Cp_inv* (see update)."""
        b = self._bdf2(state, dt)
        if b is None:
            return None
        c, _, _, use = b
        return np.where(use[:, None], extrapolate_cp(state["Cp_inv"], state["Cp_inv_prev"], c), state["Cp_inv"])

    def update(self, F, state, props, dt, tangent):
        """One step. Backward Euler is the return from Cp_inv_n over dt; a BDF2 step is the same
        return from the extrapolated Cp_inv* = exp(ln Cp_inv_n + c (ln Cp_inv_n - ln Cp_inv_{n-1}))
        over beta dt (the explicit part of BDF2 moves the creep strain by c times the last step's,
        in log space, which is exact for coaxial flow; the implicit part is backward Euler, with its
        incremental potential, its tangent and its stability)."""
        b = self._bdf2(state, dt)
        C0, h, c = state["Cp_inv"], dt, 0.0
        if b is not None:
            c, beta, _, use = b
            C0 = state.get("_start")
            if C0 is None:
                C0 = self.start(state, props, dt)
            h = beta * dt
        r = update(F, C0, props.Jl, props.mu, props.lam, props.A, props.n, props.sigma_ref, h, tangent=tangent)
        if dt <= 0:  # no time passes: the rates and the history stay
            new = {"Cp_inv": r.Cp_inv, "eps_cr": state["eps_cr"] + r.deps}
            new.update({k: state[k].copy() for k in ("creep_rate", "Cp_inv_prev", "creep_rate_prev", "dt_prev",
                                                     "deps_last")})
        else:
            d_total = r.deps + c * state["deps_last"]
            new = {"Cp_inv": r.Cp_inv, "eps_cr": state["eps_cr"] + d_total, "creep_rate": r.deps / h,
                   "Cp_inv_prev": state["Cp_inv"].copy(), "creep_rate_prev": state["creep_rate"].copy(),
                   "dt_prev": np.full(len(r.deps), float(dt)), "deps_last": d_total}
        return PointResponse(r.P, r.dPdF, r.tau, r.sigma, r.vm, new, r.deps, r.ratio)

    def step_increment(self, response, dt):
        """The equivalent creep strain increment of the step: the return's (response.deps) plus,
        in a BDF2 step, the explicit part c x the last step's."""
        return response.state["deps_last"] if dt > 0 else response.deps

    def error_order(self, state, dt) -> int:
        """The order in dt of the local error estimate of a step: 3 where every point takes a BDF2
        step, else 2 (backward Euler)."""
        b = self._bdf2(state, dt)
        return 3 if b is not None and b[3].all() else 2

    def step_error(self, response, state, props, dt):
        """The local error of the step in equivalent stress. Backward Euler (a first step, or
        `integrator = "backward_euler"`): 3 mu e / (1 + k dt), where e = |d_eps - dt rate_n| / 2 is the error of the creep increment along
        the stress path (rate_n: the creep rate at the start of the step, i.e. at the end of the
        last one; Abaqus' CETOL compares the same two increments), 3 mu e the stress it would move
        at a fixed strain, and 1 + k dt how much of it the implicit step takes back:
        k = 3 mu d(rate)/d(sigma_e) = 3 mu n rate / sigma_e is the point's relaxation rate, so
        k dt = n (1 / ratio - 1) with ratio = sigma_e / sigma_e,trial of the return. For Maxwell
        relaxation (n = 1) this is the exact leading term of the local error, -k dt^2 sigma' /
        (2 (1 + k dt)); a point that relaxes many times within the step (k dt >> 1) follows its
        quasi-steady stress and contributes little (docs/physics.md). With
        `integrator = "backward_euler"` the estimate is 3 mu e alone, as before BDF2 (such runs
        reproduce the earlier ones). BDF2 steps: see below."""
        if dt <= 0:
            return np.zeros(len(response.vm))
        e = 1.5 * props.mu * np.abs(response.deps - dt * state["creep_rate"])
        b = self._bdf2(state, dt)
        if b is not None:
            # BDF2 (Milne's device): its local error is K(w) times its difference from the explicit
            # two-step Adams-Bashforth increment, K = L / (L + A_B), with the error constants
            # L = (1 + w)^2 / (6 w (1 + 2w)) of BDF2 and A_B = (2 + 3/w) / 12 of AB2 (8/23 at w = 1)
            c, beta, w, use = b
            total = response.deps + c * state["deps_last"]
            ab2 = dt * ((1.0 + 0.5 * w) * state["creep_rate"] - 0.5 * w * state["creep_rate_prev"])
            L = (1.0 + w) ** 2 / (6.0 * w * (1.0 + 2.0 * w))
            K = L / (L + (2.0 + 3.0 / w) / 12.0)
            e = np.where(use, 3.0 * props.mu * K * np.abs(total - ab2), e)
        if response.ratio is None or self.integrator != "bdf2":
            return e  # backward_euler: the estimate of the runs made before BDF2, unchanged
        ratio = np.clip(response.ratio, 1e-12, 1.0)
        return e / (1.0 + props.n * (1.0 / ratio - 1.0))

    def energy_density(self, response, F, props):
        """W = psi(ee) + n/(n+1) d_eps sigma_e: the Hencky energy plus the Norton dissipation of the
        step (its derivative in F is P), per reference area; inf where det F <= 0."""
        mu, lam, n = props.mu, props.lam, props.n
        K = lam + 2.0 * mu / 3.0
        t = response.tau
        tr = t[:, 0] + t[:, 1] + t[:, 3]
        dev = t.copy()
        dev[:, [0, 1, 3]] -= tr[:, None] / 3.0
        dd = dev[:, 0] ** 2 + dev[:, 1] ** 2 + dev[:, 3] ** 2 + 2.0 * dev[:, 2] ** 2
        se = np.sqrt(1.5 * dd)
        W = tr**2 / (18.0 * K) + dd / (4.0 * mu) + n / (n + 1.0) * response.deps * se
        J = F[:, 0, 0] * F[:, 1, 1] - F[:, 0, 1] * F[:, 1, 0]
        return np.where(J > 0, W, np.inf)
