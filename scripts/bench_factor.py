"""MUMPS LU against LDLᵀ (PETSc `cholesky`) on a P2 plane-strain elasticity system (unit square,
n x n cells, one side clamped): first factorisation (analysis + numeric), numeric refactorisation
+ solve, and one solve with the factors; the median of 4 repeats, the two interleaved.

    .venv/bin/python scripts/bench_factor.py 42        # 14,450 DoFs, the size of se_mse's box
    .venv/bin/mpiexec -n 2 .venv/bin/python scripts/bench_factor.py 42
"""

import argparse
import time

import numpy as np

from creep_cathode import dolfinx_env  # noqa: F401  (import order)
import dolfinx.fem.petsc as fp
import ufl
from dolfinx import fem, mesh
from mpi4py import MPI
from petsc4py import PETSc


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("n", type=int, help="cells per side")
    ap.add_argument("--repeats", type=int, default=4)
    args = ap.parse_args()
    n, repeats = args.n, args.repeats
    comm = MPI.COMM_WORLD
    msh = mesh.create_unit_square(comm, n, n, mesh.CellType.triangle)
    V = fem.functionspace(msh, ("Lagrange", 2, (2,)))
    u, v = ufl.TrialFunction(V), ufl.TestFunction(V)

    def eps(w):
        return ufl.sym(ufl.grad(w))

    a = fem.form((2 * ufl.inner(eps(u), eps(v)) + ufl.div(u) * ufl.div(v)) * ufl.dx)
    bc = fem.dirichletbc(np.zeros(2), fem.locate_dofs_geometrical(V, lambda x: np.isclose(x[0], 0.0)), V)
    A = fp.assemble_matrix(a, bcs=[bc])
    A.assemble()
    b = A.createVecLeft()
    b.setRandom()
    x = A.createVecRight()
    out = {}
    for _ in range(repeats):
        for kind in ("lu", "cholesky"):
            ksp = PETSc.KSP().create(comm)
            ksp.setType("preonly")
            ksp.getPC().setType(kind)
            ksp.getPC().setFactorSolverType("mumps")
            ksp.setOperators(A)
            comm.Barrier()
            t0 = time.perf_counter()
            ksp.setUp()
            t1 = time.perf_counter()
            A.zeroEntries()  # the same matrix again: a numeric refactorisation with the analysis kept
            fp.assemble_matrix(A, a, bcs=[bc])
            A.assemble()
            ksp.setOperators(A)
            comm.Barrier()
            t2 = time.perf_counter()
            ksp.setUp()
            ksp.solve(b, x)
            t3 = time.perf_counter()
            for _ in range(5):
                ksp.solve(b, x)
            t4 = time.perf_counter()
            out.setdefault(kind, []).append((t1 - t0, t3 - t2, (t4 - t3) / 5))
            ksp.destroy()
    if comm.rank == 0:
        print(f"{A.getSize()[0]} DoFs, {comm.size} rank(s), median of {repeats} [ms]")
        print("| factorisation | first (analysis + numeric) | refactorisation + solve | solve |")
        print("|---|---|---|---|")
        for kind, rows in out.items():
            m = 1e3 * np.median(np.array(rows), axis=0)
            print(f"| {'LU' if kind == 'lu' else 'LDLT'} | {m[0]:.1f} | {m[1]:.1f} | {m[2]:.2f} |")


if __name__ == "__main__":
    main()
