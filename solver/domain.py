"""The computational domain of a run: circles (pure geometry) -> DOLFINx mesh with body and wall tags.

Tag conventions (creep_cathode.tags, shared with meshes/rve.py): cell tag i+1 = body i (a
particle, or the block); facet tag i+1 = boundary of body i away from the box; WALL_TAGS = facets
on the box sides. Pores are never meshed for a run: they carry no load and contact is a barrier
between bodies. `build(..., scaling=)` returns the mesh in model units (creep_cathode.units).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import dolfinx_env  # noqa: F401  (import order: dolfinx_solver before dolfinx)
from dolfinx import mesh as dmesh
from mpi4py import MPI

from .tags import WALL_TAGS


@dataclass
class Domain:
    """A meshed RVE: DOLFINx mesh, cell and facet tags, bodies [(tag, phase)], box size [m], circles, info, scaling."""

    mesh: object
    cell_tags: object
    facet_tags: object
    bodies: list  # [(tag, phase)]
    width: float  # m
    height: float  # m
    circles: list = field(default_factory=list)
    info: dict = field(default_factory=dict)
    scaling: object = None  # the Scaling of the mesh coordinates (None: SI)

    @property
    def phases(self) -> list[str]:
        return list(dict.fromkeys(p for _, p in self.bodies))


def circles_from_config(rve, comm=MPI.COMM_WORLD):
    """The particle list of a `random` or `particles` RVE (packed on rank 0, broadcast)."""
    from .meshes.packing import Circle, PackingError, pack_random, validate_particles

    err, circles = None, None
    if comm.rank == 0:
        try:
            if rve.kind == "random":
                circles = pack_random(rve.width, rve.height, dict(rve.fractions),
                                      {p: (s.mean_diameter, s.cv) for p, s in rve.size.items()},
                                      rve.min_gap, rve.seed, max_iterations=rve.packing_iterations)
            else:
                circles = [Circle(p.phase, float(p.center[0]), float(p.center[1]), float(p.radius))
                           for p in rve.particles]
                validate_particles(circles, rve.width, rve.height, rve.min_gap)
        except PackingError as e:
            err = (str(e), e.key)
    err, circles = comm.bcast((err, circles), root=0)
    if err:
        raise PackingError(*err)
    return circles


def block_domain(rve, comm=MPI.COMM_WORLD) -> Domain:
    """A `block` RVE: the box meshed as one body (crossed triangles of size rve.mesh_size), SI units."""
    W, H, h = rve.width, rve.height, rve.mesh_size
    nx, ny = max(1, int(round(W / h))), max(1, int(round(H / h)))
    msh = dmesh.create_rectangle(comm, [np.zeros(2), np.array([W, H])], [nx, ny], dmesh.CellType.triangle,
                                 diagonal=dmesh.DiagonalType.crossed)
    tdim = msh.topology.dim
    ncell = msh.topology.index_map(tdim).size_local + msh.topology.index_map(tdim).num_ghosts
    cells = np.arange(ncell, dtype=np.int32)
    ct = dmesh.meshtags(msh, tdim, cells, np.ones(ncell, dtype=np.int32))
    msh.topology.create_connectivity(tdim - 1, tdim)
    tol = 1e-9 * max(W, H)
    sides = {"left": lambda x: np.isclose(x[0], 0.0, atol=tol), "right": lambda x: np.isclose(x[0], W, atol=tol),
             "bottom": lambda x: np.isclose(x[1], 0.0, atol=tol), "top": lambda x: np.isclose(x[1], H, atol=tol)}
    fs, vs = [], []
    for s, f in sides.items():
        fac = dmesh.locate_entities_boundary(msh, tdim - 1, f)
        fs.append(fac)
        vs.append(np.full(len(fac), WALL_TAGS[s], dtype=np.int32))
    fac = np.concatenate(fs)
    val = np.concatenate(vs)
    fac, idx = np.unique(fac, return_index=True)  # corner facets cannot belong to two sides
    ft = dmesh.meshtags(msh, tdim - 1, fac, val[idx])
    return Domain(msh, ct, ft, [(1, rve.phase)], W, H, info={"kind": "block"})


def build(rve, comm=MPI.COMM_WORLD, scaling=None) -> Domain:
    """The Domain of the config's [rve] (packed on rank 0, meshed by Gmsh, distributed), in model
    units when a Scaling is given (else SI)."""
    if rve.kind == "block":
        dom = block_domain(rve, comm)
    else:
        from .meshes import rve as rvemesh

        circles = circles_from_config(rve, comm)
        r = rvemesh.generate(circles, rve.width, rve.height, rve.mesh_size, rve.min_gap, include_pores=False,
                             comm=comm)
        dom = Domain(r.mesh, r.cell_tags, r.facet_tags, list(r.bodies), rve.width, rve.height, circles,
                     info=dict(r.info))
    if scaling is not None:
        scaling.to_model_mesh(dom.mesh)
        dom.scaling = scaling
    return dom
