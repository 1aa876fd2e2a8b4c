"""Replay single time steps from snapshots (serial), to compare Newton variants on hard steps.

    CREEP_CATHODE_SNAPSHOTS=runs/snap .venv/bin/creep-cathode run configs/se_mse.toml -o runs/x ...
    .venv/bin/python scripts/replay_step.py configs/se_mse.toml runs/snap 26 31 40 [--set key=value ...]

Each listed step is rebuilt from runs/snap/stepNNNNN.npz (u at the start of the step, u_n, internal
variables, the predictor's last increment) and solved once as the Stepper does it: predictor, main
solve (+ continuations), proximal re-solves. Prints iterations per solve, iteration kinds, time.
No time-step cut: a failed step is reported as failed.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np


def main(argv):
    sets = []
    args = []
    it = iter(argv)
    for a in it:
        if a == "--set":
            sets.append(next(it))
        else:
            args.append(a)
    cfg_path, snapdir, steps = args[0], args[1], [int(s) for s in args[2:]]
    from creep_cathode.config import load_config
    from creep_cathode.problem import Stepper
    from creep_cathode.simulation import Simulation

    cfg = load_config(cfg_path, sets)
    sim = Simulation(cfg, "/tmp/replay_unused")
    sim.initialise()
    mech = sim.mech
    st = Stepper(cfg, mech, sim._solve, lambda *a: None)
    st.profile = True
    tot = 0
    if os.environ.get("KINKS"):
        mech.on_iterate = _kink_tracker(mech)
    for k in steps:
        z = np.load(f"{snapdir}/step{k:05d}.npz")
        mech.Cp_inv[:] = z["Cp_inv"]
        mech.eps_cr[:] = z["eps_cr"]
        mech.u_n.x.array[:] = z["u_n"]
        mech.u.x.array[:] = z["u"]
        mech._cache = None
        st.du_prev = z["du_prev"] if len(z["du_prev"]) else None
        st.dt_prev = float(z["dt_prev"])
        dt, theta = float(z["dt"]), float(z["theta"])
        mech.set_state(theta, dt)
        u_old = mech.u.x.array.copy()
        st.record = {"solves": [], "attempts": []}
        t0 = time.perf_counter()
        st._predict(u_old, dt)
        info = st._solve_logged("main")
        for _ in range(cfg.solver.newton_continuations):
            if info.converged or not info.reason.startswith("no convergence"):
                break
            info = st._solve_logged("continuation")
        if os.environ.get("INERTIA_END"):
            from creep_cathode.newton import inertia as _in
            from petsc4py import PETSc

            b, A = mech.assemble(mech.u.x.array)
            At = A.copy()
            At.transpose()
            At.axpy(-1.0, A)
            print(f"  end of main solve: |r| = {b.norm():.3e}, negative pivots {_in(A)[0]}, "
                  f"|A - A^T|/|A| = {At.norm() / A.norm():.2e}", flush=True)
            At.destroy()
        if os.environ.get("PROXFORCE"):
            _prox_force(mech)
        prox = 0
        if info.converged:
            prox = st._relax_proximal()
        wall = time.perf_counter() - t0
        if os.environ.get("PROXFORCE"):
            print("  after the proximal relaxations:", end="")
            _prox_force(mech)
        kinds = {}
        for s in st.record["solves"]:
            for r in s["records"]:
                if "kind" in r:
                    kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
                    if r["projected"]:
                        kinds["projected"] = kinds.get("projected", 0) + 1
        if os.environ.get("VERBOSE"):
            for s in st.record["solves"]:
                print(f"  {s['phase']} ({s['its']} its, {s['reason']}):")
                for r in s["records"]:
                    print(f"    {r['it']:2d} |r| {r['r']:.3e} neg {r.get('neg', '-')} proj {r['projected']} "
                          f"{r.get('kinks', '')} "
                          f"alpha {r.get('alpha', float('nan')):.3g} ccd {r.get('amax', float('nan')):.3g} "
                          f"dE {r.get('dE', float('nan')):.3e}")
        if os.environ.get("BODIES"):
            _body_motion(mech, mech.u.x.array - u_old, z["du_prev"] if len(z["du_prev"]) else None, dt / float(z["dt_prev"]))
        n = sum(s["its"] for s in st.record["solves"])
        tot += n
        print(f"step {k}: theta {theta:.3f} dt {dt:.0f} s  converged {info.converged} ({info.reason})  its "
              + " + ".join(f"{s['phase'][0]}{s['its']}" for s in st.record["solves"])
              + f" = {n}  kinds {kinds}  pred {st._pred}  ratio {mech.last_proximal_ratio:.2e}  {wall:.1f} s", flush=True)
    print(f"total {tot}")




def inertia(A):
    """(negative pivots, zero pivots) of the symmetric matrix A (MUMPS LDL^T)."""
    from petsc4py import PETSc

    B = A.copy()
    B.setOption(PETSc.Mat.Option.SYMMETRIC, True)
    ksp = PETSc.KSP().create(B.comm)
    ksp.setOperators(B)
    ksp.setType("preonly")
    pc = ksp.getPC()
    pc.setType("cholesky")
    pc.setFactorSolverType("mumps")
    pc.setFactorSetUpSolverType()
    F = pc.getFactorMatrix()
    F.setMumpsIcntl(24, 1)  # null pivot detection
    pc.setUp()
    neg, nzero = F.getMumpsInfog(12), F.getMumpsInfog(28)
    ksp.destroy()
    B.destroy()
    return neg, nzero


def _prox_force(mech):
    """At the current u: the proximal force k M (u - u_n) (= the residual of the problem without the
    proximal term) against the internal (material) force and the barrier force, in the 2-norm over
    free DoFs, and its share on each body."""
    import dolfinx.fem.petsc as fp
    import ufl
    from dolfinx import fem

    v = ufl.TestFunction(mech.V)
    dx = ufl.dx(metadata={"quadrature_degree": mech.q})
    fprox = fp.assemble_vector(fem.form(mech.k_prox * ufl.inner(mech.u - mech.u_n, v) * dx))
    mech.assemble(mech.u.x.array)  # P at u
    fint = fp.assemble_vector(fem.form(ufl.inner(mech.P, ufl.grad(v)) * dx))
    bc = mech.bc_owned_local
    fprox.array[bc] = 0
    fint.array[bc] = 0
    g = np.zeros_like(fint.array)
    c = mech.contact
    gc = c.gradient(mech.u.x.array)
    g[c._own_ldofs] = gc[c._own_cdofs]
    n = lambda a: float(np.linalg.norm(a))
    print(f"  |f_prox| = {n(fprox.array):.3e}, |f_int| = {n(fint.array):.3e}, |f_contact| = {n(g):.3e}, "
          f"ratio prox/int = {n(fprox.array) / n(fint.array):.3e}, |f_prox|_inf = {np.abs(fprox.array).max():.3e}, "
          f"|f_int|_inf = {np.abs(fint.array).max():.3e}; proximal energy ratio {mech.proximal_ratio(mech.u.x.array):.2e}",
          flush=True)


def _kink_tracker(mech):
    """on_iterate hook: how the set of active collisions changes between Newton iterates: collisions
    that appear / disappear, and vertices whose closest feature switched between a vertex (a kink of the
    other polyline, VV) and an edge (EV) or between edges."""
    c = mech.contact
    prev = {}

    def sig(u):
        x, col = c._state(u)
        d = {}
        for k in col.vv_collisions:
            a, b = k.vertex0_id, k.vertex1_id
            d.setdefault(a, set()).add(("v", b))
            d.setdefault(b, set()).add(("v", a))
        for k in col.ev_collisions:
            d.setdefault(k.vertex_id, set()).add(("e", k.edge_id))
        return d

    def cb(u):
        s = sig(u)
        out = {}
        if prev:
            p = prev["s"]
            new = len(set(s) - set(p))
            gone = len(set(p) - set(s))
            switched = sum(1 for v in set(s) & set(p) if s[v] != p[v])
            out = {"kinks": f"new {new} gone {gone} switched {switched} nvv {sum(1 for v in s.values() if any(t == 'v' for t, _ in v))}"}
        prev["s"] = s
        return out

    return cb


def _blk_body(mech):
    V = mech.V
    dofmap = V.dofmap.list
    ct = mech.dom.cell_tags
    cb = np.full(mech.nc, -1)
    for t, p in mech.dom.bodies:
        c = ct.find(t)
        cb[c[c < mech.nc]] = t
    nblk = V.dofmap.index_map.size_local
    blk_body = np.full(nblk, -1)
    blk_body[dofmap[: mech.nc].ravel()] = np.repeat(cb, dofmap.shape[1])
    X = V.tabulate_dof_coordinates()[:nblk, :2]
    return blk_body, X


def _rigid_fit(x, w2):
    """translation (2), rotation, and the non-rigid rms of displacement field w2 (n, 2) at points x."""
    xc = x - x.mean(axis=0)
    G = np.zeros((2 * len(x), 3))
    G[0::2, 0] = 1
    G[1::2, 1] = 1
    G[0::2, 2] = -xc[:, 1]
    G[1::2, 2] = xc[:, 0]
    c, *_ = np.linalg.lstsq(G, w2.ravel(), rcond=None)
    res = w2.ravel() - G @ c
    return c, float(np.sqrt(np.mean(res**2)))


def _body_motion(mech, du, du_prev, scale):
    """Per body: rigid translation / rotation and deformation of the step's increment, against the
    extrapolated last increment."""
    bb, X = _blk_body(mech)
    rows = []
    for t in np.unique(bb):
        m = bb == t
        c, dres = _rigid_fit(X[m], du.reshape(-1, 2)[m])
        cp = np.zeros(3)
        if du_prev is not None:
            cp, _ = _rigid_fit(X[m], du_prev.reshape(-1, 2)[m] * scale)
        rows.append((float(np.hypot(c[0], c[1]) - np.hypot(cp[0], cp[1])), t, c, cp, dres))
    rows.sort(key=lambda z: -abs(z[0]))
    for d, t, c, cp, dres in rows[:6]:
        print(f"    body {mech.tag2phase.get(t, '?')}{t}: translation {np.hypot(c[0], c[1]):.3e} (predicted "
              f"{np.hypot(cp[0], cp[1]):.3e}) rotation {c[2]:.2e} (pred {cp[2]:.2e}) deformation rms {dres:.2e}")


def _negative_modes(mech, u, k=8):
    """The k eigenpairs of the exact Hessian nearest to 0 (shift-invert, scipy); for each negative one:
    eigenvalue, the bodies that carry 90 % of the mode, and how rigid the mode is on its main body
    (share of the mode's norm there that a rigid motion explains)."""
    import scipy.sparse as sp
    import scipy.sparse.linalg as sla

    b, A = mech.assemble(u)
    ai, aj, av = A.getValuesCSR()
    M = sp.csr_matrix((av, aj, ai), shape=A.getSize())
    sig = float(os.environ.get("SIGMA", "-1e-9"))
    vals, vecs = sla.eigsh(M, k=k, sigma=sig, which="LM")
    V = mech.V
    dofmap = V.dofmap.list
    body_of_cell = {}
    ct = mech.dom.cell_tags
    cb = np.full(mech.nc, -1)
    for t, p in mech.dom.bodies:
        c = ct.find(t)
        cb[c[c < mech.nc]] = t
    nblk = V.dofmap.index_map.size_local
    blk_body = np.full(nblk, -1)
    blk_body[dofmap[: mech.nc].ravel()] = np.repeat(cb, dofmap.shape[1])
    X = V.tabulate_dof_coordinates()[:nblk, :2]
    out = []
    for lam, v in sorted(zip(vals, vecs.T), key=lambda z: z[0]):
        if lam >= 0:
            out.append(f"[{lam:.2e}]")
            continue
        v2 = v.reshape(-1, 2)
        e = (v2**2).sum(axis=1)
        bodies = {}
        for t in np.unique(blk_body):
            bodies[int(t)] = float(e[blk_body == t].sum())
        tot = sum(bodies.values())
        top = sorted(bodies.items(), key=lambda z: -z[1])
        main, acc, names = top[0][0], 0.0, []
        for t, w in top:
            names.append(f"{mech.tag2phase.get(t, '?')}{t}:{w / tot:.2f}")
            acc += w
            if acc > 0.9 * tot:
                break
        m = blk_body == main
        x = X[m] - X[m].mean(axis=0)
        G = np.zeros((2 * m.sum(), 3))
        G[0::2, 0] = 1
        G[1::2, 1] = 1
        G[0::2, 2] = -x[:, 1]
        G[1::2, 2] = x[:, 0]
        w = v2[m].ravel()
        c, *_ = np.linalg.lstsq(G, w, rcond=None)
        rigid = float(np.linalg.norm(G @ c) ** 2 / max(np.linalg.norm(w) ** 2, 1e-300))
        # localisation: how many DoFs carry 90 % of the mode, and are they collision DoFs
        e_sorted = np.sort(e)[::-1]
        nloc = int(np.searchsorted(np.cumsum(e_sorted), 0.9 * e_sorted.sum()) + 1)
        top = np.argsort(e)[::-1][:nloc]
        c = mech.contact
        on_surf = np.isin(top, c.own_lblk).mean() if nloc else 0
        g = c.gaps(u, radius=c.dhat)
        gd = dict(zip(c.own_lblk.tolist(), (g["dist"][c.own_pos] / c.dhat).tolist()))
        gaps_top = [gd.get(int(t), np.inf) for t in top[:4]]
        out.append(f"[{lam:.2e} {' '.join(names)} rigid {rigid:.2f}; 90% on {nloc} nodes, {on_surf:.0%} surface, "
                   f"gaps/dhat {['%.3f' % x for x in gaps_top]}]")
    return "modes " + " ".join(out)


def analyse(argv):
    """scripts/replay_step.py analyse CONFIG SNAPDIR STEP IT [IT ...]: at Newton iterate IT of the main solve
    of STEP, the inertia of the exact Hessian, with the barrier Hessian projected, with the material tangent
    projected, and both; and the share of quadrature points with an indefinite material tangent."""
    cfg_path, snapdir, k = argv[0], argv[1], int(argv[2])
    its = [int(x) for x in argv[3:]]
    from creep_cathode.config import load_config
    from creep_cathode.newton import minimise
    from creep_cathode.problem import Stepper
    from creep_cathode.simulation import Simulation

    cfg = load_config(cfg_path, [])
    sim = Simulation(cfg, "/tmp/replay_unused")
    sim.initialise()
    mech = sim.mech
    st = Stepper(cfg, mech, sim._solve, lambda *a: None)
    s = cfg.solver
    for m in its:
        z = np.load(f"{snapdir}/step{k:05d}.npz")
        mech.Cp_inv[:] = z["Cp_inv"]
        mech.eps_cr[:] = z["eps_cr"]
        mech.u_n.x.array[:] = z["u_n"]
        mech.u.x.array[:] = z["u"]
        mech._cache = None
        st.du_prev = z["du_prev"] if len(z["du_prev"]) else None
        st.dt_prev = float(z["dt_prev"])
        mech.set_state(float(z["theta"]), float(z["dt"]))
        st._predict(mech.u.x.array.copy(), float(z["dt"]))
        if m > 0:
            minimise(mech, mech.u, atol=s.atol, rtol=s.rtol, dx_tol=1e-10 * mech.W, max_it=m)
        u = mech.u.x.array.copy()
        out = {}
        for name, pm, pb, vv in (("exact", False, False, False), ("barrier projected", False, True, False),
                                 ("vv projected", False, False, True),
                                 ("material projected", True, False, False), ("both projected", True, True, False)):
            mech.project_tangent = pm
            mech.contact.project_hessian = pb
            mech.contact.project_vv = vv
            mech._cache = None
            b, A = mech.assemble(u)
            out[name] = inertia(A)
        mech.contact.project_vv = False
        # check: the split Hessian without projection equals the exact one
        c = mech.contact
        H0 = c.hessian(u)
        x_, col_ = c._state(u)
        import ipctk
        c.psd_method = ipctk.PSDProjectionMethod.NONE
        c.project_vv = True
        H1 = c.hessian(u)
        c.project_vv = False
        c.psd_method = ipctk.PSDProjectionMethod.CLAMP
        print(f"  split check |H_split - H| / |H| = {abs(H1 - H0).max() / abs(H0).max():.2e}; "
              f"vv collisions {len(col_.vv_collisions)}, ev {len(col_.ev_collisions)}")
        mech.project_tangent = False
        mech.contact.project_hessian = False
        F, r = mech._update(u, tangent=True)
        D = r.dPdF.reshape(-1, 4, 4)
        lam = np.linalg.eigvalsh(0.5 * (D + np.swapaxes(D, 1, 2)))
        neg_pts = int((lam.min(axis=1) < 0).sum())
        # barrier contribution alone
        H = mech.contact.hessian(u)
        ev = np.linalg.eigvalsh(H.toarray()) if H.shape[0] < 5000 else np.array([0.0])
        modes = _negative_modes(mech, u) if os.environ.get("MODES") else ""
        print(f"step {k} iterate {m}: |r| = {b.norm():.3e}; negative pivots: "
              + ", ".join(f"{n} {v[0]}" for n, v in out.items())
              + f"; material points with indefinite dP/dF: {neg_pts} of {len(D)}; barrier Hessian eigenvalues < 0: "
              f"{int((ev < -1e-12 * abs(ev).max()).sum())} (min {ev.min():.3e}, max {ev.max():.3e}); "
              f"collisions {mech.contact.num_active(u)} {modes}", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "analyse":
        analyse(sys.argv[2:])
    else:
        main(sys.argv[1:])
