"""Boundary conditions on the RVE sides: `roller`, `free` or a constant `pressure` (DESIGN §2).

- roller: zero normal displacement (a Dirichlet condition on that component);
- free: nothing;
- pressure p: a dead load on the reference side, the potential p ∫ N·u dS (p > 0 compresses);
- pressure p through a rigid platen (`{pressure = p, platen = true}`): the solid faces on that side stay
  flat and move together, and carry the force p x (side length) between them, as under a cell's current
  collector or a press punch. With w = N·u on the side's solid faces Γ (length L) and its mean
  w̄ = ∫_Γ w dS / L, the potential is p ℓ w̄ + ½ k ∫_Γ (w − w̄)² dS (ℓ: the box side's length; k: a
  penalty stiffness, PLATEN_PENALTY x the largest Young's modulus / mesh size). Its Hessian is
  k M_Γ − (k/L) b bᵀ with b_i = ∫_Γ N·φ_i dS: the boundary mass matrix and one dense rank-one block
  over the side's DoFs (inserted into the matrix pattern once).

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

from .tags import NORMAL_AXIS, NORMAL_SIGN, SIDES, WALL_TAGS


#: platen penalty k = PLATEN_PENALTY x E_max / h: the faces' deviation from flat is ~1e-3 of the local
#: elastic deformation under the platen
PLATEN_PENALTY = 1e3


class BoundaryConditions:
    """Takes the displacement space V, the facet tags, the config's [boundary], the Scaling and the
    element degree (the quadrature degree of the pressure terms is max(2, degree)); the box's width
    and height and the platen penalty stiffness (model units) where a side has a platen."""

    def __init__(self, V, facet_tags, boundary, scaling, degree: int, *, box=None, platen_stiffness=0.0):
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
                         for s in SIDES if boundary.kind(s) == "pressure" and not getattr(boundary, s).platen}
        self._ds = ufl.Measure("ds", domain=msh, subdomain_data=facet_tags,
                               metadata={"quadrature_degree": max(2, degree)})
        self.platens = []
        if platen_stiffness > 0:
            ds2 = ufl.Measure("ds", domain=msh, subdomain_data=facet_tags,
                              metadata={"quadrature_degree": 2 * degree})  # the mass matrix exactly
            for s in SIDES:
                if boundary.kind(s) == "pressure" and getattr(boundary, s).platen:
                    length = box[0] if NORMAL_AXIS[s] == 1 else box[1]
                    self.platens.append(Platen(V, ds2(WALL_TAGS[s]), s, getattr(boundary, s).pressure / scaling.stress,
                                               length, platen_stiffness, local))

    def rollers(self) -> dict:
        """{side: True} for the sides on rollers (rigid walls for contact)."""
        return {s: self.config.kind(s) == "roller" for s in SIDES}

    def residual_terms(self, u, v):
        """The pressure loads' contribution to the residual (UFL form in the test function v), or 0."""
        N = ufl.FacetNormal(v.ufl_function_space().mesh)
        return sum((p * ufl.dot(N, v) * self._ds(WALL_TAGS[s]) for s, p in self.pressure.items()), 0) \
            + sum((pl.residual(u, v) for pl in self.platens), 0)

    def tangent_terms(self, du, v):
        """The platens' boundary mass terms of the Hessian (UFL form), or 0 (the rank-one parts are
        added by `add_tangent`)."""
        return sum((pl.tangent(du, v) for pl in self.platens), 0)

    def energy_terms(self, u):
        """The pressure loads' potential p ∫ N·u dS and the platens' (UFL form), or 0."""
        N = ufl.FacetNormal(u.function_space.mesh)
        return sum((p * ufl.dot(N, u) * self._ds(WALL_TAGS[s]) for s, p in self.pressure.items()), 0) \
            + sum((pl.energy(u) for pl in self.platens), 0)

    def update(self, u_array) -> None:
        """Set the platens' mean displacement w̄ from u (collective); before assembling at u."""
        for pl in self.platens:
            pl.update(u_array)

    def prepare_matrix(self, A) -> None:
        """Insert the platens' dense blocks into A's sparsity pattern (once, before the first solve)."""
        for pl in self.platens:
            pl.prepare(A)

    def add_tangent(self, A) -> None:
        """A += the platens' rank-one parts −(k/L) b bᵀ (collective; A assembled)."""
        for pl in self.platens:
            pl.add_rank_one(A)

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


