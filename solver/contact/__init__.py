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

Parts: `surface` (DOLFINx/MPI: the collision polyline of the displacement space), `geometry`
(pure NumPy: distances, gaps, contact lengths), `barrier` (ipctk: barrier and CCD on NumPy
positions), `assembly` (PETSc: merging the Hessian into the matrix), `params` (d̂, κ, tolerance and
the proximal stiffness from the config), `proximal` (the proximal-point relaxation step hook);
`BarrierContact` below puts them together for the mechanics.

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

import time

import numpy as np
import scipy.sparse as sp

from .. import dolfinx_env  # noqa: F401  (import order: dolfinx_solver before dolfinx/petsc4py)
from mpi4py import MPI

from ..tags import PORE_TAG, SIDES, WALL_TAGS  # noqa: F401  (re-exported)
from .assembly import HessianMerger
from .barrier import Barrier, SmoothBarrier
import os
from .geometry import WALL_ID, SurfaceGeometry  # noqa: F401  (re-exported)
from .params import ContactParameters  # noqa: F401  (re-exported)
from .surface import CollisionSurface

__all__ = ["BarrierContact", "ContactParameters", "barrier_pressure", "barrier_parameters", "WALL_TAGS",
           "PORE_TAG", "WALL_ID", "SIDES"]


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
                 threads: int = 1, pad_radius: float | None = None, length_scale: float | None = None,
                 platen=None):
        self.V = V
        # a platen (creep_cathode.boundary.Platen) is a rigid wall on its side that moves with the
        # mean displacement w̄(u) of the side's faces: B depends on u through w̄ too (chain rule)
        self.platen = platen
        if platen is not None:
            walls = {**walls, platen.side: True}
        self.comm = comm if comm is not None else V.mesh.comm
        self.width, self.height = float(width), float(height)
        self.self_contact = bool(self_contact)
        self.surface = s = CollisionSurface(V, facet_tags, body_of_facet_tag, self.comm)
        self.geometry = g = SurfaceGeometry(s.X, s.E, s.edge_body, self.width, self.height, walls)
        Lc = float(length_scale) if length_scale else max(self.width, self.height)
        if os.environ.get("CC_SMOOTH"):
            kw = {k: float(v) for k, v in (a.split("=") for a in os.environ["CC_SMOOTH"].split(",") if "=" in a)}
            if "r" in kw: kw["r"] = int(kw["r"])
            self.barrier = SmoothBarrier(g, dhat, kappa, Lc, self_contact=self_contact, threads=threads, **kw)
            print("SMOOTH barrier scale", self.barrier.scale, kw, flush=True)
        else:
            self.barrier = Barrier(g, dhat, kappa, Lc, self_contact=self_contact, threads=threads)
        self.dhat, self.kappa, self.Lc = self.barrier.dhat, self.barrier.kappa, Lc
        self.walls = g.walls
        self.n, self.X, self.E, self.vbody, self.edge_body = s.n, s.X, s.E, g.vbody, s.edge_body
        self.gdof, self.degree, self.own_pos = s.gdof, s.degree, s.own_pos
        seg = g.segment_lengths()
        self.segment_length = (float(seg.min()), float(seg.mean()), float(seg.max())) if len(seg) else (0, 0, 0)
        self.pad_radius = float(pad_radius) if pad_radius else max(4.0 * self.dhat, 2.0 * self.segment_length[1])
        self.initial_min_distance = self.barrier.initial_min_distance
        # exact barrier Hessian by default (quadratic convergence); per-collision PSD projection on
        # demand (creep_cathode.newton switches it on for an iteration whose direction is not a
        # descent direction). Measured on the prototype case: always-CLAMP 458 Newton iterations, exact 54.
        self.project_hessian = False
        self.set_dirichlet(bcs or [])
        self.stats = {"merges": 0, "hessian_calls": 0, "t_hessian": 0.0, "t_insert": 0.0, "t_ccd": 0.0,
                      "t_energy": 0.0, "t_gradient": 0.0}

    def set_dirichlet(self, bcs):
        """DoFs constrained by these BCs get no contact rows (gradient) and no rows/cols (Hessian)."""
        self.free = self.surface.free_mask(bcs)
        self._merger = HessianMerger(self.surface, self.free)

    @property
    def pattern_version(self) -> int:
        """Counts the changes of the matrix sparsity pattern (see `add_hessian`)."""
        return self._merger.pattern_version

    # ------------------------------------------------------------------ state
    def surface_displacement(self, u_array) -> np.ndarray:
        """(n, 2) displacement of the collision vertices (same on all ranks)."""
        return self.surface.displacement(u_array)

    def _xb(self, u_array) -> np.ndarray:
        return self.X + self.surface.displacement(u_array)

    def _shift(self, u_array):
        """{side: w̄(u)} of the platen's wall, or None (collective)."""
        if self.platen is None:
            return None
        return {self.platen.side: self.platen.mean_of(u_array)}

    def positions(self, u_array) -> np.ndarray:
        """Deformed positions of all collision-mesh vertices (bodies first, then static wall ends)."""
        return self.barrier.positions(self._xb(u_array), self._shift(u_array))

    def num_active(self, u_array) -> int:
        """Number of vertex-segment pairs closer than dhat."""
        return self.barrier.num_active(self._xb(u_array), self._shift(u_array))

    # ------------------------------------------------------------------ potential
    def energy(self, u_array) -> float:
        """The barrier energy B(u) (same on all ranks)."""
        t = time.perf_counter()
        e = self.barrier.energy(self._xb(u_array), self._shift(u_array))
        if self.comm.size > 1:
            e = self.comm.bcast(e, root=0)
        self.stats["t_energy"] += time.perf_counter() - t
        return e

    def gradient(self, u_array) -> np.ndarray:
        """dB/du on the collision DoFs (2n, vertex-major), constrained DoFs zeroed."""
        return self._gradient(u_array)[0]

    def _gradient(self, u_array):
        g, gw = self.barrier.gradient_and_walls(self._xb(u_array), self._shift(u_array))
        g[~self.free] = 0.0
        return g, gw

    def add_gradient(self, b, u_array):
        """b += dB/du on the rows this rank owns (b: PETSc Vec of the space V, owned layout); with a
        platen also dB/dw̄ ∂w̄/∂u."""
        t = time.perf_counter()
        g, gw = self._gradient(u_array)
        with b.localForm() as bl:
            arr = bl.array_w
            arr[self.surface.own_ldofs] += g[self.surface.own_cdofs]
        if self.platen is not None:
            self.platen.add_to_vector(b, gw[self.platen.side])
        self.stats["t_gradient"] += time.perf_counter() - t

    def hessian(self, u_array) -> sp.csr_matrix:
        """Barrier Hessian on the collision DoFs (2n x 2n), constrained rows/cols removed; exact, or
        projected per collision onto the PSD cone when ``project_hessian`` is set."""
        return self._hessian(u_array)[0]

    def _hessian(self, u_array):
        Hs, walls = self.barrier.hessian_and_walls(self._xb(u_array), self.project_hessian, self._shift(u_array))
        if not self.free.all():
            D = sp.diags(self.free.astype(float))
            Hs = (D @ Hs @ D).tocsr()
            walls = {k: (h * self.free, hww) for k, (h, hww) in walls.items()}
        Hs.eliminate_zeros()
        return Hs, walls

    def _platen_coupling(self, h, near):
        """The cross terms h cᵀ + c hᵀ of the platen wall (c = ∂w̄/∂u = b/L) as a matrix of owned local
        rows x global columns, for the collision DoFs where h != 0 or `near` (padding: values 0)."""
        pl, s = self.platen, self.surface
        cd = np.flatnonzero((h != 0) | near)
        hv = h[cd]
        c_cols, c_vals = pl.gcols, pl.gvals / pl.L
        rows, cols, vals = [], [], []
        lmap = np.full(2 * self.n, -1, dtype=np.int64)
        lmap[s.own_cdofs] = s.own_ldofs
        own = lmap[cd] >= 0
        if own.any():  # rows of the collision DoFs owned here: h_i c_j
            ci = cd[own]
            ld = lmap[ci]
            rows.append(np.repeat(ld, len(c_cols)))
            cols.append(np.tile(c_cols, len(ci)))
            vals.append(np.outer(hv[own], c_vals).ravel())
        if len(pl.rows) and len(cd):  # rows of the platen's DoFs owned here: c_i h_j
            rows.append(np.repeat(pl.rows, len(cd)))
            cols.append(np.tile(s.gdof[cd], len(pl.rows)))
            vals.append(np.outer(pl.b_owned[pl.rows] / pl.L, hv).ravel())
        if not rows:
            return sp.csr_matrix((s.nrow_local, s.nglobal))
        C = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                          shape=(s.nrow_local, s.nglobal))
        C.sort_indices()
        return C

    def _near_platen(self, u_array) -> np.ndarray:
        """(2n,) collision DoFs of the vertices within 4 pad radii of the platen's wall."""
        d = self.geometry.wall_distances(self._xb(u_array), self._shift(u_array))[:, list(SIDES).index(self.platen.side)]
        return np.repeat(d <= 4.0 * self.pad_radius, 2) & self.free

    def _padding(self, u_array) -> sp.csr_matrix:
        """Pattern (zeros) of all vertex pairs closer than pad_radius (collision DoFs)."""
        vi, ei, _ = self.geometry.vertex_edge_pairs(self._xb(u_array), self.pad_radius,
                                                    other_body_only=not self.self_contact)
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
        (creep_cathode.contact.assembly). CAUTION: PETSc replaces the matrix data in place
        (MatHeaderMerge) without a reliable change of its nonzero state, so a KSP that factorised A
        before may silently reuse a stale symbolic factorisation (MUMPS: wrong solutions). Call
        ksp.reset() whenever ``pattern_version`` changes (creep_cathode.newton does it by watching
        A's nonzero count)."""
        t0 = time.perf_counter()
        H, walls = self._hessian(u_array)
        t1 = time.perf_counter()
        self.stats["t_hessian"] += t1 - t0
        self.stats["hessian_calls"] += 1
        self._merger.add(A, H, lambda: self._padding(u_array))
        if self.platen is not None:
            h, hww = walls[self.platen.side]
            self._merger.add_local(A, self._platen_coupling(h, np.zeros(len(h), dtype=bool)),
                                   lambda: self._platen_coupling(np.zeros_like(h), self._near_platen(u_array) | (h != 0)))
            self.platen.add_rank_one(A, hww / self.platen.L**2)
        self.stats["merges"] = self._merger.merges
        self.stats["t_insert"] += time.perf_counter() - t1

    def max_step(self, u_array, du_array) -> float:
        """Largest alpha in (0, 1] such that the straight path u -> u + alpha du is collision free
        (ipctk tight-inclusion CCD with its conservative rescaling: the returned step keeps >= 20 %
        of every initial distance)."""
        t = time.perf_counter()
        xb0 = self._xb(u_array)
        if self.platen is None:
            a = self.barrier.max_step(xb0, xb0 + self.surface.displacement(du_array))
        else:
            side = self.platen.side
            w0, dw = self.platen.mean_of(u_array), self.platen.mean_of(du_array)
            a = self.barrier.max_step(xb0, xb0 + self.surface.displacement(du_array), {side: w0}, {side: w0 + dw})
        if self.comm.size > 1:
            a = self.comm.allreduce(a, op=MPI.MIN)
        self.stats["t_ccd"] += time.perf_counter() - t
        return min(1.0, a)

    def min_distance(self, u_array) -> float:
        """Smallest distance among active collisions (inf when none is closer than dhat)."""
        return self.barrier.min_distance(self._xb(u_array), self._shift(u_array))

    def forces(self, u_array) -> np.ndarray:
        """Contact force on each collision vertex, (n, 2) = -dB/dx (constrained DoFs included)."""
        return -self.barrier.gradient(self._xb(u_array), self._shift(u_array)).reshape(-1, 2)

    # ------------------------------------------------------------------ geometry / metrics
    def gaps(self, u_array, radius: float | None = None) -> dict:
        """Per collision vertex: distance to the nearest other body or wall and which one
        (creep_cathode.contact.geometry.SurfaceGeometry.gaps; radius default 10 dhat), plus
        ``gdof`` (n, 2) global DoFs."""
        out = self.geometry.gaps(self._xb(u_array), 10.0 * self.dhat if radius is None else float(radius),
                                 self._shift(u_array))
        out["gdof"] = self.gdof.reshape(-1, 2).copy()
        return out

    def contact_lengths(self, u_array, tol: float, phase_of_body: dict):
        """Boundary length of each phase in contact with each phase, a wall or anything, and the
        total boundary length per phase (SurfaceGeometry.contact_lengths) at displacement u."""
        return self.geometry.contact_lengths(self._xb(u_array), tol, phase_of_body, self._shift(u_array))
