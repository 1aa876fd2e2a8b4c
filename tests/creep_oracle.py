r"""Test oracle: a vectorised NumPy transcription of the Hencky/Norton update
(creep_cathode.laws.hencky_norton), written independently of the numba kernel so that the two
can be compared point by point. Not used by the simulator.
"""

from __future__ import annotations

import numpy as np

from creep_cathode.laws.hencky_norton import CreepUpdate, von_mises

def _atanh_over_x(x, a):
    """atanh(x)/x given a = atanh(x) (accurate for all x in [0, 1): series below 1e-3)."""
    small = x < 1e-3
    x2 = x * x
    return np.where(small, 1.0 + x2 * (1.0 / 3.0 + x2 * (0.2 + x2 / 7.0)), a / np.where(small, 1.0, x))


def _sinhc(z, B1, B2):
    """sinh(z)/z given B1/B2 = exp(2 z) (series below |z| = 0.1, error < 3e-18)."""
    small = np.abs(z) < 0.1
    z2 = z * z
    ser = 1.0 + z2 * (1.0 / 6.0 + z2 * (1.0 / 120.0 + z2 * (1.0 / 5040.0 + z2 / 362880.0)))
    return np.where(small, ser, 0.5 * (B1 - B2) / np.sqrt(B1 * B2) / np.where(small, 1.0, z))


def return_ratio(log_k, n, maxit=60, tol=1e-16):
    """Solve y + k y^n = 1 for y = exp(z) in (0, 1], k = exp(log_k) (log_k may be -inf).

    Halley (Newton where Halley's correction would more than double the step) in z from
    z0 = min(0, -log_k/n) (f(z0) >= 0, f increasing and convex). Stops when n dz^2 <= tol: the
    error left after a step is below f''/(2 f') dz^2 <= n dz^2 / 2 (5e-17 in z, i.e. relative in y).
    At most 5 iterations for n in [1, 50] and any k. Returns z = ln y, 1 - y (accurate for y near 1)
    and the iteration count (only unconverged points are iterated)."""
    log_k = np.asarray(log_k, dtype=float)
    n = np.broadcast_to(np.asarray(n, dtype=float), log_k.shape)
    with np.errstate(invalid="ignore"):
        z = np.minimum(0.0, -log_k / n)
    z = np.where(np.isfinite(z), z, 0.0)  # log_k = -inf: y = 1
    act = np.flatnonzero(np.isfinite(log_k))
    it = 0
    while act.size and it < maxit:
        it += 1
        za, lk, na = z[act], log_k[act], n[act]
        am1 = np.expm1(za)  # f = e^z - 1 + k e^(nz) without cancellation for tiny k
        a = am1 + 1.0
        b = np.exp(np.minimum(lk + na * za, 700.0))
        f, fp = am1 + b, a + na * b
        dz = f / fp
        L = 0.5 * dz * (a + na * na * b) / fp  # Halley: dz / (1 - f f''/(2 f'^2)) while that is < 2 dz
        dz = np.where(L < 0.5, dz / (1.0 - L), dz)
        z[act] = za - dz
        act = act[na * dz * dz > tol]
    return z, -np.expm1(z), it



