r"""Newton's method for minimisation problems with a CCD-capped, energy-backtracking line search.

Minimises a total (incremental) energy Π(u) whose gradient and (PSD-ish) Hessian the `system`
assembles. Each iteration:

1. assemble (b, A) = (∇Π, ∇²Π) with Dirichlet rows zeroed / identity (for a new iterate, b first,
   through the system's optional `assemble_gradient`, and A only if it has not converged); stop
   when ||b|| <= max(atol, rtol ||b_0||);
2. solve A δ = -b (MUMPS by default: the symmetric-indefinite LDLᵀ factorisation, as A is the
   Hessian of an energy, about 20 % faster than LU, which is the fallback; the solve is checked and
   refactorised from scratch when inaccurate or when A's sparsity pattern grew in place); if δ is not a descent direction
   (b·δ >= 0), re-assemble with the contact (barrier) Hessian projected onto the PSD cone
   (system.set_hessian_projection(1): where the negative curvature of the RVE comes from, vertices
   pressed onto kinks of the other body's polyline), then if need be with the material tangent
   projected too (level 2), and if that fails too, use -b;
3. α_0 = 1, or 0.9 × the collision-free step from continuous collision detection when that is
   below 1 (``system.max_step``; ipctk already keeps 20 % of every gap);
4. backtrack α <- α/2 until Π(u + α δ) <= Π(u) + c α b·δ + 1e-12 |Π(u)| (c = 1e-4); when the energy
   change is at round-off level, accept a step that lowers ||b|| instead; if no α passes,
   backtrack once more on the residual norm alone (||b(u + α δ)|| <= (1 - c α) ||b(u)||,
   admissible energy), for energies that are only approximately consistent with b;
5. u <- u + α δ; stop when ||α δ||_inf <= dx_tol (for a step not shortened below α = 1/2 by the
   line search, so that a stalled line search is not mistaken for convergence).

Chord steps (`chord_steps` > 0): once a full step (α = 1) has cut ||b|| at least 1/CHORD_RATIO-fold,
Newton is in its quadratic range, where the tangent hardly changes any more; the next direction is
then solved with the factorisation the KSP already holds (no assembly of A, no new factorisation,
one solve with the factors: ~1/8 of a factorisation on the 2D RVEs), up to `chord_steps` times in a
row while each step keeps that contraction, and only if it descends (else the iterate's own tangent,
as above). A caller that knows the last factorised tangent is still this problem's (the proximal
re-solve of a converged step: the same step and state, only the proximal anchor moved, and the
proximal Hessian k M does not depend on it) asks for a chord step at the first iteration too
(`minimise(..., reuse_factorisation=True)`). Either way the solution is the same minimiser to the
tolerance; only how the last iterations get there changes (docs/newton_profile.md §8).

Never raises on divergence and never loops forever: returns NewtonResult(converged=False, reason).
All decisions use values that are identical on every MPI rank (norms are global reductions,
energies and step bounds are broadcast from rank 0).

`NewtonSolver` holds the settings and the linear solver (a KSP it creates once and keeps, so
MUMPS reuses its analysis while the sparsity pattern holds); the minimised problem is any object
with the `System` methods.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Protocol

from . import dolfinx_env  # noqa: F401  (import order)
from dolfinx import fem
from petsc4py import PETSc

ARMIJO_C = 1e-4
ROUNDOFF = 1e-12
MAX_HALVINGS = 40
RESIDUAL_HALVINGS = 12
CHORD_RATIO = 0.01  # a full step must cut the residual this much for the next one to reuse its factorisation


@dataclass
class NewtonResult:
    """The outcome of one minimisation: converged, iterations, reason, residual history and statistics."""

    converged: bool
    iterations: int
    reason: str
    history: list = field(default_factory=list)  # residual norms, one per assembled iterate
    energy: float = math.nan
    alphas: list = field(default_factory=list)  # accepted step lengths
    time: float = 0.0
    projected: int = 0  # iterations that needed the PSD-projected contact Hessian
    residual_steps: int = 0  # iterations accepted by the residual fallback of the line search
    chord_steps: int = 0  # iterations solved with an earlier factorised tangent


class System(Protocol):
    """What Newton minimises: an energy Π(u) with its gradient and Hessian (u: the local array of
    a DOLFINx Function, ghosts included). Optional: `assemble_gradient(u_array) -> b`, the gradient
    alone, so that a converged iterate's Hessian is never assembled, with
    `assemble_hessian(u_array) -> A` for the Hessian at the u of the last gradient (else `assemble`)."""

    def energy(self, u_array) -> float:
        """Π(u), the same on every rank; inf where u is inadmissible."""

    def assemble(self, u_array):
        """(b, A) = (∇Π, ∇²Π) as PETSc Vec/Mat, Dirichlet rows zeroed / identity."""

    def max_step(self, u_array, du_array) -> float:
        """Largest α in (0, 1] that keeps u + α du admissible (e.g. collision free); 1.0 if unbounded."""

    def set_hessian_projection(self, level: int) -> None:
        """The PSD projection of the Hessian that `assemble` returns (Newton's fallback for a direction
        that does not descend): 0 exact, 1 the contact part projected, 2 everything projected; a
        no-op where the Hessian needs none."""


def default_ksp(comm):
    """A PETSc KSP on `comm`: MUMPS LDLᵀ for a symmetric tangent, no iterations (preonly)."""
    return make_ksp(comm, "lu", symmetric=True)


#: linear solvers (config solver.linear_solver): a direct one, and Krylov + algebraic multigrid
#: (the rigid-body modes as near-null space) for large RVEs
LINEAR_SOLVERS = ("lu", "gmres_gamg", "gmres_hypre")


def make_ksp(comm, kind: str = "lu", rtol: float = 1e-9, symmetric: bool = False):
    """A PETSc KSP on `comm`: "lu" (MUMPS direct, preonly: LU, or with `symmetric` the
    symmetric-indefinite LDLᵀ factorisation of the matrix' upper triangle), "gmres_gamg" (GMRES +
    PETSc's smoothed aggregation AMG) or "gmres_hypre" (GMRES + BoomerAMG with nodal coarsening for
    2-component fields); Krylov solves stop at relative residual `rtol`. The caller attaches the
    near-null space to the matrix (Mat.setNearNullSpace)."""
    ksp = PETSc.KSP().create(comm)
    ksp.setErrorIfNotConverged(False)
    pc = ksp.getPC()
    if kind == "lu":
        ksp.setType("preonly")
        pc.setType("cholesky" if symmetric else "lu")
        pc.setFactorSolverType("mumps")
        return ksp
    ksp.setType("gmres")
    ksp.setTolerances(rtol=rtol, atol=0.0, max_it=2000)
    ksp.setGMRESRestart(200)
    prefix = f"cc_{kind}_{id(ksp)}_"
    ksp.setOptionsPrefix(prefix)
    opts = PETSc.Options()
    if kind == "gmres_gamg":
        pc.setType("gamg")
        opts[f"{prefix}pc_gamg_type"] = "agg"
        opts[f"{prefix}pc_gamg_agg_nsmooths"] = 1
        opts[f"{prefix}pc_gamg_threshold"] = 0.02
        opts[f"{prefix}mg_levels_ksp_type"] = "chebyshev"
        opts[f"{prefix}mg_levels_pc_type"] = "jacobi"
    elif kind == "gmres_hypre":
        if not PETSc.Sys.hasExternalPackage("hypre"):
            from .config import ConfigError

            raise ConfigError("solver.linear_solver: this PETSc has no hypre (BoomerAMG); use gmres_gamg or lu")
        pc.setType("hypre")
        pc.setHYPREType("boomeramg")
        opts[f"{prefix}pc_hypre_boomeramg_nodal_coarsen"] = 6
        opts[f"{prefix}pc_hypre_boomeramg_vec_interp_variant"] = 3
        opts[f"{prefix}pc_hypre_boomeramg_strong_threshold"] = 0.5
    else:
        raise ValueError(f"unknown linear solver {kind!r} (one of {', '.join(LINEAR_SOLVERS)})")
    ksp.setFromOptions()
    return ksp


def _solve(ksp, A, b, du):
    """du = -A^{-1} b (ghosts updated); A None: the operator the KSP already holds. Returns (ok, message)."""
    try:
        if A is not None:
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


def _direction(ksp, pattern: dict, A, b, du, say, timers=None):
    """du = -A^{-1} b with the checks: if A's nonzero pattern changed in place since this KSP last
    factorised it (contact merges; `pattern` remembers it), reset the KSP (PETSc would reuse a
    stale symbolic factorisation); if the solve is inaccurate anyway, reset and solve once more."""
    t0 = time.perf_counter()
    try:
        return _direction_checked(ksp, pattern, A, b, du, say)
    finally:
        if timers is not None:
            timers["linear_solve"] += time.perf_counter() - t0


def _direction_checked(ksp, pattern, A, b, du, say):
    nns = pattern.get("near_nullspace")
    if nns is not None:
        A.setNearNullSpace(nns)
    key = (A.handle, A.getInfo(PETSc.Mat.InfoType.GLOBAL_SUM)["nz_used"])
    if pattern.get("key", key) != key:
        ksp.reset()
    pattern["key"] = key
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
        if not lres < 1e-6 and ksp.getPC().getType() == "cholesky":
            # LDLᵀ reads only the upper triangle: a matrix that is not symmetric after all needs LU
            say(f"LDLT solve inaccurate (|A d + b|/|b| = {lres:.2e}); LU from now on")
            ksp.reset()
            ksp.getPC().setType("lu")
            ok, msg = _solve(ksp, A, b, du)
            if not ok:
                return ok, msg
            lres = _linear_residual(A, b, du)
        if not lres < 1e-6:
            return False, f"linear solve inaccurate (|A d + b|/|b| = {lres:.2e})"
    return True, ""


def _chord_direction(ksp, b, du, timers) -> bool:
    """du = -A_k^{-1} b with the operator the KSP factorised last (PETSc factorises again only if that
    matrix has changed since, which Newton's gradient-only assemblies never do). False on failure."""
    t0 = time.perf_counter()
    try:
        return _solve(ksp, None, b, du)[0]
    finally:
        timers["linear_solve"] += time.perf_counter() - t0


def _linear_residual(A, b, du) -> float:
    r = A.createVecLeft()
    A.mult(du.x.petsc_vec, r)
    r.axpy(1.0, b)
    out = r.norm() / max(b.norm(), 1e-300)
    r.destroy()
    return out


def _slope_and_size(b, du):
    """The directional derivative b·δ of the energy along the direction δ and its largest entry |δ|∞."""
    return b.dot(du.x.petsc_vec), du.x.petsc_vec.norm(PETSc.NormType.NORM_INFINITY)


def _bcast(comm, x):
    return comm.bcast(x, root=0) if comm.size > 1 else x


class NewtonSolver:
    """Newton's method with the line search above.

    Takes the communicator, the residual tolerances (stop when ||b|| <= max(atol, rtol ||b_0||)),
    the increment tolerance dx_tol (max norm), the iteration limit, an optional log callable, an
    optional PETSc KSP (default: MUMPS LDLᵀ, created here and kept) and the chord steps allowed in a
    row (0: a fresh tangent at every iteration; module docstring)."""

    def __init__(self, comm, *, atol: float, rtol: float, dx_tol: float, max_it: int = 30, log=None, ksp=None,
                 chord_steps: int = 0):
        self.comm = comm
        self.chord_steps = int(chord_steps)
        self.near_nullspace = None  # PETSc NullSpace attached to every matrix (iterative solvers)
        self.atol, self.rtol, self.dx_tol, self.max_it, self.log = atol, rtol, dx_tol, max_it, log
        self.ksp = ksp if ksp is not None else default_ksp(comm)
        self._pattern: dict = {}  # (matrix handle, nonzeros) the KSP last factorised
        self.timers = {"linear_solve": 0.0}  # seconds spent in the linear solver

    def minimise(self, system: System, u, reuse_factorisation: bool = False) -> NewtonResult:
        """Minimise system's energy over u (a DOLFINx Function, updated in place); returns a
        NewtonResult (never raises on divergence). `reuse_factorisation`: the tangent this solver
        factorised last is (nearly) this problem's: try a chord step first (with chord_steps > 0)."""
        return _minimise(self, system, u, reuse_factorisation)


def minimise(system: System, u, *, atol: float, rtol: float, dx_tol: float, max_it: int = 30, ksp=None,
             log=None, chord_steps: int = 0) -> NewtonResult:
    """One minimisation with a fresh NewtonSolver (see NewtonSolver; u: a DOLFINx Function)."""
    return NewtonSolver(u.function_space.mesh.comm, atol=atol, rtol=rtol, dx_tol=dx_tol, max_it=max_it, log=log,
                        ksp=ksp, chord_steps=chord_steps).minimise(system, u)


def _minimise(solver: NewtonSolver, system: System, u, reuse_factorisation: bool = False) -> NewtonResult:
    t_start = time.perf_counter()
    V = u.function_space
    comm = V.mesh.comm
    ksp, pattern, log = solver.ksp, solver._pattern, solver.log
    pattern["near_nullspace"] = solver.near_nullspace
    atol, rtol, dx_tol, max_it = solver.atol, solver.rtol, solver.dx_tol, solver.max_it
    du = fem.Function(V)
    history, alphas = [], []
    n_projected = 0
    n_residual_steps = 0
    n_chord, chords = 0, 0  # chord steps in all / in a row
    # a chord step at the first iteration needs a factorisation of this problem's KSP to reuse
    reuse = reuse_factorisation and solver.chord_steps > 0 and "key" in pattern
    res = None
    r0 = None
    e0 = None

    def done(ok, it, reason):
        return NewtonResult(ok, it, reason, history, e0 if e0 is not None else math.nan, alphas,
                            time.perf_counter() - t_start, n_projected, n_residual_steps, n_chord)

    def say(msg):
        if log is not None:
            log(msg)

    gradient = getattr(system, "assemble_gradient", None)
    hessian = getattr(system, "assemble_hessian", None)
    try:
        b, A = (gradient(u.x.array), None) if reuse and gradient is not None else system.assemble(u.x.array)
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
            say(f"  newton {it}: |r| = {rnorm:.3e} converged")
            return done(True, it, "residual")
        if it == max_it:
            return done(False, it, f"no convergence in {max_it} iterations (|r| = {rnorm:.3e}, |r0| = {r0:.3e})")
        # --- direction: a chord step with the factorisation at hand, or this iterate's tangent
        contracted = it > 0 and bool(alphas) and alphas[-1] == 1.0 and rnorm <= CHORD_RATIO * history[-2]
        chord = (A is None and chords < solver.chord_steps and ((it == 0 and reuse) or contracted)
                 and _chord_direction(ksp, b, du, solver.timers))
        if chord:
            slope, dnorm = _slope_and_size(b, du)
            chord = math.isfinite(slope) and math.isfinite(dnorm) and slope < 0
        chords = chords + 1 if chord else 0
        n_chord += chord
        if not chord and A is None:  # the iterate's gradient only was assembled (to test convergence): now the tangent
            try:
                if hessian is not None:
                    A = hessian(u.x.array)
                else:
                    b, A = system.assemble(u.x.array)
            except Exception as exc:  # noqa: BLE001
                return done(False, it, f"assembly failed: {exc}")
        if not chord:
            ok, msg = _direction(ksp, pattern, A, b, du, lambda m: say(f"  newton {it}: {m}"), solver.timers)
            if not ok:
                return done(False, it, msg)
            slope, dnorm = _slope_and_size(b, du)
            if not (math.isfinite(slope) and math.isfinite(dnorm)):
                return done(False, it, "non-finite Newton direction (singular tangent?)")
        for level in (1, 2):
            if slope < 0:
                break
            # indefinite tangent: re-assemble with the PSD-projected contact Hessian (then material too)
            say(f"  newton {it}: not a descent direction (b·d = {slope:.3e}); projected Hessian (level {level})")
            system.set_hessian_projection(level)
            try:
                b, A = system.assemble(u.x.array)
            finally:
                system.set_hessian_projection(0)
            ok, msg = _direction(ksp, pattern, A, b, du, lambda m: say(f"  newton {it}: {m}"), solver.timers)
            if not ok:
                return done(False, it, msg)
            slope, dnorm = _slope_and_size(b, du)
            n_projected += 1
        if not (slope < 0):
            say(f"  newton {it}: not a descent direction (b·d = {slope:.3e}); using -b")
            b.copy(du.x.petsc_vec)
            du.x.petsc_vec.scale(-1.0)
            du.x.scatter_forward()
            slope, dnorm = _slope_and_size(b, du)
        # --- line search
        u0 = u.x.array.copy()
        d = du.x.array.copy()
        if e0 is None:
            e0 = _bcast(comm, float(system.energy(u0)))
            if not math.isfinite(e0):
                return done(False, it, "inadmissible starting point (energy not finite)")
        amax = _bcast(comm, float(system.max_step(u0, d)))
        if not (amax > 0):
            return done(False, it, "continuous collision detection allows no step")
        alpha = 1.0 if amax >= 1.0 else 0.9 * amax
        accepted = False
        res = None
        for _ in range(MAX_HALVINGS):
            ut = u0 + alpha * d
            e1 = _bcast(comm, float(system.energy(ut)))
            if math.isfinite(e1):
                tol_e = ROUNDOFF * max(abs(e0), abs(e1))
                if e1 <= e0 + ARMIJO_C * alpha * slope + tol_e:
                    accepted = True
                    break
                if abs(e1 - e0) <= 1e3 * tol_e:  # energy change at round-off: judge by the residual
                    u.x.array[:] = ut
                    u.x.scatter_forward()
                    bt, At = system.assemble(u.x.array)
                    rt = bt.norm()
                    if rt < rnorm:
                        accepted, res = True, (bt, At, rt)
                        break
            alpha *= 0.5
        if not accepted:
            # fallback (an energy only approximately consistent with the residual, e.g. a creep
            # update, or round-off): backtrack on the residual norm instead, within the CCD cap
            alpha = 1.0 if amax >= 1.0 else 0.9 * amax
            for _ in range(RESIDUAL_HALVINGS):
                ut = u0 + alpha * d
                e1 = _bcast(comm, float(system.energy(ut)))
                if math.isfinite(e1):
                    u.x.array[:] = ut
                    u.x.scatter_forward()
                    bt, At = system.assemble(u.x.array)
                    rt = bt.norm()
                    if rt <= (1.0 - ARMIJO_C * alpha) * rnorm:
                        accepted, res = True, (bt, At, rt)
                        n_residual_steps += 1
                        say(f"  newton {it}: energy line search failed; residual step alpha = {alpha:.3g}")
                        break
                alpha *= 0.5
        if not accepted:
            u.x.array[:] = u0
            u.x.scatter_forward()
            return done(False, it, f"line search failed (|r| = {rnorm:.3e}, alpha_max = {amax:.3g})")
        u.x.array[:] = ut
        u.x.scatter_forward()
        e0 = e1
        alphas.append(alpha)
        step = alpha * dnorm
        say(f"  newton {it}{' (chord)' if chord else ''}: |r| = {rnorm:.3e}  alpha = {alpha:.3g} (ccd {amax:.3g})  |du| = {step:.3e}  E = {e1:.12e}")
        if res is not None:
            b, A, rnorm = res
        else:
            try:
                if gradient is not None:  # the tangent only if this iterate has not converged
                    b, A = gradient(u.x.array), None
                else:
                    b, A = system.assemble(u.x.array)
            except Exception as exc:  # noqa: BLE001
                return done(False, it + 1, f"assembly failed: {exc}")
            rnorm = b.norm()
        if step <= dx_tol and alpha >= 0.5:
            history.append(rnorm)
            say(f"  newton {it + 1}: |r| = {rnorm:.3e} converged (increment)")
            return done(True, it + 1, "increment")
    return done(False, max_it, "iteration limit")  # pragma: no cover - loop returns
