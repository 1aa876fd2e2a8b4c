"""Boundary conditions on the RVE sides: `roller`, `free` or a constant `pressure` (DESIGN §2).

- roller: zero normal displacement (a Dirichlet condition on that component);
- free: nothing;
- pressure p: a dead load on the reference side, the potential p ∫ N·u dS (p > 0 compresses).

`BoundaryConditions(V, facet_tags, boundary, scaling)` builds, once: the Dirichlet conditions,
the pressure terms of the residual and the energy (UFL, added to the mechanics' forms) and the
displacement DoFs of each side (for the box's width and height changes).
"""

from __future__ import annotations

import numpy as np

from . import dolfinx_env  # noqa: F401  (import order: dolfinx_solver before dolfinx/petsc4py)
import ufl
from dolfinx import fem
from petsc4py import PETSc

from .tags import NORMAL_AXIS, SIDES, WALL_TAGS


class BoundaryConditions:
    """Takes the displacement space V, the facet tags, the config's [boundary], the Scaling and the
    element degree (the quadrature degree of the pressure terms is max(2, degree))."""

    def __init__(self, V, facet_tags, boundary, scaling, degree: int):
        msh = V.mesh
        tdim = msh.topology.dim
        msh.topology.create_connectivity(tdim - 1, tdim)
        self.config = boundary
        self.dirichlet, dofs = [], []
        zero = PETSc.ScalarType(0.0)
        self.side_dofs = {}
        for s in SIDES:
            Vi = V.sub(NORMAL_AXIS[s])
            d = fem.locate_dofs_topological(Vi, tdim - 1, facet_tags.find(WALL_TAGS[s]))
            self.side_dofs[s] = d
            if boundary.kind(s) == "roller":
                self.dirichlet.append(fem.dirichletbc(zero, d, Vi))
                dofs.append(d)
        local = np.unique(np.concatenate(dofs)) if dofs else np.zeros(0, np.int32)
        self._n_owned = n_owned = V.dofmap.index_map.size_local * V.dofmap.index_map_bs
        self.dirichlet_owned = local[local < n_owned]  # owned local DoFs with a Dirichlet condition
        self.pressure = {s: fem.Constant(msh, PETSc.ScalarType(getattr(boundary, s).pressure / scaling.stress))
                         for s in SIDES if boundary.kind(s) == "pressure"}
        self._ds = ufl.Measure("ds", domain=msh, subdomain_data=facet_tags,
                               metadata={"quadrature_degree": max(2, degree)})

    def rollers(self) -> dict:
        """{side: True} for the sides on rollers (rigid walls for contact)."""
        return {s: self.config.kind(s) == "roller" for s in SIDES}

    def residual_terms(self, v):
        """The pressure loads' contribution to the residual (UFL form in the test function v), or 0."""
        N = ufl.FacetNormal(v.ufl_function_space().mesh)
        return sum((p * ufl.dot(N, v) * self._ds(WALL_TAGS[s]) for s, p in self.pressure.items()), 0)

    def energy_terms(self, u):
        """The pressure loads' potential p ∫ N·u dS (UFL form), or 0."""
        N = ufl.FacetNormal(u.function_space.mesh)
        return sum((p * ufl.dot(N, u) * self._ds(WALL_TAGS[s]) for s, p in self.pressure.items()), 0)

    def mean_normal_displacement(self, u_array, comm) -> dict:
        """{side: mean normal displacement of that side's DoFs} (model units; collective)."""
        from mpi4py import MPI

        out = {}
        for s in SIDES:
            d = self.side_dofs[s]
            own = d[d < self._n_owned]
            tot = comm.allreduce(float(u_array[own].sum()), op=MPI.SUM)
            cnt = comm.allreduce(int(len(own)), op=MPI.SUM)
            out[s] = tot / cnt if cnt else 0.0
        return out