class Platen:
    """A rigid platen on one side (see the module docstring): the potential p ℓ w̄ + ½ k ∫_Γ (w − w̄)² dS.

    Takes V, the side's measure ds(Γ), the side, the pressure p and the side length ℓ (model units),
    the penalty k and the local Dirichlet DoFs (left out of the rank-one block)."""

    def __init__(self, V, ds, side, p, length, k, dirichlet):
        from mpi4py import MPI

        msh = V.mesh
        comm = msh.comm
        self.side, self.comm = side, comm
        self.N = NORMAL_SIGN[side] * ufl.unit_vector(NORMAL_AXIS[side], 2)
        self.ds = ds
        self.L = comm.allreduce(fem.assemble_scalar(fem.form(fem.Constant(msh, PETSc.ScalarType(1.0)) * ds)),
                                op=MPI.SUM)
        if self.L <= 0:
            from .config import ConfigError  # (every rank: L is reduced)

            raise ConfigError(f"boundary.{side}.platen: no solid meets the {side} side, nothing for a platen to press on")
        self.k = fem.Constant(msh, PETSc.ScalarType(k))
        self.wbar = fem.Constant(msh, PETSc.ScalarType(0.0))
        self.load = fem.Constant(msh, PETSc.ScalarType(p * length / self.L))  # p ℓ / L: the face traction
        # b_i = ∫_Γ N·φ_i dS (owned entries; Dirichlet DoFs left out)
        v = ufl.TestFunction(V)
        import dolfinx.fem.petsc as fp

        bvec = fp.assemble_vector(fem.form(ufl.dot(self.N, v) * ds))
        bvec.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
        n_owned = V.dofmap.index_map.size_local * V.dofmap.index_map_bs
        b = bvec.array_r[:n_owned].copy()
        bvec.destroy()
        b[dirichlet[dirichlet < n_owned]] = 0.0
        self.n_owned = n_owned
        self.b_owned = b
        loc = np.flatnonzero(b)
        r0 = V.dofmap.index_map.local_range[0] * V.dofmap.index_map_bs
        glob = comm.allgather((loc + r0, b[loc]))
        self.gcols = np.concatenate([g for g, _ in glob]).astype(PETSc.IntType)
        self.gvals = np.concatenate([x for _, x in glob])
        self.rows, self.row_start = loc, r0
        self._block = None  # the assembled b bᵀ (owned rows x global columns)

    def mean_of(self, u_array) -> float:
        """w̄(u) = ∫_Γ N·u dS / L (collective)."""
        from mpi4py import MPI

        return self.comm.allreduce(float(self.b_owned @ u_array[: self.n_owned]), op=MPI.SUM) / self.L

    def update(self, u_array) -> None:
        self.wbar.value = self.mean_of(u_array)

    def add_to_vector(self, b, scale: float) -> None:
        """b += scale x ∂w̄/∂u = scale b/L on the owned rows (b: PETSc Vec, owned layout)."""
        with b.localForm() as bl:
            bl.array_w[self.rows] += scale * self.b_owned[self.rows] / self.L

    def mean(self) -> float:
        """w̄: the platen's displacement along the outward normal (model units; after update)."""
        return float(self.wbar.value)

    def residual(self, u, v):
        w, wv = ufl.dot(self.N, u), ufl.dot(self.N, v)
        return (self.load + self.k * (w - self.wbar)) * wv * self.ds

    def tangent(self, du, v):
        return self.k * ufl.dot(self.N, du) * ufl.dot(self.N, v) * self.ds

    def energy(self, u):
        w = ufl.dot(self.N, u)
        return (self.load * w + 0.5 * self.k * (w - self.wbar) ** 2) * self.ds

    def _matrix(self, A, scale: float):
        import scipy.sparse as sp

        nloc = A.getLocalSize()[0]
        data = scale * np.outer(self.b_owned[self.rows], self.gvals)
        rows = np.repeat(self.rows, len(self.gcols))
        cols = np.tile(self.gcols, len(self.rows))
        C = sp.csr_matrix((data.ravel(), (rows, cols)), shape=(nloc, A.getSize()[1]))
        C.sort_indices()
        M = PETSc.Mat().createAIJ(A.getSizes(), csr=(C.indptr.astype(PETSc.IntType), C.indices.astype(PETSc.IntType),
                                                    C.data), comm=self.comm)
        M.assemble()
        return M

    def prepare(self, A) -> None:
        if not A.assembled:
            A.assemble()
        M = self._matrix(A, 0.0)
        A.axpy(1.0, M, structure=PETSc.Mat.Structure.DIFFERENT_NONZERO_PATTERN)
        M.destroy()
        A.setOption(PETSc.Mat.Option.NEW_NONZERO_ALLOCATION_ERR, False)
        self._block = self._matrix(A, 1.0)

    def add_rank_one(self, A, scale=None) -> None:
        """A += scale b bᵀ (default −k/L: the penalty's rank-one part)."""
        s = -float(self.k.value) / self.L if scale is None else scale
        A.axpy(s, self._block, structure=PETSc.Mat.Structure.SUBSET_NONZERO_PATTERN)
