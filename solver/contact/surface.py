"""The collision surface of a DOLFINx displacement space (DOLFINx + MPI).

Every facet tagged with a particle tag (1 .. PORE_TAG-1) gives one straight segment (P1) or two
(P2: vertex - edge-midpoint DoF - vertex), so the collision vertices are exactly the surface
displacement DoFs. The 2D surface is small: it is gathered to every rank once (rest
coordinates, global DoF numbers, ownership), and `displacement(u)` gathers the surface
displacements at every call.
"""

from __future__ import annotations

import numpy as np

from .. import dolfinx_env  # noqa: F401  (import order: dolfinx_solver before dolfinx/petsc4py)
from mpi4py import MPI

from ..tags import PORE_TAG


class CollisionSurface:
    """Surface of V (Lagrange 1 or 2, block size 2) on the facets with particle tags.

    Takes V, the facet MeshTags, an optional map facet tag -> body id (dict or callable; default
    the tag) and the communicator. Holds: n vertices with rest positions X (n, 2), segments E,
    edge_body, the global block (gblocks) and DoF (gdof, 2n) of every vertex, and what this rank
    owns (rows it adds contact terms to)."""

    def __init__(self, V, facet_tags, body_of_facet_tag=None, comm=None):
        self.V = V
        self.comm = comm = comm if comm is not None else V.mesh.comm
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
        #: owned collision DoFs (into 0..2n) and their local DoF numbers in V
        self.own_cdofs = np.stack([2 * self.own_pos, 2 * self.own_pos + 1], axis=1).ravel()
        self.own_ldofs = np.stack([2 * self.own_lblk, 2 * self.own_lblk + 1], axis=1).ravel()

    def displacement(self, u_array) -> np.ndarray:
        """(n, 2) displacement of the collision vertices from V's local array (same on all ranks)."""
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

    def free_mask(self, bcs) -> np.ndarray:
        """(2n,) False on the collision DoFs that these Dirichlet BCs constrain (collective)."""
        mask_local = np.zeros(self.nrow_local, dtype=bool)
        for bc in bcs:
            d, nown = bc.dof_indices()
            d = np.asarray(d)[: int(nown)]
            mask_local[d[d < self.nrow_local]] = True
        own = mask_local[self.own_ldofs]
        allc = np.concatenate(self.comm.allgather(self.own_cdofs))
        allm = np.concatenate(self.comm.allgather(own))
        free = np.ones(2 * self.n, dtype=bool)
        free[allc[allm]] = False
        return free
