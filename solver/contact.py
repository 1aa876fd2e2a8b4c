r"""Frictionless unilateral contact between separate bodies: Incremental Potential Contact (IPC).

Method (Li et al., "Incremental Potential Contact", ACM TOG 39(4), 2020; IPC Toolkit `ipctk`):

- The collision surface is a polyline through the displacement DoFs on the particle boundaries:
  every facet tagged with a particle tag (1 .. PORE_TAG-1) gives one straight segment (P1) or two
  (P2: vertex - edge-midpoint DoF - vertex), so the collision vertices are exactly the surface
  displacement DoFs. Rigid box walls (``walls[side] = True``) are static segments along the box
  sides, extended beyond the corners so that their end points never come near a body.
- A smooth log-barrier on the unsigned distances d_k between each vertex and each segment of an
  other body (or a wall) closer than ``dhat``:

      B(x) = kappa * sum_k w_k * b(d_k^2) / dhat^3,   b(z) = -(z - dhat^2)^2 ln(z / dhat^2),

  (``ipctk.BarrierPotential(dhat, kappa, use_physical_barrier=True)``; ipctk evaluates the barrier
  on squared distances). w_k = 1/2 x (rest length of the surface around the vertex) ("area
  weighting", ipctk's convergent formulation), so B is a boundary integral, independent of the
  mesh, and ``kappa`` has the units of a stress: the contact pressure at gap d = s dhat is
  p = kappa g(s), g(s) = 2 s [4 (1 - s^2) ln(1/s) + (1 - s^2)^2 / s^2] ~ 2/s for s << 1
  (body-body; half that against a rigid wall; ``barrier_pressure``). Pick kappa ~ 1e-3 .. 1e-2
  of the stiffest Young's modulus: a contact pressure p >> kappa then sits at a gap
  d ~ 2 dhat kappa / p (body-body; dhat kappa / p against a wall) << dhat.
- B -> inf as d -> 0 and continuous collision detection (CCD, ``max_step``) caps every Newton
  step so that no trajectory crosses: the iterates never interpenetrate, so an energy line
  search never meets an interpenetrated state. The barrier is zero for d >= dhat: no adhesion;
  contacts open again when the bodies shrink.
- The exact Hessian of B is added to the tangent matrix; when a Newton direction is not a descent
  direction, solver.newton re-assembles with the Hessian projected per collision onto the PSD
  cone (ipctk CLAMP; ``project_hessian``). Projecting always costs quadratic convergence
  (prototype case, P2: 458 Newton iterations with projection, 54 without).

Vertices that lie on a box side (the cut faces of particles that cross a roller side) never
collide with that side's wall (ipctk collision filter); they collide with all other walls and
bodies. Same-body pairs are filtered out unless ``self_contact=True`` (then the surface
segments must be longer than ~2 dhat, else adjacent segments of one body feel the barrier).

MPI: the 2D collision surface is small. It is gathered to every rank once at set-up (rest
coordinates, global DoF numbers); every call gathers the surface displacements, every rank
evaluates the barrier redundantly (ipctk single-threaded, so deterministic; scalars are
broadcast from rank 0 anyway) and adds only the rows it owns. Matrix entries that couple
DoFs of different bodies are not in the finite-element sparsity pattern: they are merged into
the matrix with one ``MatAXPY(DIFFERENT_NONZERO_PATTERN)`` (plus padding for nearby pairs)
when new ones appear, which is ~500x faster than PETSc's per-row reallocation (80k DoFs, 1500
contact stencils: 0.04 s vs 18 s). See docs/contact.md.
"""

from __future__ import annotations

import math
import time

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

from . import dolfinx_env  # noqa: F401  (import order: dolfinx_solver before dolfinx/petsc4py)
import ipctk
from mpi4py import MPI
from petsc4py import PETSc

PORE_TAG = 100000
WALL_TAGS = {"left": 100001, "right": 100002, "bottom": 100003, "top": 100004}  # = solver.domain
SIDES = ("left", "right", "bottom", "top")
WALL_ID = {s: -(i + 1) for i, s in enumerate(SIDES)}  # "body" id of a wall in gaps()


def barrier_pressure(s, kappa: float = 1.0, wall: bool = False):
    """Contact pressure of the area-weighted physical barrier at gap d = s * dhat (s in (0, 1)).

    Body-body: both surfaces' vertices push, p = kappa g(s); vertex on a rigid wall: p = kappa g(s)/2."""
    s = np.asarray(s, float)
    g = 2.0 * s * (4.0 * (1.0 - s**2) * np.log(1.0 / s) + (1.0 - s**2) ** 2 / s**2)
    return (0.5 if wall else 1.0) * kappa * g


