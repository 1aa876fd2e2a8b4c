"""Volumetric locking: why the displacement is P2 (DESIGN section 2, issue 4).

Creep is isochoric, so a creeping body deforms like an incompressible one. Linear triangles lock
under that constraint; quadratic ones do not. The test: Lamé's thick-walled cylinder under
internal pressure, plane strain, nearly incompressible (nu = 0.4999), whose inner-radius
displacement has the closed form

    u(a) = (1 + nu) p a^2 / (E (b^2 - a^2)) * ((1 - 2 nu) a + b^2 / a).

On the same 8 x 16 mesh P2 (the default `solver.element_degree`) is within 0.2 %; P1 gives 32 % of
the displacement (3x too stiff), and still 49 % on a 4x finer mesh.
"""

import numpy as np
import pytest

from creep_cathode import dolfinx_env  # noqa: F401  (import order)
import ufl
from dolfinx import fem, mesh
from dolfinx.fem.petsc import LinearProblem
from mpi4py import MPI

A_IN, B_OUT, E, NU, P = 1.0, 2.0, 1.0, 0.4999, 1e-3


def inner_displacement(degree: int, n: int = 8) -> float:
    """Radial displacement at r = a of a quarter annulus (symmetry on both straight edges)."""
    msh = mesh.create_rectangle(MPI.COMM_WORLD, [np.array([A_IN, 0.0]), np.array([B_OUT, np.pi / 2])],
                                [n, 2 * n], mesh.CellType.triangle, diagonal=mesh.DiagonalType.right)
    x = msh.geometry.x
    r, phi = x[:, 0].copy(), x[:, 1].copy()
    x[:, 0], x[:, 1] = r * np.cos(phi), r * np.sin(phi)  # map (r, phi) to the annulus
    V = fem.functionspace(msh, ("Lagrange", degree, (2,)))
    fdim = msh.topology.dim - 1
    bottom = mesh.locate_entities_boundary(msh, fdim, lambda X: np.isclose(X[1], 0.0))
    left = mesh.locate_entities_boundary(msh, fdim, lambda X: np.isclose(X[0], 0.0))
    bcs = [fem.dirichletbc(0.0, fem.locate_dofs_topological(V.sub(1), fdim, bottom), V.sub(1)),
           fem.dirichletbc(0.0, fem.locate_dofs_topological(V.sub(0), fdim, left), V.sub(0))]
    inner = mesh.locate_entities_boundary(msh, fdim, lambda X: np.isclose(np.hypot(X[0], X[1]), A_IN))
    tags = mesh.meshtags(msh, fdim, np.sort(inner), np.full(len(inner), 1, dtype=np.int32))
    ds = ufl.Measure("ds", domain=msh, subdomain_data=tags)
    mu, lam = E / (2 * (1 + NU)), E * NU / ((1 + NU) * (1 - 2 * NU))
    u, v = ufl.TrialFunction(V), ufl.TestFunction(V)
    eps = ufl.sym(ufl.grad(u))
    sigma = 2 * mu * eps + lam * ufl.tr(eps) * ufl.Identity(2)
    nrm = ufl.FacetNormal(msh)
    a = ufl.inner(sigma, ufl.sym(ufl.grad(v))) * ufl.dx
    L = -P * ufl.dot(nrm, v) * ds(1)  # pressure pushes along -n (outward from the bore)
    uh = LinearProblem(a, L, bcs=bcs, petsc_options_prefix=f"lame{degree}_",
                       petsc_options={"ksp_type": "preonly", "pc_type": "lu"}).solve()
    # radial displacement at the bore point on the symmetry line y = 0
    pts = V.tabulate_dof_coordinates()
    i = int(np.argmin(np.hypot(pts[:, 0] - A_IN, pts[:, 1])))
    return float(uh.x.array.reshape(-1, 2)[i, 0])


def exact_inner_displacement() -> float:
    return (1 + NU) * P * A_IN**2 / (E * (B_OUT**2 - A_IN**2)) * ((1 - 2 * NU) * A_IN + B_OUT**2 / A_IN)


@pytest.mark.skipif(MPI.COMM_WORLD.size > 1, reason="serial check")
def test_p2_does_not_lock_p1_does():
    exact = exact_inner_displacement()
    u2, u1 = inner_displacement(2), inner_displacement(1)
    assert abs(u2 / exact - 1) < 0.01, (u2, exact)
    assert u1 / exact < 0.5, (u1, exact)  # linear triangles: locked, at least 2x too stiff
