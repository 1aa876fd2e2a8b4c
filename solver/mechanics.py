r"""Quasi-static finite-strain chemo-mechanics of the RVE: the discrete incremental potential.

Equilibrium  Div P = 0  (plane strain, per unit thickness) is solved as the minimisation of the
incremental potential of a variational constitutive update (Ortiz & Stainier 1999):

    Π(u) = ∫ W(F; state_n, Δt) dX  +  barrier contact  +  p ∫ N·u dS  +  ½ k_prox ∫ |u - u_n|² dX,

where W is the step energy of each phase's material-point law (creep_cathode.laws; for Hencky +
Norton: the Hencky energy plus the Norton dissipation of the backward-Euler step), evaluated at
quadrature points by `MaterialPoints` (P = ∂W/∂F and the algorithmic tangent ∂P/∂F come from
the same update). `Mechanics` is the `newton.System` that Newton minimises each step and the
`stepping.SteppableProblem` that the Stepper advances.

Model units (creep_cathode.units): lengths in L0, stresses in S0; the mesh arrives in them.
"""

from __future__ import annotations

import math
import time

import numpy as np

from . import dolfinx_env  # noqa: F401
import basix
import basix.ufl
import dolfinx.fem.petsc as fp
import ufl
from dolfinx import fem
from mpi4py import MPI
from petsc4py import PETSc

from .boundary import PLATEN_PENALTY, BoundaryConditions
from .domain import Domain
from .material_points import MaterialPoints


def psd_project(D):
    """Nearest positive semi-definite tangent, point by point: D (npts, 4, 4), the in-plane dP/dF
    as a matrix over (F11, F12, F21, F22), symmetrised, negative eigenvalues set to zero."""
    D = 0.5 * (D + np.swapaxes(D, 1, 2))
    lam, Q = np.linalg.eigh(D)
    if lam.min(initial=0.0) >= 0.0:
        return D
    return np.einsum("pik,pk,pjk->pij", Q, np.maximum(lam, 0.0), Q)