def barrier_parameters(length: float, modulus: float, *, dhat_rel: float = 5e-3,
                       kappa_rel: float = 1e-3) -> tuple[float, float]:
    """(dhat, kappa) from a length scale (e.g. the mean particle radius) and a modulus scale
    (e.g. the largest Young's modulus): dhat = dhat_rel * length, kappa = kappa_rel * modulus.
    Keep dhat below half the smallest initial gap and below the surface segment length."""
    return dhat_rel * length, kappa_rel * modulus


class BarrierContact:
    """IPC barrier contact on the particle boundaries of a DOLFINx P1/P2 vector space.

    Parameters
    ----------
    V : dolfinx vector function space (Lagrange 1 or 2, block size 2) on an order-1 mesh.
    facet_tags : MeshTags of dimension 1; particle boundary facets carry the particle tag (>= 1,
        < PORE_TAG); box sides carry WALL_TAGS (they are not collision segments).
    width, height : the box [0, width] x [0, height] (model units).
    walls : {side: True} makes that box side a rigid fixed wall.
    dhat : barrier activation distance (model length units); kappa: barrier stiffness (model
        stress units; see module doc).
    body_of_facet_tag : optional dict or callable facet tag -> body id (default: the tag).
    comm : MPI communicator (default V.mesh.comm).
    bcs : optional Dirichlet BCs (dolfinx DirichletBC list); their DoFs get no contact gradient
        rows nor Hessian rows/columns (the system may also zero them itself).
    self_contact : also let non-adjacent segments of the same body collide.
    threads : ipctk (TBB) threads per rank.
    pad_radius : pairs closer than this get (zero) matrix entries whenever the sparsity pattern
        has to grow (default max(4 dhat, 2 x mean segment length)).
    length_scale : ipctk is fed coordinates divided by this (default max(width, height)), so its
        absolute tolerances (CCD, broad phase) do not depend on the units; results are
        scale-invariant (energy ~ kappa L^2, gradient ~ kappa L, Hessian ~ kappa).
    """

    def __init__(self, V, facet_tags, *, width: float, height: float, walls: dict, dhat: float,
                 kappa: float, body_of_facet_tag=None, comm=None, bcs=None, self_contact: bool = False,
                 threads: int = 1, pad_radius: float | None = None, length_scale: float | None = None):
        if threads:
            ipctk.set_num_threads(int(threads))
        self.V = V
        self.comm = comm if comm is not None else V.mesh.comm
        self.width, self.height = float(width), float(height)
        self.walls = {s: bool(walls.get(s, False)) for s in SIDES}
        self.dhat, self.kappa = float(dhat), float(kappa)
        if not (self.dhat > 0 and self.kappa > 0):
            raise ValueError("contact: dhat and kappa must be positive")
        self.self_contact = bool(self_contact)
        # ipctk works on coordinates divided by Lc (its CCD / broad-phase tolerances are absolute):
        # B = kappa Lc^2 sum w^ b(d^2; dhat^2)/dhat^3 in scaled variables = the same B unscaled.
        self.Lc = float(length_scale) if length_scale else max(self.width, self.height)
        self._dhat_n = self.dhat / self.Lc
        self.potential = ipctk.BarrierPotential(self._dhat_n, self.kappa * self.Lc**2, True)
        # exact barrier Hessian by default (quadratic convergence); per-collision PSD projection on
        # demand (solver.newton switches it on for an iteration whose direction is not a descent
        # direction). Measured on the prototype case: always-CLAMP 458 Newton iterations, exact 54.
        self.project_hessian = False
        self.project_vv = False  # project the vertex-vertex collisions' Hessians only (prototype, issue 13)
        self.psd_method = ipctk.PSDProjectionMethod.CLAMP
        self._setup_surface(facet_tags, body_of_facet_tag)
        self._setup_collision_mesh()
        seg = np.linalg.norm(self.X[self.E[:, 1]] - self.X[self.E[:, 0]], axis=1)
        self.segment_length = (float(seg.min()), float(seg.mean()), float(seg.max())) if len(seg) else (0, 0, 0)
        self.pad_radius = float(pad_radius) if pad_radius else max(4.0 * self.dhat, 2.0 * self.segment_length[1])
        self.set_dirichlet(bcs or [])
        self._cache_key = None
        xn = np.asfortranarray(self.rest / self.Lc)
        col = ipctk.NormalCollisions()
        col.use_area_weighting = True
        col.build(self.cm, xn, self._dhat_n)
        self.initial_min_distance = float(np.sqrt(col.compute_minimum_distance(self.cm, xn))) * self.Lc \
            if len(col) else math.inf
        if not self.initial_min_distance > 0:
            raise ValueError("contact: bodies touch or overlap in the reference configuration (a particle "
                             "vertex at distance 0 from another particle or a rigid wall)")
        self._known = None  # sparsity pattern known to be in the matrix (owned rows x global cols)
        self._known_mat = None
        self.pattern_version = 0
        self.stats = {"merges": 0, "hessian_calls": 0, "t_hessian": 0.0, "t_insert": 0.0, "t_ccd": 0.0,
                      "t_energy": 0.0, "t_gradient": 0.0}

    # ------------------------------------------------------------------ set-up
    def _setup_surface(self, facet_tags, body_of_facet_tag):
        V, comm = self.V, self.comm
        msh = V.mesh
        tdim = msh.topology.dim
        if tdim != 2:
            raise ValueError("contact: 2D meshes only")
        msh.topology.create_connectivity(tdim - 1, tdim)
        msh.topology.create_connectivity(tdim, tdim - 1)
        layout = V.dofmap.dof_layout
        closure = np.array([layout.entity_closure_dofs(tdim - 1, i) for i in range(3)], dtype=np.int32)
        k = closure.shape[1]
        if k not in (2, 3):
            raise ValueError("contact: Lagrange degree 1 or 2 only")
        self.degree = k - 1
        bs = V.dofmap.index_map_bs
        if bs != 2:
            raise ValueError("contact: a 2-component vector space is required")
        vals = np.asarray(facet_tags.values)
        idx = np.asarray(facet_tags.indices)
        sel = (vals >= 1) & (vals < PORE_TAG)
        facets, ftag = idx[sel], vals[sel]
        if body_of_facet_tag is None:
            fbody = ftag.astype(np.int64)
        elif callable(body_of_facet_tag):
            fbody = np.array([body_of_facet_tag(int(t)) for t in ftag], dtype=np.int64)
        else:
            fbody = np.array([body_of_facet_tag.get(int(t), int(t)) for t in ftag], dtype=np.int64)
        f2c = msh.topology.connectivity(tdim - 1, tdim)
        c2f = msh.topology.connectivity(tdim, tdim - 1)
        cell = f2c.array[f2c.offsets[facets]]
        c2f_arr = c2f.array.reshape(-1, 3)
        lf = np.argmax(c2f_arr[cell] == facets[:, None], axis=1)
        dofs = V.dofmap.list[cell[:, None], closure[lf]]  # (nf, k) block dofs: v0, v1 [, mid]
        if k == 2:
            segs = dofs
            sbody = fbody
        else:
            segs = np.concatenate([dofs[:, [0, 2]], dofs[:, [2, 1]]])
            sbody = np.concatenate([fbody, fbody])
        im = V.dofmap.index_map
        nloc_blocks = im.size_local
        ublk = np.unique(segs.ravel()) if len(segs) else np.zeros(0, np.int32)
        gblk = im.local_to_global(ublk.astype(np.int32)) if len(ublk) else np.zeros(0, np.int64)
        xyz = V.tabulate_dof_coordinates()[ublk, :2] if len(ublk) else np.zeros((0, 2))
        gsegs = im.local_to_global(segs.ravel().astype(np.int32)).reshape(-1, 2) if len(segs) else \
            np.zeros((0, 2), np.int64)
        parts = comm.allgather((gsegs.astype(np.int64), sbody, gblk.astype(np.int64), xyz))
        allsegs = np.concatenate([p[0] for p in parts])
        allbody = np.concatenate([p[1] for p in parts])
        allg = np.concatenate([p[2] for p in parts])
        allx = np.concatenate([p[3] for p in parts])
        gverts, first = np.unique(allg, return_index=True)
        self.n = n = len(gverts)
        if n == 0:
            raise ValueError("contact: no particle boundary facets (tags 1..99999) found")
        self.gblocks = gverts  # global block index per collision vertex (sorted)
        self.X = np.ascontiguousarray(allx[first], dtype=float)  # rest positions (n, 2)
        E = np.searchsorted(gverts, allsegs)
        key = np.sort(E, axis=1)
        _, ue = np.unique(key, axis=0, return_index=True)
        ue.sort()
        self.E = E[ue].astype(np.int32)
        self.edge_body = allbody[ue]
        self.vbody = np.zeros(n, dtype=np.int64)
        self.vbody[self.E[:, 0]] = self.edge_body
        self.vbody[self.E[:, 1]] = self.edge_body
        # ownership: which collision vertices this rank owns, and where they go in the gather
        own_mask = ublk < nloc_blocks
        self.own_lblk = ublk[own_mask].astype(np.int64)  # local block index
        self.own_pos = np.searchsorted(gverts, gblk[own_mask]).astype(np.int64)
        counts = comm.allgather(len(self.own_pos))
        self._counts2 = np.array(counts, dtype=np.int64) * 2
        self._displs2 = np.concatenate([[0], np.cumsum(self._counts2)[:-1]]).astype(np.int64)
        perm = np.concatenate(comm.allgather(self.own_pos))
        if len(perm) != n or len(np.unique(perm)) != n:
            raise RuntimeError("contact: inconsistent ownership of surface DoFs")
        self._perm = perm
        self._recv = np.empty(2 * n)
        self.gdof = np.stack([2 * gverts, 2 * gverts + 1], axis=1).ravel()  # global dof per collision dof
        self.nrow_local = nloc_blocks * bs
        self.row_start = im.local_range[0] * bs
        self.nglobal = im.size_global * bs
        own_cd = np.stack([2 * self.own_pos, 2 * self.own_pos + 1], axis=1).ravel()
        own_ld = np.stack([2 * self.own_lblk, 2 * self.own_lblk + 1], axis=1).ravel()
        self._own_cdofs, self._own_ldofs = own_cd, own_ld

    def _setup_collision_mesh(self):
        n, W, H = self.n, self.width, self.height
        L = max(W, H)
        self.geom_tol = 1e-8 * L
        ext = L
        ends = {"left": [(0.0, -ext), (0.0, H + ext)], "right": [(W, -ext), (W, H + ext)],
                "bottom": [(-ext, 0.0), (W + ext, 0.0)], "top": [(-ext, H), (W + ext, H)]}
        on = {"left": np.abs(self.X[:, 0]) <= self.geom_tol, "right": np.abs(self.X[:, 0] - W) <= self.geom_tol,
              "bottom": np.abs(self.X[:, 1]) <= self.geom_tol, "top": np.abs(self.X[:, 1] - H) <= self.geom_tol}
        self.on_side = on
        wv, we, patch = [], [], list(self.vbody)
        excl = {}
        self.wall_sides = [s for s in SIDES if self.walls[s]]
        for s in self.wall_sides:
            i0 = n + len(wv)
            wv += ends[s]
            we.append((i0, i0 + 1))
            patch += [WALL_ID[s], WALL_ID[s]]
            for p in np.flatnonzero(on[s]):
                excl[(int(p), i0)] = False
                excl[(int(p), i0 + 1)] = False
        self.n_wall_vertices = len(wv)
        rest = np.vstack([self.X, np.array(wv, float).reshape(-1, 2)])
        edges = np.vstack([self.E, np.array(we, np.int32).reshape(-1, 2)]).astype(np.int32)
        self.rest = np.asfortranarray(rest)
        self.cm = ipctk.CollisionMesh(np.asfortranarray(rest / self.Lc), np.asfortranarray(edges),
                                      np.zeros((0, 3), dtype=np.int32))
        filt = ipctk.make_static_obstacle_filter(n)
        if not self.self_contact:
            filt = filt & ipctk.make_vertex_patches_filter(np.array(patch, dtype=np.int32))
        if excl:
            filt = filt & ipctk.make_sparse_filter(excl, True)
        self.cm.can_collide = filt
        self._collisions = None

    def set_dirichlet(self, bcs):
        """DoFs constrained by these BCs get no contact rows (gradient) and no rows/cols (Hessian)."""
        mask_local = np.zeros(self.nrow_local, dtype=bool)
        for bc in bcs:
            d, nown = bc.dof_indices()
            d = np.asarray(d)[: int(nown)]
            mask_local[d[d < self.nrow_local]] = True
        own = mask_local[self._own_ldofs]
        allc = np.concatenate(self.comm.allgather(self._own_cdofs))
        allm = np.concatenate(self.comm.allgather(own))
        free = np.ones(2 * self.n, dtype=bool)
        free[allc[allm]] = False
        self.free = free

    # ------------------------------------------------------------------ state
    def surface_displacement(self, u_array) -> np.ndarray:
        """(n, 2) displacement of the collision vertices (same on all ranks)."""
        u2 = np.asarray(u_array).reshape(-1, 2)
        send = np.ascontiguousarray(u2[self.own_lblk].ravel(), dtype=float)
        if self.comm.size == 1:
            recv = send
        else:
            self.comm.Allgatherv(send, [self._recv, self._counts2, self._displs2, MPI.DOUBLE])
            recv = self._recv
        U = np.empty((self.n, 2))
        U[self._perm] = recv.reshape(-1, 2)
        return U

    def positions(self, u_array) -> np.ndarray:
        """Deformed positions of all collision-mesh vertices (bodies first, then static wall ends)."""
        U = self.surface_displacement(u_array)
        x = self.rest.copy()
        x[: self.n] += U
        return x

    def _state(self, u_array):
        """(scaled positions x / Lc, active collisions), cached for the last u."""
        x = self.positions(u_array)
        key = x[: self.n].tobytes()
        if self._cache_key != key:
            xn = np.asfortranarray(x / self.Lc)
            col = ipctk.NormalCollisions()
            col.use_area_weighting = True
            col.build(self.cm, xn, self._dhat_n)
            self._cache_key, self._xn, self._collisions = key, xn, col
        return self._xn, self._collisions

    def num_active(self, u_array) -> int:
        return len(self._state(u_array)[1])

    # ------------------------------------------------------------------ potential
    def energy(self, u_array) -> float:
        t = time.perf_counter()
        x, col = self._state(u_array)
        e = float(self.potential(col, self.cm, x)) if len(col) else 0.0
        if self.comm.size > 1:
            e = self.comm.bcast(e, root=0)
        self.stats["t_energy"] += time.perf_counter() - t
        return e

    def gradient(self, u_array) -> np.ndarray:
        """dB/du on the collision DoFs (2n, vertex-major), constrained DoFs zeroed."""
        x, col = self._state(u_array)
        if not len(col):
            return np.zeros(2 * self.n)
        g = np.asarray(self.potential.gradient(col, self.cm, x))[: 2 * self.n] / self.Lc
        g[~self.free] = 0.0
        return g

    def add_gradient(self, b, u_array):
        """b += dB/du on the rows this rank owns (b: PETSc Vec of the space V, owned layout)."""
        t = time.perf_counter()
        g = self.gradient(u_array)
        with b.localForm() as bl:
            arr = bl.array_w
            arr[self._own_ldofs] += g[self._own_cdofs]
        self.stats["t_gradient"] += time.perf_counter() - t

    def hessian(self, u_array) -> sp.csr_matrix:
        """Barrier Hessian on the collision DoFs (2n x 2n), constrained rows/cols removed; exact, or
        projected per collision onto the PSD cone when ``project_hessian`` is set."""
        x, col = self._state(u_array)
        m = 2 * self.n
        if not len(col):
            return sp.csr_matrix((m, m))
        if self.project_hessian or self.project_vv is False or not len(col.vv_collisions):
            Hs = self.potential.hessian(col, self.cm, x, project_hessian_to_psd=self.psd_method if self.project_hessian else ipctk.PSDProjectionMethod.NONE)
        else:
            # vertex-vertex collisions (a vertex closest to a kink of the other polyline) projected
            # per collision, vertex-edge exact: a vertex pressed onto a kink is a discrete unstable
            # equilibrium (tangential curvature -force/distance), the source of the saddles Newton met
            Hs = self._split_hessian(col, x)
        Hs = sp.csr_matrix(Hs)[:m, :m] / self.Lc**2
        if not self.free.all():
            D = sp.diags(self.free.astype(float))
            Hs = (D @ Hs @ D).tocsr()
        Hs.eliminate_zeros()
        return Hs

    def _split_hessian(self, col, x):
        key = self._cache_key
        if getattr(self, "_split_key", None) != key:
            vv, ev = ipctk.NormalCollisions(), ipctk.NormalCollisions()
            vv.use_area_weighting = ev.use_area_weighting = True
            vv.vv_collisions = col.vv_collisions
            ev.ev_collisions = col.ev_collisions
            self._split_key, self._split = key, (vv, ev)
        vv, ev = self._split
        H = self.potential.hessian(vv, self.cm, x, project_hessian_to_psd=self.psd_method)
        if len(ev):
            H = H + self.potential.hessian(ev, self.cm, x, project_hessian_to_psd=ipctk.PSDProjectionMethod.NONE)
        return H

    def _owned_rows(self, M: sp.csr_matrix) -> sp.csr_matrix:
        """Rows of a collision-DoF matrix owned here, as (local rows) x (global columns)."""
        Mo = M[self._own_cdofs].tocoo()
        rows = self._own_ldofs[Mo.row]
        cols = self.gdof[Mo.col]
        C = sp.csr_matrix((Mo.data, (rows, cols)), shape=(self.nrow_local, self.nglobal))
        C.sort_indices()
        return C

    def _matrix_pattern(self, A) -> sp.csr_matrix:
        """The existing pattern of A on this rank's surface rows (local rows x global cols)."""
        rows, cols = [], []
        for ld in self._own_ldofs[self.free[self._own_cdofs]]:
            c, _ = A.getRow(int(self.row_start + ld))
            rows.append(np.full(len(c), ld))
            cols.append(c)
        if not rows:
            return sp.csr_matrix((self.nrow_local, self.nglobal), dtype=bool)
        r, c = np.concatenate(rows), np.concatenate(cols)
        return _pattern(sp.csr_matrix((np.ones(len(r), bool), (r, c)), shape=(self.nrow_local, self.nglobal)))

    def _padding(self, x) -> sp.csr_matrix:
        """Pattern (zeros) of all vertex pairs closer than pad_radius (owned rows)."""
        vi, ei, _ = self._vertex_edge_pairs(x[: self.n], self.pad_radius, other_body_only=not self.self_contact)
        a = np.concatenate([vi, vi, self.E[ei, 0], self.E[ei, 1]])
        b = np.concatenate([self.E[ei, 0], self.E[ei, 1], vi, vi])
        r = np.concatenate([2 * a + i for i in (0, 1) for _ in (0, 1)])  # (2a+i, 2b+j), i, j in {0, 1}
        c = np.concatenate([2 * b + j for _ in (0, 1) for j in (0, 1)])
        m = 2 * self.n
        return sp.csr_matrix((np.zeros(len(r)), (r, c)), shape=(m, m))

    def add_hessian(self, A, u_array):
        """A += barrier Hessian (exact, or PSD-projected if ``project_hessian``) on the rows this
        rank owns (collective).

        Works before or after A.assemble() (it assembles A first if needed); the caller assembles
        A again afterwards (cheap). New couplings are merged into A's sparsity pattern in one go
        (MatAXPY with DIFFERENT_NONZERO_PATTERN, plus zero padding for pairs closer than
        pad_radius). CAUTION: PETSc replaces the matrix data in place (MatHeaderMerge) without a
        reliable change of its nonzero state, so a KSP that factorised A before may silently reuse
        a stale symbolic factorisation (MUMPS: wrong solutions). Call ksp.reset() whenever
        ``pattern_version`` changes (solver.newton.minimise does it by watching A's nonzero
        count)."""
        t0 = time.perf_counter()
        H = self.hessian(u_array)
        C = self._owned_rows(H)
        t1 = time.perf_counter()
        self.stats["t_hessian"] += t1 - t0
        self.stats["hessian_calls"] += 1
        comm = self.comm
        if not A.assembled:
            A.assemble()
        if self._known_mat != A.handle:
            self._known_mat, self._known = A.handle, self._matrix_pattern(A)
        Cb = _pattern(C)
        new = (Cb.nnz - Cb.multiply(self._known).nnz) > 0
        new = comm.allreduce(bool(new), op=MPI.LOR)
        if new:
            # union of the Hessian entries and zero padding for nearby pairs
            Ch, Pc = C.tocoo(), self._owned_rows(self._padding(self.positions(u_array))).tocoo()
            rows = np.concatenate([Ch.row, Pc.row])
            cols = np.concatenate([Ch.col, Pc.col])
            vals = np.concatenate([Ch.data, np.zeros(len(Pc.data))])
            shape = (self.nrow_local, self.nglobal)
            C = sp.csr_matrix((vals, (rows, cols)), shape=shape)
            Cb = _pattern(C)
            C.sort_indices()
            self._known = _pattern(self._known + Cb)
            self.stats["merges"] += 1
            structure = PETSc.Mat.Structure.DIFFERENT_NONZERO_PATTERN
        else:
            if comm.allreduce(C.nnz, op=MPI.SUM) == 0:
                self.stats["t_insert"] += time.perf_counter() - t1
                return
            structure = PETSc.Mat.Structure.SUBSET_NONZERO_PATTERN
        M = PETSc.Mat().createAIJ(A.getSizes(), csr=(C.indptr.astype(PETSc.IntType),
                                                    C.indices.astype(PETSc.IntType), C.data), comm=comm)
        M.assemble()
        A.axpy(1.0, M, structure=structure)
        M.destroy()
        A.setOption(PETSc.Mat.Option.NEW_NONZERO_ALLOCATION_ERR, False)
        if structure == PETSc.Mat.Structure.DIFFERENT_NONZERO_PATTERN:
            self.pattern_version += 1
        self.stats["t_insert"] += time.perf_counter() - t1

    def max_step(self, u_array, du_array) -> float:
        """Largest alpha in (0, 1] such that the straight path u -> u + alpha du is collision free
        (ipctk tight-inclusion CCD with its conservative rescaling: the returned step keeps >= 20 %
        of every initial distance)."""
        t = time.perf_counter()
        x0 = self.positions(u_array)
        x1 = x0.copy()
        x1[: self.n] += self.surface_displacement(du_array)
        a = float(ipctk.compute_collision_free_stepsize(self.cm, np.asfortranarray(x0 / self.Lc),
                                                        np.asfortranarray(x1 / self.Lc)))
        if self.comm.size > 1:
            a = self.comm.allreduce(a, op=MPI.MIN)
        self.stats["t_ccd"] += time.perf_counter() - t
        return min(1.0, a)

    def min_distance(self, u_array) -> float:
        """Smallest distance among active collisions (inf when none is closer than dhat)."""
        x, col = self._state(u_array)
        if not len(col):
            return math.inf
        return float(np.sqrt(col.compute_minimum_distance(self.cm, x))) * self.Lc

    def forces(self, u_array) -> np.ndarray:
        """Contact force on each collision vertex, (n, 2) = -dB/dx (constrained DoFs included)."""
        x, col = self._state(u_array)
        if not len(col):
            return np.zeros((self.n, 2))
        g = np.asarray(self.potential.gradient(col, self.cm, x))[: 2 * self.n] / self.Lc
        return -g.reshape(-1, 2)

    # ------------------------------------------------------------------ geometry / metrics
    def _vertex_edge_pairs(self, xb, r, other_body_only=True):
        """(vertex, edge, distance) for all body vertex / body segment pairs closer than r."""
        E = self.E
        if len(E) == 0:
            z = np.zeros(0, np.int64)
            return z, z, np.zeros(0)
        p0, p1 = xb[E[:, 0]], xb[E[:, 1]]
        mid = 0.5 * (p0 + p1)
        hl = 0.5 * np.linalg.norm(p1 - p0, axis=1)
        tv, te = cKDTree(xb), cKDTree(mid)
        pairs = tv.sparse_distance_matrix(te, r + float(hl.max()), output_type="ndarray")
        vi, ei = pairs["i"].astype(np.int64), pairs["j"].astype(np.int64)
        keep = (E[ei, 0] != vi) & (E[ei, 1] != vi)
        if other_body_only:
            keep &= self.vbody[vi] != self.edge_body[ei]
        vi, ei = vi[keep], ei[keep]
        d = _point_segment_distance(xb[vi], p0[ei], p1[ei])
        k = d <= r
        return vi[k], ei[k], d[k]

    def _wall_distances(self, xb):
        """(n, 4) distance of each vertex to each active wall line (inf: no wall / on that side)."""
        W, H = self.width, self.height
        D = np.full((self.n, 4), np.inf)
        dist = {"left": xb[:, 0], "right": W - xb[:, 0], "bottom": xb[:, 1], "top": H - xb[:, 1]}
        for k, s in enumerate(SIDES):
            if self.walls[s]:
                d = np.maximum(dist[s], 0.0)
                d[self.on_side[s]] = np.inf
                D[:, k] = d
        return D

    def gaps(self, u_array, radius: float | None = None) -> dict:
        """Per collision vertex: distance to the nearest other body or wall and which one.

        Returns dict: ``x`` (n, 2) deformed positions, ``body`` (n,) own body id, ``dist`` (n,)
        (inf when nothing within ``radius``, default 10 dhat), ``other`` (n,) body id of the
        nearest, or WALL_ID[side] (< 0) for a wall, or 0 for none; ``gdof`` (n, 2) global DoFs."""
        r = 10.0 * self.dhat if radius is None else float(radius)
        xb = self.positions(u_array)[: self.n]
        vi, ei, d = self._vertex_edge_pairs(xb, r)
        dist = np.full(self.n, np.inf)
        other = np.zeros(self.n, dtype=np.int64)
        if len(vi):
            order = np.lexsort((d, vi))
            vi_s, ei_s, d_s = vi[order], ei[order], d[order]
            firsts = np.r_[True, vi_s[1:] != vi_s[:-1]]
            dist[vi_s[firsts]] = d_s[firsts]
            other[vi_s[firsts]] = self.edge_body[ei_s[firsts]]
        Dw = self._wall_distances(xb)
        for k, s in enumerate(SIDES):
            m = (Dw[:, k] < dist) & (Dw[:, k] <= r)
            dist[m] = Dw[m, k]
            other[m] = WALL_ID[s]
        return {"x": xb, "body": self.vbody.copy(), "dist": dist, "other": other,
                "gdof": self.gdof.reshape(-1, 2).copy()}

    def contact_lengths(self, u_array, tol: float, phase_of_body: dict):
        """Deformed boundary length of each phase in contact with each phase, a wall, or anything.

        A boundary point is in contact with category B when its distance to the nearest body of
        phase B (another body than its own) or wall is <= tol. Distances are computed exactly at
        the collision vertices and interpolated linearly along each segment; the in-contact share
        of a segment is the part where the interpolant is <= tol.

        Returns (lengths, totals): lengths[(A, B)] with B a phase, "wall", "any" (another particle
        of any phase) or "any_or_wall"; totals[A] = deformed length of A's particle boundaries
        (cut faces on the box sides are not part of it)."""
        xb = self.positions(u_array)[: self.n]
        phases = list(dict.fromkeys(phase_of_body[int(b)] for b in np.unique(self.vbody)))
        cats = phases + ["wall"]
        D = np.full((self.n, len(cats)), np.inf)
        # search 4x beyond tol, so that the far end of a segment that is only partly in contact
        # has its distance too (the in-contact share is interpolated); farther still counts as 4 tol
        reach = 4.0 * float(tol)
        vi, ei, d = self._vertex_edge_pairs(xb, reach)
        if len(vi):
            pidx = {p: i for i, p in enumerate(phases)}
            ebody_phase = np.array([pidx[phase_of_body[int(b)]] for b in self.edge_body])
            np.minimum.at(D, (vi, ebody_phase[ei]), d)
        D[:, -1] = self._wall_distances(xb).min(axis=1)
        seg_len = np.linalg.norm(xb[self.E[:, 1]] - xb[self.E[:, 0]], axis=1)
        vphase = np.array([phase_of_body[int(b)] for b in self.edge_body])
        lengths, totals = {}, {}

        def frac(da, db):
            inside_a, inside_b = da <= tol, db <= tol
            f = np.where(inside_a & inside_b, 1.0, 0.0)
            one = inside_a ^ inside_b
            with np.errstate(invalid="ignore", divide="ignore"):
                fin_a = np.minimum(da, reach)
                fin_b = np.minimum(db, reach)
                t = (tol - fin_a) / (fin_b - fin_a)  # where the interpolant crosses tol
            f = np.where(one & inside_a, np.clip(t, 0, 1), f)
            f = np.where(one & inside_b, np.clip(1.0 - t, 0, 1), f)
            return f

        a, b = self.E[:, 0], self.E[:, 1]
        allD = {c: D[:, i] for i, c in enumerate(cats)}
        allD["any"] = D[:, : len(phases)].min(axis=1) if phases else np.full(self.n, np.inf)
        allD["any_or_wall"] = D.min(axis=1)
        for A in phases:
            m = vphase == A
            totals[A] = float(seg_len[m].sum())
            for B, dv in allD.items():
                lengths[(A, B)] = float((seg_len[m] * frac(dv[a[m]], dv[b[m]])).sum())
        return lengths, totals


def _pattern(M):
    """Boolean matrix with True at every stored entry of M (explicit zeros included)."""
    M = sp.csr_matrix(M)
    return sp.csr_matrix((np.ones(len(M.indices), dtype=bool), M.indices.copy(), M.indptr.copy()), shape=M.shape)


def _point_segment_distance(q, p0, p1):
    e = p1 - p0
    ee = np.einsum("ij,ij->i", e, e)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(ee > 0, np.einsum("ij,ij->i", q - p0, e) / ee, 0.0)
    t = np.clip(t, 0.0, 1.0)
    return np.linalg.norm(q - p0 - t[:, None] * e, axis=1)
