"""Newton's method for the incremental minimisation problem, with a line search on the energy
capped by continuous collision detection (contact never crosses).

    result = minimise(system, u, atol=..., rtol=..., dx_tol=..., max_it=25)

`system.assemble(x) -> (b, A)` (gradient with Dirichlet rows zeroed, Hessian with identity rows),
`system.energy(x) -> float` (inf when inadmissible), `system.max_step(x, dx) -> (0, 1]`.
Never raises on divergence: returns converged=False with the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import dolfinx_env  # noqa: F401
from petsc4py import PETSc


@dataclass
class NewtonResult:
    converged: bool
    iterations: int
    reason: str = ""
    history: list = field(default_factory=list)


def default_ksp(comm):
    ksp = PETSc.KSP().create(comm)
    ksp.setType("preonly")
    pc = ksp.getPC()
    pc.setType("lu")
    pc.setFactorSolverType("mumps")
    return ksp


def minimise(system, u, *, atol, rtol, dx_tol, max_it=25, ksp=None, log=None) -> NewtonResult:
    comm = u.function_space.mesh.comm
    if ksp is None:
        ksp = getattr(system, "_ksp", None)
        if ksp is None:
            ksp = system._ksp = default_ksp(comm)
    hist = []
    x = u.x.array
    r0 = None
    e0 = None
    for it in range(max_it + 1):
        b, A = system.assemble(u.x.array)
        rn = b.norm()
        if not math.isfinite(rn):
            return NewtonResult(False, it, "residual is not finite", hist)
        hist.append(rn)
        if r0 is None:
            r0 = rn
        if rn <= atol or rn <= rtol * r0:
            return NewtonResult(True, it, "residual", hist)
        if it == max_it:
            break
        ksp.setOperators(A)
        dx = A.createVecRight()
        ksp.solve(b, dx)
        if ksp.getConvergedReason() < 0:
            return NewtonResult(False, it, f"linear solver failed ({ksp.getConvergedReason()})", hist)
        du = np.zeros_like(u.x.array)
        n_owned = len(dx.array)
        du[:n_owned] = -dx.array
        # ghost values of the increment
        from dolfinx import la  # noqa: F401
        tmp = u.x.array.copy()
        u.x.array[:n_owned] = du[:n_owned]
        u.x.scatter_forward()
        du = u.x.array.copy()
        u.x.array[:] = tmp
        x0 = tmp
        ms = system.max_step(x0, du) if hasattr(system, "max_step") else 1.0
        alpha = 1.0 if ms >= 1.0 else 0.9 * ms
        alpha = comm.allreduce(alpha, op=__import__("mpi4py").MPI.MIN)
        if e0 is None or True:
            e0 = system.energy(x0)
        slope = -float(b.dot(dx))  # directional derivative of the energy along du
        accepted = False
        for ls in range(40):
            e1 = system.energy(x0 + alpha * du)
            if math.isfinite(e1) and e1 <= e0 + 1e-4 * alpha * slope + 1e-12 * abs(e0):
                accepted = True
                break
            alpha *= 0.5
        if not accepted:
            # energy differences at round-off level near the solution: take the full step
            # if the residual decreases
            u.x.array[:] = x0 + du
            b2, _ = system.assemble(u.x.array)
            if b2.norm() < rn:
                continue
            u.x.array[:] = x0
            return NewtonResult(False, it, "line search failed", hist)
        u.x.array[:] = x0 + alpha * du
        dxn = comm.allreduce(float(np.abs(alpha * du).max()) if len(du) else 0.0, op=__import__("mpi4py").MPI.MAX)
        if log:
            log(f"  newton {it}: |r| = {rn:.3e}, alpha = {alpha:.3g}, |dx| = {dxn:.3e}")
        if dxn <= dx_tol and alpha == 1.0:
            b, A = system.assemble(u.x.array)
            hist.append(b.norm())
            return NewtonResult(True, it + 1, "increment", hist)
    return NewtonResult(False, max_it, f"no convergence in {max_it} iterations", hist)
