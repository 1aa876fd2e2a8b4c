"""Time one Newton iteration's pieces on a snapshot state of se_mse (serial): assembly (constitutive
update + FE + contact), MUMPS LU vs LDL^T factorisation + solve, energy evaluation, CCD.

    .venv/bin/python scripts/bench_linear.py configs/se_mse.toml runs/snap_base 47
"""
import sys
import time

import numpy as np

from creep_cathode import dolfinx_env  # noqa: F401  (before petsc4py)
from creep_cathode.config import load_config
from petsc4py import PETSc
from creep_cathode.newton import default_ksp, ldlt_ksp
from creep_cathode.simulation import Simulation


def main(cfg_path, snapdir, k, reps=5):
    cfg = load_config(cfg_path, [])
    sim = Simulation(cfg, "/tmp/replay_unused")
    sim.initialise()
    mech = sim.mech
    z = np.load(f"{snapdir}/step{int(k):05d}.npz")
    mech.Cp_inv[:] = z["Cp_inv"]
    mech.eps_cr[:] = z["eps_cr"]
    mech.u_n.x.array[:] = z["u_n"]
    mech.set_state(float(z["theta"]), float(z["dt"]))
    u = z["u"]
    out = {}

    def tm(name, f):
        ts = []
        for _ in range(reps):
            mech._cache = None
            t = time.perf_counter()
            r = f()
            ts.append(time.perf_counter() - t)
        out[name] = min(ts)
        return r

    b, A = tm("assemble (update + FE + contact)", lambda: mech.assemble(u))
    tm("energy (update + FE + contact)", lambda: mech.energy(u))
    F = mech.grad_expr.eval(mech.dom.mesh, mech.cells)
    tm("  F = grad u (Expression.eval)", lambda: mech.grad_expr.eval(mech.dom.mesh, mech.cells))
    from creep_cathode import creep
    Fm = F.reshape(-1, 2, 2).copy()
    Fm[:, 0, 0] += 1
    Fm[:, 1, 1] += 1
    mu, lam, Jl, Aa, n, sref = mech._props
    tm("  constitutive update with tangent", lambda: creep.update(Fm, mech.Cp_inv, Jl, mu, lam, Aa, n, sref, mech.dt, tangent=True))
    tm("  constitutive update, no tangent", lambda: creep.update(Fm, mech.Cp_inv, Jl, mu, lam, Aa, n, sref, mech.dt, tangent=False))
    tm("  contact gradient + Hessian + merge", lambda: (mech.contact.add_gradient(b.copy(), u), mech.contact.add_hessian(A, u)))
    tm("  contact energy", lambda: (setattr(mech.contact, "_cache_key", None), mech.contact.energy(u)))
    d = np.zeros_like(u)
    d[:] = 1e-3
    tm("  CCD max_step", lambda: mech.contact.max_step(u, d))
    import dolfinx.fem.petsc as fp
    def fe():
        A.zeroEntries()
        fp.assemble_matrix(A, mech.a_form, bcs=mech.bcs)
        A.assemble()
    tm("  FE matrix assembly only", fe)
    def fev():
        with b.localForm() as bl:
            bl.set(0.0)
        fp.assemble_vector(b, mech.R_form)
    tm("  FE vector assembly only", fev)
    c = mech.contact
    tm("  ipctk hessian only", lambda: c.potential.hessian(c._state(u)[1], c.cm, c._state(u)[0]))
    tm("  contact.hessian (scipy post-processing incl.)", lambda: c.hessian(u))
    b, A = mech.assemble(u)
    x = A.createVecRight()
    for name, mk in (("LU", default_ksp), ("LDLT", ldlt_ksp)):
        def run():
            ksp = mk(A.comm)
            if name == "LDLT":
                A.setOption(PETSc.Mat.Option.SYMMETRIC, True)
            ksp.setOperators(A)
            ksp.solve(b, x)
            ksp.destroy()
        tm(f"{name}: analysis + factorisation + solve", run)
        ksp = mk(A.comm)
        ksp.setOperators(A)
        ksp.solve(b, x)

        def refac():
            A.assemble()  # new values, same pattern: numeric factorisation only
            ksp.setOperators(A)
            ksp.solve(b, x)
        tm(f"{name}: numeric factorisation + solve (same pattern)", refac)
        ksp.destroy()
    for kname, v in out.items():
        print(f"{kname:55s} {1000 * v:8.1f} ms")


if __name__ == "__main__":
    main(*sys.argv[1:])
