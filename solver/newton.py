r"""Newton's method for minimisation problems with a CCD-capped, energy-backtracking line search.

Minimises a total (incremental) energy Π(u) whose gradient and (PSD-ish) Hessian the `system`
assembles. Each iteration:

1. assemble (b, A) = (∇Π, ∇²Π) with Dirichlet rows zeroed / identity; stop when
   ||b|| <= max(atol, rtol ||b_0||);
2. solve A δ = -b (MUMPS LU by default; the solve is checked and refactorised from scratch when
   inaccurate or when A's sparsity pattern grew in place); if δ is not a descent direction
   (b·δ >= 0), re-assemble once with the contact Hessian and the material tangent (point by point)
   projected onto the PSD cone
   (system.set_hessian_projection(True) or system.contact.project_hessian = True), and if that
   fails too, use -b;
3. α_0 = 1, or 0.9 × the collision-free step from continuous collision detection when that is
   below 1 (``system.max_step``; ipctk already keeps 20 % of every gap);
4. backtrack α <- α/2 until Π(u + α δ) <= Π(u) + c α b·δ + 1e-12 |Π(u)| (c = 1e-4); when the energy
   change is at round-off level, accept a step that lowers ||b|| instead; if no α passes,
   backtrack once more on the residual norm alone (||b(u + α δ)|| <= (1 - c α) ||b(u)||,
   admissible energy), for energies that are only approximately consistent with b;
5. u <- u + α δ; stop when ||α δ||_inf <= dx_tol (for a step not shortened below α = 1/2 by the
   line search, so that a stalled line search is not mistaken for convergence).

Never raises on divergence and never loops forever: returns NewtonResult(converged=False, reason).
All decisions use values that are identical on every MPI rank (norms are global reductions,
energies and step bounds are broadcast from rank 0).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field


from . import dolfinx_env  # noqa: F401  (import order)
from dolfinx import fem
from petsc4py import PETSc

ARMIJO_C = 1e-4
_KSP_PATTERN: dict = {}  # ksp handle -> (matrix handle, nonzeros) it was last factorised for
ROUNDOFF = 1e-12
MAX_HALVINGS = 40
RESIDUAL_HALVINGS = 12


@dataclass
class NewtonResult:
    converged: bool
    iterations: int
    reason: str
    history: list = field(default_factory=list)  # residual norms, one per assembled iterate
    energy: float = math.nan
    alphas: list = field(default_factory=list)  # accepted step lengths
    time: float = 0.0
    projected: int = 0  # iterations that needed the PSD-projected contact Hessian
    residual_steps: int = 0  # iterations accepted by the residual fallback of the line search
    # profile: one dict per iteration (r, alpha, amax, halvings, kind, projected, ...) and a time split
    records: list = field(default_factory=list)
    timers: dict = field(default_factory=dict)


def default_ksp(comm):
    ksp = PETSc.KSP().create(comm)
    ksp.setType("preonly")
    pc = ksp.getPC()
    pc.setType("lu")
    pc.setFactorSolverType("mumps")
    ksp.setErrorIfNotConverged(False)
    return ksp


def ldlt_ksp(comm):
    """MUMPS LDL^T (symmetric indefinite, sym = 2): about half the work of LU, and its inertia
    (INFOG(12) = negative pivots) comes free with the factorisation."""
    ksp = PETSc.KSP().create(comm)
    ksp.setType("preonly")
    pc = ksp.getPC()
    pc.setType("cholesky")
    pc.setFactorSolverType("mumps")
    ksp.setErrorIfNotConverged(False)
    return ksp


def _negative_pivots(ksp) -> int:
    """Negative pivots of the last LDL^T factorisation of ksp (-1 for an LU ksp)."""
    pc = ksp.getPC()
    if pc.getType() != "cholesky":
        return -1
    return int(pc.getFactorMatrix().getMumpsInfog(12))


def _solve(ksp, A, b, du):
    """du = -A^{-1} b (ghosts updated). Returns (ok, message)."""
    try:
        ksp.setOperators(A)
        ksp.solve(b, du.x.petsc_vec)
        kreason = ksp.getConvergedReason()
    except PETSc.Error as exc:
        return False, f"linear solver failed ({exc})"
    if kreason < 0:
        return False, f"linear solver failed (KSP reason {kreason})"
    du.x.petsc_vec.scale(-1.0)
    du.x.scatter_forward()
    return True, ""


def _direction(ksp, A, b, du, say):
    """du = -A^{-1} b with the checks: if A's nonzero pattern changed in place since this KSP last
    factorised it (contact merges), reset the KSP (PETSc would reuse a stale symbolic
    factorisation); if the solve is inaccurate anyway, reset and solve once more."""
    key = (A.handle, A.getInfo(PETSc.Mat.InfoType.GLOBAL_SUM)["nz_used"])
    if _KSP_PATTERN.get(ksp.handle, key) != key:
        ksp.reset()
    _KSP_PATTERN[ksp.handle] = key
    ok, msg = _solve(ksp, A, b, du)
    if not ok:
        return ok, msg
    lres = _linear_residual(A, b, du)
    if not lres < 1e-6:
        say(f"linear solve inaccurate (|A d + b|/|b| = {lres:.2e}); refactorising")
        ksp.reset()
        ok, msg = _solve(ksp, A, b, du)
        if not ok:
            return ok, msg
        lres = _linear_residual(A, b, du)
        if not lres < 1e-6:
            return False, f"linear solve inaccurate (|A d + b|/|b| = {lres:.2e})"
    return True, ""


def _linear_residual(A, b, du) -> float:
    r = A.createVecLeft()
    A.mult(du.x.petsc_vec, r)
    r.axpy(1.0, b)
    out = r.norm() / max(b.norm(), 1e-300)
    r.destroy()
    return out


_INERTIA_DEBUG = bool(__import__("os").environ.get("CREEP_CATHODE_NEWTON_INERTIA"))  # profiling: inertia per iterate


def inertia(A):
    """(negative pivots, null pivots) of the symmetric matrix A: MUMPS LDL^T (INFOG(12), INFOG(28)).
    One extra factorisation: for profiling."""
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
    F.setMumpsIcntl(24, 1)
    pc.setUp()
    out = (F.getMumpsInfog(12), F.getMumpsInfog(28))
    ksp.destroy()
    B.destroy()
    return out


def _unstable(system, ksp, A, b, du, linear) -> bool:
    """Whether the tangent A at the current iterate has negative pivots (LDL^T; factorises A)."""
    if linear != "ldlt":
        return False
    A.setOption(PETSc.Mat.Option.SYMMETRIC, True)
    ok, _ = _direction(ksp, A, b, du, lambda m: None)
    return ok and _negative_pivots(ksp) > 0


def _set_projection(system, flag: bool, material: bool = True) -> bool:
    """Switch the PSD projection of the contact Hessian: system.set_hessian_projection(flag) if the
    system has it, else system.contact.project_hessian. False when neither exists.
    material=False: the barrier Hessian only (where the system distinguishes them)."""
    fn = getattr(system, "set_hessian_projection", None)
    if fn is not None:
        if material:
            fn(flag)
        else:
            try:
                fn(flag, material=False)
            except TypeError:
                fn(flag)
        return True
    c = getattr(system, "contact", None)
    if c is not None and hasattr(c, "project_hessian"):
        c.project_hessian = flag
        return True
    return False


def _bcast(comm, x):
    return comm.bcast(x, root=0) if comm.size > 1 else x


def minimise(system, u, *, atol: float, rtol: float, dx_tol: float, max_it: int = 30, ksp=None,
             log=None, linear: str = "lu", indefinite: str = "project", ccd_fraction: float = 0.9) -> NewtonResult:
    """Minimise system's energy over u (a dolfinx Function, updated in place).

    system.assemble(u_array) -> (b, A); system.energy(u_array) -> float (inf if inadmissible);
    system.max_step(u_array, du_array) -> float in (0, 1] (optional: 1.0 when absent).
    ksp: a PETSc KSP; default MUMPS LU, created once and cached as ``system._ksp``.

    Prototype options (issue 13):
    linear: "lu" (MUMPS LU) or "ldlt" (MUMPS LDL^T on the symmetric tangent, inertia for free);
    indefinite: what to do where the tangent gives no descent direction (or, for "shift", is
      indefinite at all): "project_barrier" (project the barrier Hessian alone first, then both as
      "project"), "project" (re-assemble with the PSD-projected barrier Hessian and material
      tangent), "shift" (whenever the LDL^T factorisation has negative pivots: A + tau diag|A|, tau
      raised x10 until positive definite and remembered, Nocedal & Wright Alg. 3.3), "shift_nd"
      (the same, only where the exact direction is not a descent direction);
    ccd_fraction: the first trial step is ccd_fraction x the CCD bound when that is below 1."""
    if indefinite.startswith("shift") or indefinite == "reverse_ldlt":
        linear = "ldlt"
    t_start = time.perf_counter()
    V = u.function_space
    comm = V.mesh.comm
    if ksp is None:  # one KSP per system, kept: MUMPS reuses its analysis while the pattern holds
        attr = "_ksp" if linear == "lu" else "_ksp_ldlt"
        ksp = getattr(system, attr, None)
        if ksp is None:
            ksp = default_ksp(comm) if linear == "lu" else ldlt_ksp(comm)
            try:
                setattr(system, attr, ksp)
            except AttributeError:
                pass
    ksp_shift = None
    if indefinite.startswith("shift"):
        ksp_shift = getattr(system, "_ksp_shift", None)
        if ksp_shift is None:
            ksp_shift = ldlt_ksp(comm)
            try:
                system._ksp_shift = ksp_shift
            except AttributeError:
                pass
    tau = getattr(system, "_newton_tau", 0.0)  # the last shift that made the tangent definite
    shift_kind = "mass" if indefinite.endswith("_mass") else "diag"
    tau_min = 1e-6
    if shift_kind == "mass":
        indefinite = indefinite[: -len("_mass")]
        tau_min = getattr(system, "shift_tau_min", 1e-6)
    du = fem.Function(V)
    history, alphas = [], []
    n_projected = 0
    n_residual_steps = 0
    res = None
    r0 = None
    e0 = None

    records = []
    tm = {"solve": 0.0, "assemble": 0.0, "linesearch": 0.0, "ccd": 0.0, "energy_calls": 0, "assemble_calls": 0,
          "solves": 0}

    def done(ok, it, reason):
        return NewtonResult(ok, it, reason, history, e0 if e0 is not None else math.nan, alphas,
                            time.perf_counter() - t_start, n_projected, n_residual_steps, records, tm)

    def _assemble(x):
        t = time.perf_counter()
        try:
            return system.assemble(x)
        finally:
            tm["assemble"] += time.perf_counter() - t
            tm["assemble_calls"] += 1

    def _energy(x):
        tm["energy_calls"] += 1
        return system.energy(x)

    def _dir(*args):
        t = time.perf_counter()
        try:
            return _direction(*args)
        finally:
            tm["solve"] += time.perf_counter() - t
            tm["solves"] += 1

    def say(msg):
        if log is not None:
            log(msg)

    try:
        b, A = _assemble(u.x.array)
    except Exception as exc:  # noqa: BLE001 - a failed assembly is a failed solve
        return done(False, 0, f"assembly failed: {exc}")
    rnorm = b.norm()
    for it in range(max_it + 1):
        history.append(rnorm)
        if r0 is None:
            r0 = rnorm
        if not math.isfinite(rnorm):
            return done(False, it, "non-finite residual")
        if rnorm <= max(atol, rtol * r0):
            if indefinite == "reverse_ldlt" and _unstable(system, ksp, A, b, du, linear):
                # a saddle (the LDL^T of the tangent has negative pivots): not a minimum; escape it
                say(f"  newton {it}: |r| = {rnorm:.3e} at a saddle; escaping")
                rec_escape = True
            else:
                say(f"  newton {it}: |r| = {rnorm:.3e} converged")
                return done(True, it, "residual")
        if it == max_it:
            return done(False, it, f"no convergence in {max_it} iterations (|r| = {rnorm:.3e}, |r0| = {r0:.3e})")
        # --- direction
        rec = {"it": it, "r": rnorm, "projected": False, "sd": False, "residual_step": False}
        records.append(rec)
        if _INERTIA_DEBUG:
            rec["neg"] = inertia(A)[0]
        if linear == "ldlt":
            A.setOption(PETSc.Mat.Option.SYMMETRIC, True)
        ok, msg = _dir(ksp, A, b, du, lambda m: say(f"  newton {it}: {m}"))
        if not ok:
            return done(False, it, msg)
        slope = b.dot(du.x.petsc_vec)  # b·δ
        dnorm = du.x.petsc_vec.norm(PETSc.NormType.NORM_INFINITY)
        if not (math.isfinite(slope) and math.isfinite(dnorm)):
            return done(False, it, "non-finite Newton direction (singular tangent?)")
        neg = _negative_pivots(ksp)
        rec["neg_exact"] = neg
        if ksp_shift is not None and (neg > 0 if indefinite == "shift" else slope >= 0):
            # Hessian modification: A + tau diag|A| with the smallest tau (x10 steps) that makes it
            # positive definite, starting from a quarter of the last one (Nocedal & Wright, Alg. 3.3)
            Msh = system.shift_matrix() if shift_kind == "mass" and hasattr(system, "shift_matrix") else None
            if Msh is None:
                dA = A.getDiagonal()
                dA.abs()
            t = max(tau_min, tau / 4.0)
            ok_shift = False
            for _ in range(12):
                As = A.copy()
                if Msh is not None:
                    As.axpy(t, Msh, structure=PETSc.Mat.Structure.SUBSET_NONZERO_PATTERN)
                else:
                    dv = dA.copy()
                    dv.scale(t)
                    As.setDiagonal(dv, addv=PETSc.InsertMode.ADD_VALUES)
                    dv.destroy()
                As.setOption(PETSc.Mat.Option.SYMMETRIC, True)
                ok, msg = _dir(ksp_shift, As, b, du, lambda m: say(f"  newton {it}: {m}"))
                ns = _negative_pivots(ksp_shift)
                As.destroy()
                if ok and ns == 0:
                    ok_shift = True
                    break
                t *= 10.0
            rec["shift"] = t if ok_shift else -1.0
            if ok_shift:
                tau = t
                system._newton_tau = tau
                slope = b.dot(du.x.petsc_vec)
                dnorm = du.x.petsc_vec.norm(PETSc.NormType.NORM_INFINITY)
                say(f"  newton {it}: {neg} negative pivots; shift tau = {t:.1e}")
            else:
                ok, msg = _dir(ksp, A, b, du, lambda m: say(f"  newton {it}: {m}"))
                slope = b.dot(du.x.petsc_vec)
                dnorm = du.x.petsc_vec.norm(PETSc.NormType.NORM_INFINITY)
        elif ksp_shift is not None and neg == 0:
            tau = tau / 4.0
            system._newton_tau = tau
        if indefinite == "reverse_ldlt" and slope < 0 and neg > 0 and rnorm <= 1e-3 * r0:
            # near a stationary point with an indefinite tangent the Newton direction heads for a saddle:
            # project the barrier Hessian for this iteration instead
            slope = 1.0
        if slope > 0 and indefinite in ("reverse", "reverse_ldlt") and not (indefinite == "reverse_ldlt" and neg > 0 and rnorm <= 1e-3 * r0):
            # the exact direction is an ascent direction (b·d > 0) because the tangent is indefinite:
            # then d^T A d = -b·d < 0, so -d descends to first AND second order (a direction of negative
            # curvature, dominated by the unstable modes): take it, no re-assembly, no refactorisation
            du.x.petsc_vec.scale(-1.0)
            du.x.scatter_forward()
            slope = -slope
            rec["reversed"] = True
            say(f"  newton {it}: not a descent direction; reversed (negative curvature) direction")
        c_ = getattr(system, "contact", None)
        if slope >= 0 and indefinite == "project_vv" and c_ is not None and hasattr(c_, "project_vv"):
            # vertex-vertex barrier terms (negative tangential curvature -force/distance) projected,
            # vertex-edge terms and the material tangent exact
            say(f"  newton {it}: not a descent direction (b·d = {slope:.3e}); projected vertex-vertex Hessians")
            keep = c_.project_vv
            c_.project_vv = True
            try:
                b, A = _assemble(u.x.array)
            finally:
                c_.project_vv = keep
            rec["projected"] = "vv"
            n_projected += 1
            if linear == "ldlt":
                A.setOption(PETSc.Mat.Option.SYMMETRIC, True)
            ok, msg = _dir(ksp, A, b, du, lambda m: say(f"  newton {it}: {m}"))
            if not ok:
                return done(False, it, msg)
            slope = b.dot(du.x.petsc_vec)
            dnorm = du.x.petsc_vec.norm(PETSc.NormType.NORM_INFINITY)
        if slope >= 0 and indefinite in ("project_barrier", "project_vv", "reverse_ldlt") and _set_projection(system, True, material=False):
            # the barrier Hessian (ipctk's exact one is indefinite: point-point and point-edge terms)
            # is where the negative curvature comes from in the RVE; project it alone first
            say(f"  newton {it}: not a descent direction (b·d = {slope:.3e}); projected barrier Hessian")
            try:
                b, A = _assemble(u.x.array)
            finally:
                _set_projection(system, False)
            rec["projected"] = "barrier"
            n_projected += 1
            if linear == "ldlt":
                A.setOption(PETSc.Mat.Option.SYMMETRIC, True)
            ok, msg = _dir(ksp, A, b, du, lambda m: say(f"  newton {it}: {m}"))
            if not ok:
                return done(False, it, msg)
            slope = b.dot(du.x.petsc_vec)
            dnorm = du.x.petsc_vec.norm(PETSc.NormType.NORM_INFINITY)
        if slope >= 0 and _set_projection(system, True):
            # indefinite tangent: re-assemble with the PSD-projected Hessian (contact and material) for this step
            say(f"  newton {it}: not a descent direction (b·d = {slope:.3e}); projected Hessian")
            try:
                b, A = _assemble(u.x.array)
            finally:
                _set_projection(system, False)
            rec["projected"] = "both" if not rec["projected"] else "barrier+both"
            if linear == "ldlt":
                A.setOption(PETSc.Mat.Option.SYMMETRIC, True)
            ok, msg = _dir(ksp, A, b, du, lambda m: say(f"  newton {it}: {m}"))
            if not ok:
                return done(False, it, msg)
            slope = b.dot(du.x.petsc_vec)
            dnorm = du.x.petsc_vec.norm(PETSc.NormType.NORM_INFINITY)
            n_projected += 1
        if not (slope < 0):
            say(f"  newton {it}: not a descent direction (b·d = {slope:.3e}); using -b")
            b.copy(du.x.petsc_vec)
            du.x.petsc_vec.scale(-1.0)
            du.x.scatter_forward()
            slope = -b.dot(b)
            dnorm = du.x.petsc_vec.norm(PETSc.NormType.NORM_INFINITY)
            rec["sd"] = True
        # --- line search
        t_ls = time.perf_counter()
        u0 = u.x.array.copy()
        d = du.x.array.copy()
        if e0 is None:
            e0 = _bcast(comm, float(_energy(u0)))
            if not math.isfinite(e0):
                return done(False, it, "inadmissible starting point (energy not finite)")
        t_c = time.perf_counter()
        amax = _bcast(comm, float(system.max_step(u0, d))) if hasattr(system, "max_step") else 1.0
        tm["ccd"] += time.perf_counter() - t_c
        if not (amax > 0):
            return done(False, it, "continuous collision detection allows no step")
        alpha = 1.0 if amax >= 1.0 else ccd_fraction * amax
        accepted = False
        res = None
        halvings = 0
        for _ in range(MAX_HALVINGS):
            ut = u0 + alpha * d
            e1 = _bcast(comm, float(_energy(ut)))
            if math.isfinite(e1):
                tol_e = ROUNDOFF * max(abs(e0), abs(e1))
                if e1 <= e0 + ARMIJO_C * alpha * slope + tol_e:
                    accepted = True
                    break
                if abs(e1 - e0) <= 1e3 * tol_e:  # energy change at round-off: judge by the residual
                    u.x.array[:] = ut
                    u.x.scatter_forward()
                    bt, At = _assemble(u.x.array)
                    rt = bt.norm()
                    if rt < rnorm:
                        accepted, res = True, (bt, At, rt)
                        break
            alpha *= 0.5
            halvings += 1
        if not accepted:
            # fallback (an energy only approximately consistent with the residual, e.g. a creep
            # update, or round-off): backtrack on the residual norm instead, within the CCD cap
            alpha = 1.0 if amax >= 1.0 else ccd_fraction * amax
            for _ in range(RESIDUAL_HALVINGS):
                ut = u0 + alpha * d
                e1 = _bcast(comm, float(_energy(ut)))
                if math.isfinite(e1):
                    u.x.array[:] = ut
                    u.x.scatter_forward()
                    bt, At = _assemble(u.x.array)
                    rt = bt.norm()
                    if rt <= (1.0 - ARMIJO_C * alpha) * rnorm:
                        accepted, res = True, (bt, At, rt)
                        n_residual_steps += 1
                        rec["residual_step"] = True
                        say(f"  newton {it}: energy line search failed; residual step alpha = {alpha:.3g}")
                        break
                alpha *= 0.5
        if not accepted:
            u.x.array[:] = u0
            u.x.scatter_forward()
            return done(False, it, f"line search failed (|r| = {rnorm:.3e}, alpha_max = {amax:.3g})")
        u.x.array[:] = ut
        u.x.scatter_forward()
        rec.update(alpha=alpha, amax=amax, halvings=halvings, dE=e1 - e0, slope=slope,
                   kind=("full" if alpha >= 1.0 else ("ccd" if amax < 1.0 and halvings == 0 else "armijo")))
        tm["linesearch"] += time.perf_counter() - t_ls
        cb = getattr(system, "on_iterate", None)  # profiling hook: extra per-iterate records
        if cb is not None:
            rec.update(cb(u.x.array))
        e0 = e1
        alphas.append(alpha)
        step = alpha * dnorm
        say(f"  newton {it}: |r| = {rnorm:.3e}  alpha = {alpha:.3g} (ccd {amax:.3g})  |du| = {step:.3e}  E = {e1:.12e}")
        if res is not None:
            b, A, rnorm = res
        else:
            try:
                b, A = _assemble(u.x.array)
            except Exception as exc:  # noqa: BLE001
                return done(False, it + 1, f"assembly failed: {exc}")
            rnorm = b.norm()
        if step <= dx_tol and alpha >= 0.5:
            history.append(rnorm)
            say(f"  newton {it + 1}: |r| = {rnorm:.3e} converged (increment)")
            return done(True, it + 1, "increment")
    return done(False, max_it, "iteration limit")  # pragma: no cover - loop returns
