"""Adding the contact Hessian to a PETSc matrix whose sparsity pattern lacks its couplings.

Matrix entries that couple DoFs of different bodies are not in the finite-element sparsity
pattern. They are merged into the matrix with one ``MatAXPY(DIFFERENT_NONZERO_PATTERN)`` (plus
zero padding for nearby pairs, so that the pattern grows rarely) when new ones appear, which is
~500x faster than PETSc's per-row reallocation (80k DoFs, 1500 contact stencils: 0.04 s vs 18 s).
See docs/contact.md.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .. import dolfinx_env  # noqa: F401  (import order: dolfinx_solver before dolfinx/petsc4py)
from mpi4py import MPI
from petsc4py import PETSc


def bool_pattern(M):
    """Boolean matrix with True at every stored entry of M (explicit zeros included)."""
    M = sp.csr_matrix(M)
    return sp.csr_matrix((np.ones(len(M.indices), dtype=bool), M.indices.copy(), M.indptr.copy()), shape=M.shape)


class HessianMerger:
    """Adds collision-DoF matrices (2n x 2n) into the rows of a PETSc matrix this rank owns.

    Takes the CollisionSurface (ownership and global DoF numbers) and the (2n,) mask of free
    collision DoFs. `pattern_version` counts the pattern changes (a KSP that factorised the
    matrix before must then be reset: PETSc replaces the data in place without a reliable change
    of its nonzero state)."""

    def __init__(self, surface, free: np.ndarray):
        self.surface = surface
        self.free = free
        self.comm = surface.comm
        self._known = None  # sparsity pattern known to be in the matrix (owned rows x global cols)
        self._known_mat = None
        self.pattern_version = 0
        self.merges = 0

    def owned_rows(self, M: sp.csr_matrix) -> sp.csr_matrix:
        """Rows of a collision-DoF matrix owned here, as (local rows) x (global columns)."""
        s = self.surface
        Mo = M[s.own_cdofs].tocoo()
        rows = s.own_ldofs[Mo.row]
        cols = s.gdof[Mo.col]
        C = sp.csr_matrix((Mo.data, (rows, cols)), shape=(s.nrow_local, s.nglobal))
        C.sort_indices()
        return C

    def _matrix_pattern(self, A) -> sp.csr_matrix:
        """The existing pattern of A on this rank's surface rows (local rows x global cols)."""
        s = self.surface
        rows, cols = [], []
        for ld in s.own_ldofs[self.free[s.own_cdofs]]:
            c, _ = A.getRow(int(s.row_start + ld))
            rows.append(np.full(len(c), ld))
            cols.append(c)
        if not rows:
            return sp.csr_matrix((s.nrow_local, s.nglobal), dtype=bool)
        r, c = np.concatenate(rows), np.concatenate(cols)
        return bool_pattern(sp.csr_matrix((np.ones(len(r), bool), (r, c)), shape=(s.nrow_local, s.nglobal)))

    def add(self, A, H: sp.csr_matrix, padding) -> None:
        """A += H on the owned rows (collective). `padding()` returns a collision-DoF matrix of
        zeros at the pairs that should enter the pattern too, called only when it grows."""
        self.add_local(A, self.owned_rows(H), lambda: self.owned_rows(padding()))

    def add_local(self, A, C: sp.csr_matrix, padding) -> None:
        """A += C, C in (owned local rows) x (global columns); `padding()` likewise (collective)."""
        comm = self.comm
        if not A.assembled:
            A.assemble()
        if self._known_mat != A.handle:
            self._known_mat, self._known = A.handle, self._matrix_pattern(A)
        Cb = bool_pattern(C)
        new = (Cb.nnz - Cb.multiply(self._known).nnz) > 0
        new = comm.allreduce(bool(new), op=MPI.LOR)
        if new:
            # union of the Hessian entries and zero padding for nearby pairs
            Ch, Pc = C.tocoo(), padding().tocoo()
            rows = np.concatenate([Ch.row, Pc.row])
            cols = np.concatenate([Ch.col, Pc.col])
            vals = np.concatenate([Ch.data, np.zeros(len(Pc.data))])
            s = self.surface
            C = sp.csr_matrix((vals, (rows, cols)), shape=(s.nrow_local, s.nglobal))
            Cb = bool_pattern(C)
            C.sort_indices()
            self._known = bool_pattern(self._known + Cb)
            self.merges += 1
            structure = PETSc.Mat.Structure.DIFFERENT_NONZERO_PATTERN
        else:
            if comm.allreduce(C.nnz, op=MPI.SUM) == 0:
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
