"""Chord steps of the Newton minimiser (solver.chord_steps, creep_cathode.newton): the same
minimiser as with a fresh tangent at every iteration, with fewer tangent assemblies; and a re-solve
whose Hessian has not changed (the proximal re-solve of a step) converges with the factorisation at
hand, without assembling a tangent at all."""

import numpy as np
import pytest

import creep_cathode as cc
from creep_cathode import dolfinx_env  # noqa: F401  (dolfinx_solver before dolfinx)
from creep_cathode.newton import NewtonSolver
from dolfinx import fem, mesh  # noqa: E402
from mpi4py import MPI  # noqa: E402
from petsc4py import PETSc  # noqa: E402

N = 12


class Quartic:
    """Π(u) = ½ uᵀKu + ¼ c Σ u_i⁴ − fᵀu on N unknowns (K: the 1D Laplacian + I, SPD), serial. Counts
    its tangent assemblies."""

    def __init__(self, c, f):
        self.c, self.f = c, np.asarray(f, float)
        K = np.diag(np.full(N, 3.0)) - np.diag(np.ones(N - 1), 1) - np.diag(np.ones(N - 1), -1)
        self.K = K
        self.hessians = 0
        self.A = PETSc.Mat().createAIJ([N, N], nnz=3, comm=MPI.COMM_SELF)
        self.b = PETSc.Vec().createSeq(N)

    def energy(self, u):
        return float(0.5 * u @ self.K @ u + 0.25 * self.c * np.sum(u**4) - self.f @ u)

    def assemble_gradient(self, u):
        self.b.array[:] = self.K @ u + self.c * u**3 - self.f
        return self.b

    def assemble_hessian(self, u):
        self.hessians += 1
        H = self.K + np.diag(3 * self.c * u**2)
        for i in range(N):
            for j in range(max(0, i - 1), min(N, i + 2)):
                self.A.setValue(i, j, H[i, j])
        self.A.assemble()
        return self.A

    def assemble(self, u):
        return self.assemble_gradient(u), self.assemble_hessian(u)

    def max_step(self, u, du):
        return 1.0

    def set_hessian_projection(self, level):
        pass


def _function():
    msh = mesh.create_unit_interval(MPI.COMM_SELF, N - 1)
    return fem.Function(fem.functionspace(msh, ("Lagrange", 1)))


def _solve(system, chord_steps, u=None):
    u = u if u is not None else _function()
    newton = NewtonSolver(MPI.COMM_SELF, atol=1e-12, rtol=1e-14, dx_tol=1e-14, max_it=40, chord_steps=chord_steps)
    return newton, newton.minimise(system, u), u


def test_chord_steps_reach_the_same_minimiser_with_fewer_tangents():
    f = np.linspace(1.0, 3.0, N)
    fresh, chord = Quartic(0.5, f), Quartic(0.5, f)
    _, r0, u0 = _solve(fresh, 0)
    _, r3, u3 = _solve(chord, 3)
    assert r0.converged and r3.converged
    assert r0.chord_steps == 0 and r3.chord_steps >= 1
    # the minimiser: the gradient vanishes, whichever way Newton got there
    for s, u in ((fresh, u0), (chord, u3)):
        assert np.linalg.norm(s.assemble_gradient(u.x.array).array) <= 1e-12
    assert np.allclose(u3.x.array, u0.x.array, rtol=0, atol=1e-12)
    assert chord.hessians < fresh.hessians


def test_a_resolve_with_the_same_hessian_needs_no_tangent():
    """A quadratic energy (c = 0) solved once, then again with another load: the Hessian is the one
    factorised, so with reuse_factorisation the re-solve is one exact chord step, no assembly of A."""
    system = Quartic(0.0, np.ones(N))
    newton, r, u = _solve(system, 3)
    assert r.converged and system.hessians == 1
    system.f = np.linspace(-1.0, 2.0, N)
    r2 = newton.minimise(system, u, reuse_factorisation=True)
    assert r2.converged and r2.chord_steps == 1 and r2.iterations == 1
    assert system.hessians == 1
    assert np.allclose(system.K @ u.x.array, system.f, rtol=0, atol=1e-11)
    # without chord steps the same re-solve assembles and factorises its tangent
    newton.chord_steps = 0
    system.f = np.ones(N)
    r3 = newton.minimise(system, u, reuse_factorisation=True)
    assert r3.converged and r3.chord_steps == 0 and system.hessians == 2


def test_chord_steps_is_a_solver_setting_outside_the_physics_hash(tmp_path):
    from pathlib import Path

    cfgfile = Path(__file__).resolve().parent.parent / "configs" / "baseline.toml"
    a = cc.load_config(str(cfgfile), [])
    b = cc.load_config(str(cfgfile), ["solver.chord_steps=0"])
    assert a.solver.chord_steps == 3 and b.solver.chord_steps == 0
    from creep_cathode.config import physics_hash

    assert physics_hash(a) == physics_hash(b)
    with pytest.raises(cc.ConfigError, match="solver.chord_steps"):
        cc.load_config(str(cfgfile), ["solver.chord_steps=-1"])
