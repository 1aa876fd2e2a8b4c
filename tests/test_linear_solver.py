"""The iterative linear solver (solver.linear_solver = gmres_gamg) gives the same Newton steps as
MUMPS LU: a contact run of the baseline RVE to the same metrics; hypre is refused where this PETSc
lacks it, with the key named."""

from pathlib import Path

import pytest

import creep_cathode as cc
from creep_cathode.config import ConfigError

CFG = Path(__file__).resolve().parent.parent / "configs" / "baseline.toml"
SHORT = ['cycling.cycles=1', 'cycling.protocol=["Lithiate at 1C"]', 'output.fields="none"']


def _final(tmp_path, name, extra):
    cfg = cc.load_config(str(CFG), SHORT + extra)
    res = cc.Simulation(cfg, str(tmp_path / name)).solve()
    return res.timeseries[-1]


def test_gmres_gamg_matches_lu_on_a_contact_run(tmp_path):
    a = _final(tmp_path, "lu", [])
    b = _final(tmp_path, "gamg", ['solver.linear_solver="gmres_gamg"'])
    assert a["contact_Se_any"] > 0.1  # contact has formed: the barrier is in the matrix
    # The controller counts Newton iterations, so the two runs take different step sequences (207
    # and 209 steps): they agree to the accuracy the creep error control asks of a step sequence
    # (solver.creep_tolerance = 0.2 % of the mean stress), not to round-off.
    tol = cc.load_config(str(CFG), SHORT).solver.creep_tolerance
    for k in ("vm_mean_Se_Pa", "vm_mean_MSe_Pa"):
        assert b[k] == pytest.approx(a[k], rel=tol), k
    for k in ("contact_Se_any", "contact_MSe_Se", "porosity"):  # shares of a length or an area
        assert b[k] == pytest.approx(a[k], abs=tol), k


def test_hypre_is_a_config_error_without_hypre(tmp_path):
    from petsc4py import PETSc

    if PETSc.Sys.hasExternalPackage("hypre"):
        pytest.skip("this PETSc has hypre")
    cfg = cc.load_config(str(CFG), SHORT + ['solver.linear_solver="gmres_hypre"'])
    with pytest.raises(ConfigError, match="solver.linear_solver"):
        cc.Simulation(cfg, str(tmp_path / "h")).solve()


def _tridiagonal(n, upper, lower):
    from petsc4py import PETSc
    from mpi4py import MPI

    A = PETSc.Mat().createAIJ([n, n], nnz=3, comm=MPI.COMM_SELF)
    for i in range(n):
        A.setValue(i, i, 4.0)
        if i + 1 < n:
            A.setValue(i, i + 1, upper)
            A.setValue(i + 1, i, lower)
    A.assemble()
    return A


@pytest.mark.parametrize("lower, pc_after", [(-1.0, "cholesky"), (-2.0, "lu")])
def test_symmetric_direct_solve_falls_back_to_lu(lower, pc_after):
    """The default direct solve factorises the (symmetric) tangent as LDLᵀ, which reads only the upper
    triangle; on a matrix that is not symmetric after all the residual check catches it and the
    solver goes on with LU: the direction is right either way."""
    import numpy as np
    from dolfinx import fem, mesh
    from mpi4py import MPI

    from creep_cathode.newton import _direction, make_ksp

    n = 9
    msh = mesh.create_unit_interval(MPI.COMM_SELF, n - 1)
    du = fem.Function(fem.functionspace(msh, ("Lagrange", 1)))
    A = _tridiagonal(n, -1.0, lower)
    b = A.createVecLeft()
    b.array[:] = np.arange(1.0, n + 1)
    ksp = make_ksp(MPI.COMM_SELF, "lu", symmetric=True)
    said = []
    ok, msg = _direction(ksp, {}, A, b, du, said.append)
    assert ok, msg
    dense = np.diag(np.full(n, 4.0)) + np.diag(np.full(n - 1, -1.0), 1) + np.diag(np.full(n - 1, lower), -1)
    assert np.allclose(du.x.array, -np.linalg.solve(dense, np.arange(1.0, n + 1)), rtol=1e-10)
    assert ksp.getPC().getType() == pc_after
    assert bool(said) == (pc_after == "lu")