def update(F2, Cp_inv_n, Jl, mu, lam, A, n, sigma_ref, dt, *, tangent=True) -> CreepUpdate:
    """Same call and result as creep_cathode.laws.hencky_norton.update, in NumPy."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # det F = 0 gives NaN, as numba
        return _update_numpy(F2, Cp_inv_n, Jl, mu, lam, A, n, sigma_ref, dt, tangent)


def _update_numpy(F2, Cp_inv_n, Jl, mu, lam, A, n, sigma_ref, dt, tangent):
    F2 = np.asarray(F2, dtype=float)
    N = F2.shape[0]

    def bc(v):
        return np.broadcast_to(np.asarray(v, dtype=float), (N,))

    Jl, mu, lam, A, n, sref, dt = map(bc, (Jl, mu, lam, A, n, sigma_ref, dt))
    K = lam + (2.0 / 3.0) * mu
    f00, f01, f10, f11 = np.ascontiguousarray(F2.reshape(N, 4).T)
    c0, c1, c2, c3 = np.ascontiguousarray(np.asarray(Cp_inv_n, dtype=float).reshape(N, 4).T)
    s23 = np.exp((-2.0 / 3.0) * np.log(Jl))
    G00, G11, G01, g33 = s23 * c0, s23 * c1, s23 * c2, s23 * c3
    # V = F G, b = V F^T
    V00, V01 = f00 * G00 + f01 * G01, f00 * G01 + f01 * G11
    V10, V11 = f10 * G00 + f11 * G01, f10 * G01 + f11 * G11
    b00, b11, b01 = V00 * f00 + V01 * f01, V10 * f10 + V11 * f11, V00 * f10 + V01 * f11
    J = f00 * f11 - f01 * f10
    detb = J * J * (G00 * G11 - G01 * G01)
    m = 0.5 * (b00 + b11)
    h = 0.5 * (b00 - b11)
    r = np.sqrt(h * h + b01 * b01)
    l1 = m + r
    x = r / m
    a = 0.5 * np.log1p(2.0 * r * l1 / detb)  # e1 - e2 = atanh(x)
    f12 = _atanh_over_x(x, a) / m
    em = 0.25 * np.log(detb)  # (e1 + e2)/2
    e3 = 0.5 * np.log(g33)
    d = em - e3
    tr = 2.0 * em + e3
    devn2 = (2.0 / 3.0) * d * d + 0.5 * a * a  # |dev ee_tr|^2
    se_tr = mu * np.sqrt(4.0 * d * d + 3.0 * a * a)  # sqrt(3/2) 2 mu |dev ee_tr|

    # ---- radial return
    y = np.ones(N)
    omy = np.zeros(N)  # 1 - y
    z = np.zeros(N)
    iters = 0
    creeping = (mu * A * dt > 0.0) & ((se_tr > 0.0) | (n == 1.0))
    if creeping.any():
        i = np.flatnonzero(creeping)
        ni = n[i]
        with np.errstate(divide="ignore"):
            lse = np.where(ni == 1.0, 0.0, (ni - 1.0) * np.log(se_tr[i]))
            log_k = np.log(3.0 * mu[i] * dt[i] * A[i]) + lse - ni * np.log(sref[i])
        z[i], omy[i], iters = return_ratio(log_k, ni)
        y[i] = np.exp(z[i])
    deps = se_tr * omy / (3.0 * mu)

    # ---- stresses
    g12 = mu * y * f12  # (tau1 - tau2)/(l1 - l2)
    Ktr = K * tr
    muyd = mu * y * d
    tm = Ktr + (2.0 / 3.0) * muyd
    t00, t11, t01 = tm + g12 * h, tm - g12 * h, g12 * b01
    t33 = Ktr - (4.0 / 3.0) * muyd
    iJ = 1.0 / J
    i00, i01, i10, i11 = f11 * iJ, -f01 * iJ, -f10 * iJ, f00 * iJ  # F^-1
    # P = tau F^-T: P_iJ = tau_im Finv_Jm
    P00, P01 = t00 * i00 + t01 * i01, t00 * i10 + t01 * i11
    P10, P11 = t01 * i00 + t11 * i01, t01 * i10 + t11 * i11
    P = np.empty((N, 2, 2))
    P[:, 0, 0], P[:, 0, 1], P[:, 1, 0], P[:, 1, 1] = P00, P01, P10, P11
    tau4 = np.stack([t00, t11, t01, t33], axis=1)
    sig4 = tau4 * iJ[:, None]
    vm = von_mises(sig4)

    # ---- internal variable: Cp^-1 = J_l^(2/3) F^-1 be F^-T, be = E (cosh(y a) I + sinh(y a)/r (b - m I))
    trd = tr / 3.0
    ya = y * a
    lnE = 2.0 * trd + (2.0 / 3.0) * y * d
    B1, B2 = np.exp(lnE + ya), np.exp(lnE - ya)  # principal values of be (in-plane)
    Bm = 0.5 * (B1 + B2)
    Bd = np.sqrt(B1 * B2) * y * _sinhc(ya, B1, B2) * f12  # (B1 - B2)/(l1 - l2) * (l1 - l2)/(2 r)
    q00, q11, q01 = Bm + Bd * h, Bm - Bd * h, Bd * b01
    u00, u01 = i00 * q00 + i01 * q01, i00 * q01 + i01 * q11  # F^-1 be
    u10, u11 = i10 * q00 + i11 * q01, i10 * q01 + i11 * q11
    is23 = 1.0 / s23
    Cnew = np.empty((N, 4))
    Cnew[:, 0] = (u00 * i00 + u01 * i01) * is23
    Cnew[:, 1] = (u10 * i10 + u11 * i11) * is23
    Cnew[:, 2] = (u00 * i10 + u01 * i11) * is23
    Cnew[:, 3] = detb * g33 / (B1 * B2) * is23  # be_33 = exp(2 tr ee - ln(B1 B2)): det Cp^-1 conserved
    el = omy == 0.0  # no flow: the state is kept exactly (not recomputed through F^-1 be F^-T)
    Cnew[el] = np.asarray(Cp_inv_n, dtype=float).reshape(N, 4)[el]

    dPdF = None
    if tangent:
        dPdF = _tangent(N, y, omy, n, mu, K, d, a, devn2, r, h, b01, m, l1, detb, f12, g12,
                        (V00, V01, V10, V11), (G00, G01, G11), (i00, i01, i10, i11), (P00, P01, P10, P11))
    return CreepUpdate(P, dPdF, tau4, sig4, vm, Cnew, deps, int(iters), y)


def _tangent(N, y, omy, n, mu, K, d, a, devn2, r, h, b01, m, l1, detb, f12, g12, V, G, Fi, P):
    V00, V01, V10, V11 = V
    G00, G01, G11 = G
    i00, i01, i10, i11 = Fi
    gamma = y / (y + n * omy)
    devn = np.sqrt(devn2)
    pos = devn > 0.0
    idn = np.where(pos, 1.0 / np.where(pos, devn, 1.0), 0.0)
    N1, N2 = (d / 3.0 + 0.5 * a) * idn, (d / 3.0 - 0.5 * a) * idn
    rp = r > 0.0
    ir = 1.0 / np.where(rp, r, 1.0)
    ch, sh = np.where(rp, h * ir, 1.0), np.where(rp, b01 * ir, 0.0)
    l2 = detb / l1
    # S_a = P_a V with P_1 = (I + U)/2, P_2 = (I - U)/2, U = [[ch, sh], [sh, -ch]]
    W00, W01 = ch * V00 + sh * V10, ch * V01 + sh * V11  # U V
    W10, W11 = sh * V00 - ch * V10, sh * V01 - ch * V11
    S1 = (0.5 * (V00 + W00), 0.5 * (V01 + W01), 0.5 * (V10 + W10), 0.5 * (V11 + W11))
    S2 = (0.5 * (V00 - W00), 0.5 * (V01 - W01), 0.5 * (V10 - W10), 0.5 * (V11 - W11))
    # w_a = (K - 2 mu y/3)(de1 + de2) + 2 mu (gamma - y) N_a (N1 de1 + N2 de2) + 2 mu y (1/l_a - f12) S_a,
    # de_b = S_b / l_b
    il1, il2 = 1.0 / l1, 1.0 / l2
    cK = K - (2.0 / 3.0) * mu * y
    cN = 2.0 * mu * (gamma - y)
    c1 = 2.0 * mu * y * (il1 - f12)
    c2 = 2.0 * mu * y * (il2 - f12)
    w1, w2 = [], []
    for s1, s2 in zip(S1, S2):
        de1, de2 = s1 * il1, s2 * il2
        base = cK * (de1 + de2)
        nd = cN * (N1 * de1 + N2 * de2)
        w1.append(base + N1 * nd + c1 * s1)
        w2.append(base + N2 * nd + c2 * s2)
    # R_a = P_a F^-T: R_a,iJ = (P_a)_im Finv_Jm ; P_a = (I +- U)/2
    X00, X01 = ch * i00 + sh * i01, ch * i10 + sh * i11  # U F^-T
    X10, X11 = sh * i00 - ch * i01, sh * i10 - ch * i11
    FT = (i00, i10, i01, i11)  # F^-T components (0,0), (0,1), (1,0), (1,1)
    X = (X00, X01, X10, X11)
    R1 = [0.5 * (f + u) for f, u in zip(FT, X)]
    R2 = [0.5 * (f - u) for f, u in zip(FT, X)]
    Gm = ((G00, G01), (G01, G11))
    Vm = ((V00, V01), (V10, V11))
    Pm = ((P[0], P[1]), (P[2], P[3]))
    Fim = ((i00, i01), (i10, i11))
    out = np.empty((N, 2, 2, 2, 2))
    for iJ_ in range(4):
        i, Jc = divmod(iJ_, 2)
        r1, r2 = R1[iJ_], R2[iJ_]
        for kL in range(4):
            k, L = divmod(kL, 2)
            v = r1 * w1[kL] + r2 * w2[kL] + (g12 * Vm[i][L] - Pm[i][L]) * Fim[Jc][k]
            if i == k:
                v = v + g12 * Gm[L][Jc]
            out[:, i, Jc, k, L] = v
    return out


