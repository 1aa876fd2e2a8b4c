"""Finite-strain Hencky elasticity + Norton creep at quadrature points (pure NumPy, vectorised).

Plane strain: F = [[F11, F12, 0], [F21, F22, 0], [0, 0, 1]]. Multiplicative split F = Fe Fl Fcr,
Fl = J_l^(1/3) I, Fcr isochoric. Internal variable Cp^-1 = Fcr^-1 Fcr^-T stored as (N, 4) =
[C11, C22, C12, C33] (block diagonal), initially [1, 1, 0, 1].

Trial state be = J_l^(-2/3) F Cp^-1 F^T, ee = 1/2 ln be (principal), tau = lam tr(ee) I + 2 mu ee.
Backward Euler with the exponential map (Weber & Anand 1990; Eterovic & Bathe 1990; Simo 1992)
is a radial return in principal logarithmic strains:
    sigma_e = sigma_e_tr - 3 mu d_eps,   d_eps = dt A (sigma_e / sigma_ref)^n,
solved as y + k y^n = 1 for y = sigma_e / sigma_e_tr (k = 3 mu dt A sigma_e_tr^(n-1) / sigma_ref^n,
handled in log form: no overflow for any n). Consistent tangent: the algorithmic modulus
D = K 1x1 + 2 mu beta I_dev + 2 mu (gamma - beta) N x N in log-strain space, chained through the
derivative of the matrix logarithm (Daleckii-Krein, stable divided differences) and P = tau F^-T.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

R_GAS = 8.314462618


class CreepUpdate(NamedTuple):
    P: np.ndarray  # (N,2,2) first Piola-Kirchhoff (in-plane)
    dPdF: np.ndarray | None  # (N,2,2,2,2)
    tau: np.ndarray  # (N,4) Kirchhoff [11,22,12,33]
    sigma: np.ndarray  # (N,4) Cauchy
    vm: np.ndarray  # (N,) von Mises of Cauchy
    Cp_inv: np.ndarray  # (N,4) updated
    deps: np.ndarray  # (N,) equivalent creep strain increment
    iters: int
    ratio: np.ndarray | None = None  # (N,) sigma_e / sigma_e_trial of the return (1 = elastic step)


def arrhenius(Q, T, T_ref):
    return np.exp(-Q / R_GAS * (1.0 / T - 1.0 / T_ref))


def von_mises(s4):
    s4 = np.asarray(s4)
    tr = (s4[:, 0] + s4[:, 1] + s4[:, 3]) / 3.0
    d0, d1, d3 = s4[:, 0] - tr, s4[:, 1] - tr, s4[:, 3] - tr
    return np.sqrt(1.5 * (d0**2 + d1**2 + d3**2 + 2.0 * s4[:, 2] ** 2))


def _mm(A, B):
    """Batched 2x2 product (explicit: numpy's batched matmul is slow for tiny matrices)."""
    C = np.empty(np.broadcast_shapes(A.shape, B.shape))
    C[:, 0, 0] = A[:, 0, 0] * B[:, 0, 0] + A[:, 0, 1] * B[:, 1, 0]
    C[:, 0, 1] = A[:, 0, 0] * B[:, 0, 1] + A[:, 0, 1] * B[:, 1, 1]
    C[:, 1, 0] = A[:, 1, 0] * B[:, 0, 0] + A[:, 1, 1] * B[:, 1, 0]
    C[:, 1, 1] = A[:, 1, 0] * B[:, 0, 1] + A[:, 1, 1] * B[:, 1, 1]
    return C


def _det(A):
    return A[:, 0, 0] * A[:, 1, 1] - A[:, 0, 1] * A[:, 1, 0]


def _inv(A, det):
    B = np.empty_like(A)
    B[:, 0, 0], B[:, 1, 1] = A[:, 1, 1] / det, A[:, 0, 0] / det
    B[:, 0, 1], B[:, 1, 0] = -A[:, 0, 1] / det, -A[:, 1, 0] / det
    return B


def _atanh_over_x(x):
    x = np.clip(x, 0.0, 1.0 - 1e-16)
    small = x < 1e-3
    xs = np.where(small, 0.5, x)
    return np.where(small, 1.0 + x**2 / 3.0 + x**4 / 5.0, np.arctanh(xs) / xs)


def _return_ratio(log_k, n, maxit=60):
    """Solve y + k y^n = 1 for y in (0, 1], k = exp(log_k); returns y and the iteration count."""
    z = np.minimum(0.0, -log_k / n)  # f(z) > 0 here: Newton from the right converges monotonically
    it = 0
    for it in range(1, maxit + 1):
        a = np.exp(z)
        b = np.exp(np.minimum(log_k + n * z, 700.0))
        f = a + b - 1.0
        fp = a + n * b
        dz = f / fp
        z = z - dz
        if np.all(np.abs(dz) < 1e-14):
            break
    return np.exp(z), it


def update(F2, Cp_inv_n, Jl, mu, lam, A, n, sigma_ref, dt, *, tangent=True) -> CreepUpdate:
    F2 = np.asarray(F2, dtype=float)
    N = F2.shape[0]
    bc = lambda x: np.broadcast_to(np.asarray(x, dtype=float), (N,))  # noqa: E731
    Jl, mu, lam, A, n, sref = map(bc, (Jl, mu, lam, A, n, sigma_ref))
    K = lam + 2.0 * mu / 3.0
    C = np.asarray(Cp_inv_n, dtype=float)
    s23 = Jl ** (-2.0 / 3.0)
    G = np.empty((N, 2, 2))
    G[:, 0, 0], G[:, 1, 1], G[:, 0, 1], G[:, 1, 0] = C[:, 0], C[:, 1], C[:, 2], C[:, 2]
    G *= s23[:, None, None]
    g33 = s23 * C[:, 3]
    FT = np.swapaxes(F2, 1, 2)
    H = _mm(G, FT)  # G F^T
    b = _mm(F2, H)
    b11, b22, b12 = b[:, 0, 0], b[:, 1, 1], 0.5 * (b[:, 0, 1] + b[:, 1, 0])
    m = 0.5 * (b11 + b22)
    h = 0.5 * (b11 - b22)
    r = np.sqrt(h * h + b12 * b12)
    l1, l2 = m + r, m - r
    phi = 0.5 * np.arctan2(b12, h)
    c, s = np.cos(phi), np.sin(phi)
    n1 = np.stack([c, s], axis=1)
    n2 = np.stack([-s, c], axis=1)
    # principal trial log strains
    e = np.stack([0.5 * np.log(l1), 0.5 * np.log(l2), 0.5 * np.log(g33)], axis=1)
    tr = e.sum(axis=1)
    dev = e - tr[:, None] / 3.0
    devn = np.sqrt((dev**2).sum(axis=1))
    se_tr = np.sqrt(1.5) * 2.0 * mu * devn
    creeping = (A > 0) & (dt > 0) & (se_tr > 0)
    y = np.ones(N)
    iters = 0
    if creeping.any():
        i = creeping
        with np.errstate(divide="ignore"):
            log_k = (np.log(3.0 * mu[i] * dt * A[i]) + (n[i] - 1.0) * np.log(se_tr[i]) - n[i] * np.log(sref[i]))
        y[i], iters = _return_ratio(log_k, n[i])
    deps = se_tr * (1.0 - y) / (3.0 * mu)
    # updated principal strains and stresses
    e_new = tr[:, None] / 3.0 + y[:, None] * dev
    tau_p = (lam * tr)[:, None] + 2.0 * mu[:, None] * e_new
    P1, P2 = n1[:, :, None] * n1[:, None, :], n2[:, :, None] * n2[:, None, :]
    tau2 = tau_p[:, 0, None, None] * P1 + tau_p[:, 1, None, None] * P2
    J = _det(F2)
    Finv = _inv(F2, J)
    FinvT = np.swapaxes(Finv, 1, 2)
    P = _mm(tau2, FinvT)
    tau4 = np.stack([tau2[:, 0, 0], tau2[:, 1, 1], tau2[:, 0, 1], tau_p[:, 2]], axis=1)
    sig4 = tau4 / J[:, None]
    vm = von_mises(sig4)
    be2 = np.exp(2 * e_new[:, 0])[:, None, None] * P1 + np.exp(2 * e_new[:, 1])[:, None, None] * P2
    Cn2 = _mm(_mm(Finv, be2), FinvT) / s23[:, None, None]
    Cnew = np.stack([Cn2[:, 0, 0], Cn2[:, 1, 1], 0.5 * (Cn2[:, 0, 1] + Cn2[:, 1, 0]),
                     np.exp(2 * e_new[:, 2]) / s23], axis=1)
    dPdF = None
    if tangent:
        # algorithmic modulus in principal log space (3x3 on principal components + shear factor)
        beta = y
        gamma = np.where(creeping, y / (y + n * (1.0 - y)), 1.0)
        Nh = np.where(devn[:, None] > 0, dev / np.where(devn > 0, devn, 1.0)[:, None], 0.0)
        # D_ab (principal normal components), shear modulus for the 12 component: 2 mu beta
        D = (K[:, None, None] * np.ones((1, 3, 3))
             + 2 * (mu * beta)[:, None, None] * (np.eye(3)[None] - 1.0 / 3.0)
             + 2 * (mu * (gamma - beta))[:, None, None] * Nh[:, :, None] * Nh[:, None, :])
        Gs = 2 * mu * beta  # d tau_12 / d e_12 (principal frame shear)
        # divided difference for d ln b: f11 = 1/l1, f22 = 1/l2, f12 = (ln l1 - ln l2)/(l1 - l2)
        f11, f22 = 1.0 / l1, 1.0 / l2
        f12 = _atanh_over_x(np.where(m > 0, r / m, 0.0)) / m
        # shear in the principal frame also produces a rotation of the eigenbasis: the tau shear
        # component follows the Daleckii-Krein formula for tau as a function of b:
        # (d tau)_12 = g12 (db)_12 with g12 = (tau1 - tau2)/(l1 - l2) when eigenvalues differ,
        # limit d tau / d e * f12 ... written uniformly as g12 = (tau1 - tau2) / (e1 - e2) * f12 / 2
        de12 = e[:, 0] - e[:, 1]
        dt12 = tau_p[:, 0] - tau_p[:, 1]
        ratio = np.where(np.abs(de12) > 1e-12, dt12 / np.where(np.abs(de12) > 1e-12, de12, 1.0), Gs)
        g12 = 0.5 * ratio * f12
        Q = np.stack([n1, n2], axis=2)  # columns = eigenvectors: b = Q diag(l) Q^T
        # dF = e_k x e_L  =>  db = e_k x H_L + H_L x e_k with H = G F^T; principal frame with M = H Q:
        # dbp[k, L, a, b] = Q_ka M_Lb + M_La Q_kb
        M = _mm(H, Q)
        dbp = (Q[:, :, None, :, None] * M[:, None, :, None, :]
               + M[:, None, :, :, None] * Q[:, :, None, None, :])  # (N, k, L, a, b)
        de0 = 0.5 * f11[:, None, None] * dbp[..., 0, 0]
        de1 = 0.5 * f22[:, None, None] * dbp[..., 1, 1]
        dtp = np.empty_like(dbp)
        dtp[..., 0, 0] = D[:, 0, 0, None, None] * de0 + D[:, 0, 1, None, None] * de1
        dtp[..., 1, 1] = D[:, 1, 0, None, None] * de0 + D[:, 1, 1, None, None] * de1
        dtp[..., 0, 1] = dtp[..., 1, 0] = g12[:, None, None] * dbp[..., 0, 1]
        # d tau = Q dtp Q^T ; dP_iJ = d tau_im FinvT_mJ - P_iL FinvT_kJ
        # d tau_ij = sum_ab Q_ia dtp_ab Q_jb for the symmetric 2x2 dtp (explicit: einsum is slow
        # on tiny dimensions)
        d00, d11, d01 = dtp[..., 0, 0], dtp[..., 1, 1], dtp[..., 0, 1]  # (N, k, L)
        q = Q[:, None, None]  # (N, 1, 1, i, a)
        dtau = np.empty((N, 2, 2, 2, 2))
        for i in range(2):
            for j in range(i, 2):
                v = (q[..., i, 0] * q[..., j, 0] * d00 + q[..., i, 1] * q[..., j, 1] * d11
                     + (q[..., i, 0] * q[..., j, 1] + q[..., i, 1] * q[..., j, 0]) * d01)
                dtau[..., i, j] = v
                dtau[..., j, i] = v
        # dP_iJ,kL = d tau_im FinvT_mJ - P_iL FinvT_kJ
        dPdF = np.empty((N, 2, 2, 2, 2))
        for i in range(2):
            for J in range(2):
                dPdF[:, i, J] = (dtau[..., i, 0] * FinvT[:, None, None, 0, J]
                                 + dtau[..., i, 1] * FinvT[:, None, None, 1, J]
                                 - P[:, None, i, :] * FinvT[:, :, J, None])
    return CreepUpdate(P, dPdF, tau4, sig4, vm, Cnew, deps, iters, y)