class Mechanics:
    """Discrete mechanics of one Domain: spaces, quadrature points, forms, assembly.

    Takes the Config, the Domain (mesh in model units), the Scaling, the communicator and the
    ContactParameters (None: no contact, e.g. a block)."""

    def __init__(self, cfg, dom: Domain, scaling, comm=MPI.COMM_WORLD, contact=None):
        self.cfg, self.dom, self.scaling, self.comm = cfg, dom, scaling, comm
        msh = dom.mesh
        self.L0, self.S0 = scaling.length, scaling.stress
        self.W, self.H = dom.width / self.L0, dom.height / self.L0
        deg = cfg.solver.element_degree
        q = cfg.solver.quadrature_degree or max(1, 2 * (deg - 1))
        self.deg, self.q = deg, q
        self.V = fem.functionspace(msh, ("Lagrange", deg, (2,)))
        self.u = fem.Function(self.V, name="u")
        self.u_n = fem.Function(self.V)  # anchor of the proximal term: the last converged step or its extrapolation
        self._rigid = None  # per-body rigid modes for extrapolated_anchor (built on first use)
        self._quadrature_points(msh, q)
        self._phases(cfg, dom)
        self.points = MaterialPoints(cfg.used_materials(), self.qphase, cfg.cycling.temperature, scaling,
                                     cfg.solver.creep_integrator)
        nq = self.nc * self.nqp
        self.vm_q, self.sig_q, self.J_q = np.zeros(nq), np.zeros((nq, 4)), np.ones(nq)
        E_max = max(max(m.youngs_modulus, (m.lithiated.youngs_modulus or 0.0) if m.lithiated else 0.0)
                    for m in cfg.used_materials().values())
        self.bc = BoundaryConditions(self.V, dom.facet_tags, cfg.boundary, scaling, deg, box=(self.W, self.H),
                                     platen_stiffness=PLATEN_PENALTY * E_max / scaling.stress
                                     / (cfg.rve.mesh_size / self.L0))
        self.bcs = self.bc.dirichlet
        self._forms(msh, q)
        self.contact = None
        self.project_tangent = False  # PSD-project the material tangent (Newton's fallback)
        if contact is not None:
            from .contact import BarrierContact

            self.contact = BarrierContact(self.V, dom.facet_tags, width=self.W, height=self.H, walls=contact.walls,
                                          dhat=contact.dhat, kappa=contact.kappa, comm=comm, bcs=self.bcs,
                                          platen=self.bc.platens[0] if self.bc.platens else None)
            self._project_contact_always = contact.project_hessian
            self.contact.project_hessian = contact.project_hessian
            self.k_prox.value = contact.proximal
        self.k_prox_nominal = float(self.k_prox.value)
        self.timers = {"constitutive": 0.0, "assembly": 0.0}  # (contact: self.contact.stats)
        self._cache = None  # (u, (F, response), with tangent, dt) of the last constitutive update
        self.dt = 0.0

    # ---------------------------------------------------------------- set-up
    def _quadrature_points(self, msh, q):
        cell = msh.basix_cell()
        self.QT = fem.functionspace(msh, basix.ufl.quadrature_element(cell, value_shape=(2, 2), degree=q))
        self.QD = fem.functionspace(msh, basix.ufl.quadrature_element(cell, value_shape=(2, 2, 2, 2), degree=q))
        self.P = fem.Function(self.QT)
        self.D = fem.Function(self.QD)
        tdim = msh.topology.dim
        self.nc = msh.topology.index_map(tdim).size_local
        self.cells = np.arange(self.nc, dtype=np.int32)
        pts, wts = basix.make_quadrature(basix.CellType.triangle, q)
        self.nqp = len(wts)
        self.qdofs = self.QT.dofmap.list[: self.nc].reshape(-1)
        self.grad_expr = fem.Expression(ufl.grad(self.u), pts)
        detJ = fem.Expression(abs(ufl.JacobianDeterminant(msh)), pts).eval(msh, self.cells).reshape(self.nc, -1)
        self.wdet = (detJ * wts[None, :]).reshape(-1)  # reference area weight per quadrature point

    def _phases(self, cfg, dom):
        self.phases = list(cfg.used_materials())
        self.tag2phase = {t: p for t, p in dom.bodies}
        cell_phase = np.full(self.nc, -1, dtype=np.int32)
        for t, p in dom.bodies:
            c = dom.cell_tags.find(t)
            c = c[c < self.nc]
            cell_phase[c] = self.phases.index(p)
        if (cell_phase < 0).any():
            raise RuntimeError("mesh has cells outside any body (pores meshed?)")
        self.cell_phase = cell_phase
        self.qphase = np.repeat(cell_phase, self.nqp)

    def _forms(self, msh, q):
        v, du = ufl.TestFunction(self.V), ufl.TrialFunction(self.V)
        dx = ufl.dx(metadata={"quadrature_degree": q})
        i, j, k, l = ufl.indices(4)
        G = ufl.grad(v)
        self.k_prox = fem.Constant(msh, PETSc.ScalarType(0.0))
        R = ufl.inner(self.P, G) * dx + self.k_prox * ufl.inner(self.u - self.u_n, v) * dx
        a = self.D[i, j, k, l] * ufl.grad(du)[k, l] * G[i, j] * dx + self.k_prox * ufl.inner(du, v) * dx
        E_prox = 0.5 * self.k_prox * ufl.inner(self.u - self.u_n, self.u - self.u_n) * dx
        R = R + self.bc.residual_terms(self.u, v)
        a = a + self.bc.tangent_terms(du, v)
        E_extra = E_prox + self.bc.energy_terms(self.u)
        self.R_form, self.a_form, self.E_form = fem.form(R), fem.form(a), fem.form(E_extra)
        self.E_prox_form = fem.form(E_prox)
        self.A = fp.create_matrix(self.a_form)
        self.A.setOption(PETSc.Mat.Option.NEW_NONZERO_ALLOCATION_ERR, False)
        self.bc.prepare_matrix(self.A)
        self.b = fp.create_vector(self.V)

    # ---------------------------------------------------------------- state (SteppableProblem)
    def set_state(self, theta: dict, dt: float):
        """Material properties at theta ({phase: value}, creep_cathode.lithiation) and the step size."""
        self.dt = dt
        self._cache = None
        self.points.set_state(theta, dt)

    def get_u(self) -> np.ndarray:
        """The local displacement array (a view)."""
        return self.u.x.array

    def set_u(self, u_array) -> None:
        self.u.x.array[:] = u_array

    def anchor(self) -> np.ndarray:
        """The proximal term's anchor u_n (a view)."""
        return self.u_n.x.array

    def set_anchor(self, u_array) -> None:
        self.u_n.x.array[:] = u_array

    def extrapolated_anchor(self, u_old, d) -> np.ndarray:
        """u_old + the deformation part of an extrapolated increment d: on each body, d less its
        rigid-body part (two translations, one rotation about the origin, in the configuration of
        u_old) in the proximal term's metric, the mass matrix M: (Rᵀ M R) c = Rᵀ M d per body.
        Anchored there, the proximal term resists a departure from the extrapolated deformation (a
        floating particle's steady swelling costs nothing) and still pins each body's rigid motion,
        spin included, at the last step (no drift: a quasi-static body has no momentum)."""
        if self._rigid is None:
            self._rigid = self._rigid_setup()
        body, X = self._rigid
        nown = self.V.dofmap.index_map.size_local
        x = X + np.asarray(u_old).reshape(-1, 2)  # the current configuration
        modes = np.zeros((3,) + x.shape)
        modes[0, :, 0] = modes[1, :, 1] = 1.0
        modes[2, :, 0], modes[2, :, 1] = -x[:, 1], x[:, 0]
        nb = len(self.dom.bodies)

        def per_body(M_v):  # (bodies, 3): R_k . (M v) summed over each body's owned nodes
            return np.stack([np.bincount(body[:nown], weights=(modes[k, :nown] * M_v).sum(axis=1), minlength=nb)
                             for k in range(3)], axis=1)

        G = np.stack([per_body(self._mass_action(modes[l_].reshape(-1))) for l_ in range(3)], axis=2)
        rhs = per_body(self._mass_action(d))
        G, rhs = self.comm.allreduce(G, op=MPI.SUM), self.comm.allreduce(rhs, op=MPI.SUM)
        c = np.linalg.solve(G, rhs[:, :, None])[:, :, 0]  # (bodies, 3)
        rigid = np.einsum("nk,knj->nj", c[body], modes)  # each node's body's rigid part
        return u_old + d - rigid.reshape(-1)

    def _mass_action(self, vec) -> np.ndarray:
        """(M vec) at the owned nodes, (nown, 2): M the mass matrix of the proximal term (∫ u·v dX)."""
        self._mvec.x.array[:] = vec
        b = fp.assemble_vector(self._mass_form)
        b.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
        out = b.array_r[: 2 * self.V.dofmap.index_map.size_local].reshape(-1, 2).copy()
        b.destroy()
        return out

    def _rigid_setup(self):
        """The node -> body map (bodies are separate meshes: no shared nodes), the nodes' reference
        positions and the mass form for extrapolated_anchor."""
        im = self.V.dofmap.index_map
        nall = im.size_local + im.num_ghosts
        body = np.full(nall, -1, dtype=np.int64)
        dm = self.V.dofmap.list
        for i, (t, _) in enumerate(self.dom.bodies):
            body[dm[self.dom.cell_tags.find(t)].ravel()] = i
        if (body < 0).any():
            raise RuntimeError("a node outside every body")
        v = ufl.TestFunction(self.V)
        self._mvec = fem.Function(self.V)
        self._mass_form = fem.form(ufl.inner(self._mvec, v) * ufl.dx(metadata={"quadrature_degree": self.q}))
        return body, self.V.tabulate_dof_coordinates()[:nall, :2].copy()

    def _update(self, u_array, tangent):
        c = self._cache
        if c is not None and (c[2] or not tangent) and c[3] == self.dt and np.array_equal(c[0], u_array):
            return c[1]
        self.u.x.array[:] = u_array
        F = self.grad_expr.eval(self.dom.mesh, self.cells).reshape(-1, 2, 2)
        F[:, 0, 0] += 1.0
        F[:, 1, 1] += 1.0
        t0 = time.perf_counter()
        r = self.points.update(F, tangent)
        self.timers["constitutive"] += time.perf_counter() - t0
        self._cache = (np.array(u_array, copy=True), (F, r), tangent, self.dt)
        return F, r

    def _stored_energy(self, u_array) -> float:
        """∫ W dX over the bulk (all ranks)."""
        F, r = self._update(u_array, tangent=False)
        W = self.points.energy_density(r, F)
        return self.comm.allreduce(float(np.sum(W * self.wdet)), op=MPI.SUM)

    # ---------------------------------------------------------------- Newton system
    def energy(self, u_array) -> float:
        """Π(u): bulk step energy + pressure + proximal + contact; inf where inadmissible."""
        e = self._stored_energy(u_array)
        if not np.isfinite(e):
            return math.inf
        t0 = time.perf_counter()
        self.u.x.array[:] = u_array
        self.bc.update(u_array)
        e += self.comm.allreduce(fem.assemble_scalar(self.E_form), op=MPI.SUM)
        self.timers["assembly"] += time.perf_counter() - t0
        if self.contact is not None:
            e += self.contact.energy(u_array)
        return e

    def assemble_gradient(self, u_array):
        """b = ∇Π at u alone, Dirichlet rows zeroed (Newton's convergence test of an iterate; the
        constitutive update keeps its tangent, cached for `assemble_hessian` at the same u)."""
        F, r = self._update(u_array, tangent=True)
        self.P.x.array.reshape(-1, 4)[self.qdofs] = r.P.reshape(-1, 4)
        self.P.x.scatter_forward()
        t0 = time.perf_counter()
        self.u.x.array[:] = u_array
        self.bc.update(u_array)
        b = self.b
        with b.localForm() as bl:
            bl.set(0.0)
        fp.assemble_vector(b, self.R_form)
        b.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
        self.timers["assembly"] += time.perf_counter() - t0
        if self.contact is not None:
            self.contact.add_gradient(b, u_array)
        b.array[self.bc.dirichlet_owned] = 0.0
        return b

    def assemble(self, u_array):
        """(b, A) = (∇Π, ∇²Π) at u; Dirichlet rows of b zeroed, of A identity."""
        b = self.assemble_gradient(u_array)
        return b, self.assemble_hessian(u_array)

    def assemble_hessian(self, u_array):
        """A = ∇²Π at u, Dirichlet rows and columns identity. It needs only the constitutive tangent at
        u (cached by `assemble_gradient` at the same u) and the contact Hessian: Newton tests an
        iterate with its gradient and assembles this only if it goes on."""
        F, r = self._update(u_array, tangent=True)
        D = r.dPdF.reshape(-1, 4, 4)
        if self.project_tangent:
            D = psd_project(D)
        self.D.x.array.reshape(-1, 16)[self.qdofs] = D.reshape(-1, 16)
        self.D.x.scatter_forward()
        t0 = time.perf_counter()
        A = self.A
        A.zeroEntries()
        fp.assemble_matrix(A, self.a_form, bcs=self.bcs)
        A.assemble()
        self.bc.add_tangent(A)
        self.timers["assembly"] += time.perf_counter() - t0
        if self.contact is not None:
            self.contact.add_hessian(A, u_array)
            t0 = time.perf_counter()
            A.assemble()  # contact adds nothing to Dirichlet rows/columns (bcs given to it)
            self.timers["assembly"] += time.perf_counter() - t0
        return A

    def time_split(self) -> dict:
        """Seconds spent so far, by part: constitutive update, finite-element assembly, contact
        (barrier energy, gradient, Hessian and its merge, collision detection)."""
        out = dict(self.timers)
        if self.contact is not None:
            st = self.contact.stats
            out["contact"] = sum(st[k] for k in ("t_hessian", "t_insert", "t_ccd", "t_energy", "t_gradient"))
        return out

    def set_hessian_projection(self, level: int):
        """Newton's switch for the PSD projection of the Hessian where the exact one gave no descent
        direction: level 1 projects the barrier Hessian per collision (always projected when
        `contact.project_hessian` is set); level 2 also the material tangent, point by point (Hencky
        elasticity is not convex at large strains, e.g. Se squeezed into a closing pore); 0 none."""
        self.project_tangent = level >= 2 or (level >= 1 and self.contact is None)
        if self.contact is not None:
            self.contact.project_hessian = level >= 1 or self._project_contact_always

    def max_step(self, u_array, du_array) -> float:
        """Largest collision-free fraction of the step du (1.0 without contact)."""
        if self.contact is None:
            return 1.0
        return self.contact.max_step(u_array, du_array)

    # ---------------------------------------------------------------- after a step
    def commit(self):
        """Accept the converged step: update internal variables, stresses for metrics, and u_n."""
        F, r = self._update(self.u.x.array, tangent=False)
        self.points.commit(r)
        self.vm_q = r.vm
        self.sig_q = r.sigma
        self.J_q = F[:, 0, 0] * F[:, 1, 1] - F[:, 0, 1] * F[:, 1, 0]
        self.u_n.x.array[:] = self.u.x.array
        self._cache = None  # the internal variables changed

    def refresh(self):
        """Recompute stresses for metrics at the current u without touching the internal variables."""
        F, r = self._update(self.u.x.array, tangent=False)
        self.vm_q, self.sig_q = r.vm, r.sigma
        self.J_q = F[:, 0, 0] * F[:, 1, 1] - F[:, 0, 1] * F[:, 1, 0]

    def set_proximal_scale(self, s: float) -> None:
        """Scale the proximal stiffness k to s x its configured value (settling a rest)."""
        self.k_prox.value = self.k_prox_nominal * s

    def proximal_ratio(self, u_array) -> float:
        """Proximal energy of the step relative to the stored (bulk step) energy: a diagnostic that
        the regularisation of floating particles does not drive the answer."""
        if float(self.k_prox.value) == 0.0:
            return 0.0
        W = self._stored_energy(u_array)
        self.u.x.array[:] = u_array
        Ep = self.comm.allreduce(fem.assemble_scalar(self.E_prox_form), op=MPI.SUM)
        return Ep / W if W > 0 else 0.0

    def step_measures(self) -> dict:
        """What the step controller checks after a converged step, each at the
        `creep_increment_quantile` (default 0.99; 1 = the largest) of the points that keep at least
        half of their trial stress: the equivalent creep increment (`creep_increment`) and the
        laws' local error estimate (`creep_error`, relative). Points that relax (nearly) completely
        within the step (stress concentrations at point contacts with a high exponent) are
        resolved by backward Euler's stability, not by the step size, and do not limit it."""
        F, r = self._update(self.u.x.array, tangent=False)
        m = r.ratio >= 0.5 if r.ratio is not None else slice(None)
        q = self.cfg.solver.creep_increment_quantile
        d = self.points.step_increment(r)
        return {"creep_increment": self._quantile(np.asarray(d[m], dtype=float).ravel(), q),
                "creep_error": self._phase_error(r, F), "creep_error_order": self.points.error_order()}

    #: a stress below this many shear moduli is no stress for the relative creep error (1e-6: ~10 kPa in Se)
    ERROR_STRAIN_FLOOR = 1e-6

    def _phase_error(self, r, F) -> float:
        """The laws' local error estimate averaged over each phase (deformed area weights),
        relative to the phase's mean equivalent stress (the reported metric) plus
        3 mu ERROR_STRAIN_FLOOR; the largest over the phases."""
        err = self.points.step_error(r)
        w = self.wdet * (F[:, 0, 0] * F[:, 1, 1] - F[:, 0, 1] * F[:, 1, 0])
        mu = self.points.shear_modulus()
        se = r.vm + 3.0 * mu * self.ERROR_STRAIN_FLOOR  # von Mises of the Cauchy stress (what the metrics average)
        worst = 0.0
        for i in range(len(self.phases)):
            m = self.qphase == i
            num = self.comm.allreduce(float((err[m] * w[m]).sum()), op=MPI.SUM)
            den = self.comm.allreduce(float((se[m] * w[m]).sum()), op=MPI.SUM)
            if num > 0:
                worst = max(worst, num / den if den > 0 else math.inf)
        return worst

    def _quantile(self, d: np.ndarray, q: float) -> float:
        """The q-quantile of values spread over the ranks (q = 1: the maximum)."""
        if q >= 1.0:
            return self.comm.allreduce(float(d.max()) if d.size else 0.0, op=MPI.MAX)
        d = np.concatenate(self.comm.allgather(d)) if self.comm.size > 1 else d
        return float(np.quantile(d, q)) if d.size else 0.0

    def rigid_body_modes(self):
        """The in-plane rigid-body modes of V (rigid_body_modes)."""
        return rigid_body_modes(self.V)

    def dofs(self) -> int:
        """Global number of displacement DoFs."""
        return self.V.dofmap.index_map.size_global * self.V.dofmap.index_map_bs


def rigid_body_modes(V):
    """The in-plane rigid-body modes (two translations, one rotation) of the vector space V as an
    orthonormal PETSc NullSpace: the near-null space for algebraic multigrid (each particle's own
    modes are local to it, so the global ones serve every particle)."""
    vecs = []
    x = V.tabulate_dof_coordinates()[:, :2]
    for k in range(3):
        f = fem.Function(V)
        a = f.x.array.reshape(-1, 2)
        if k < 2:
            a[:, k] = 1.0
        else:
            a[:, 0], a[:, 1] = -x[:, 1], x[:, 0]
        f.x.scatter_forward()
        vecs.append(f.x.petsc_vec.copy())
    for i, v in enumerate(vecs):  # PETSc requires an orthonormal basis
        for w in vecs[:i]:
            v.axpy(-v.dot(w), w)
        v.normalize()
    return PETSc.NullSpace().create(vectors=vecs, comm=V.mesh.comm)
