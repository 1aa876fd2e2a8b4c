"""ParaView fields (XDMF/HDF5): displacement (m), von Mises (Pa), the internal variables that the
material-point laws mark for output (e.g. the equivalent creep strain `creep_eq`), phase, sigma_33.

Cell fields are quadrature-point averages per cell (DG0). Open `fields/fields.xdmf` in ParaView
and apply "Warp By Vector" with u to see the deformed RVE.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import dolfinx_env  # noqa: F401
from dolfinx import fem, io


class FieldWriter:
    """ParaView output of a mechanics (fields/fields.xdmf), one time level per write()."""

    def __init__(self, mech, folder, keep_existing: bool = False):
        """Fields of `mech` (creep_cathode.mechanics.Mechanics) into `folder`/fields.xdmf;
        `keep_existing` (a resumed run): write to fields_part2.xdmf, ... instead of overwriting."""
        self.mech = mech
        msh = mech.dom.mesh
        folder = Path(folder)
        name = "fields.xdmf"
        if msh.comm.rank == 0:
            folder.mkdir(parents=True, exist_ok=True)
            k = 1
            while keep_existing and (folder / name).exists():
                k += 1
                name = f"fields_part{k}.xdmf"
        name = msh.comm.bcast(name, root=0)
        self.V1 = fem.functionspace(msh, ("Lagrange", 1, (2,)))
        self.Q0 = fem.functionspace(msh, ("DG", 0))
        self.u1 = fem.Function(self.V1, name="u")
        self.vm = fem.Function(self.Q0, name="von_mises")
        # scalar internal variables with an output name (creep_eq, ...)
        self.internal = {v.name: fem.Function(self.Q0, name=v.field) for v in mech.points.variables.values()
                         if v.field and v.components == 1}
        self.ph = fem.Function(self.Q0, name="phase")
        self.s33 = fem.Function(self.Q0, name="sigma_33")
        self.ph.x.array[: mech.nc] = mech.cell_phase
        self.file = io.XDMFFile(msh.comm, str(folder / name), "w")
        with mech.scaling.si_geometry(msh):
            self.file.write_mesh(msh)

    def write(self, t: float):
        """Write every field at time t [s]."""
        m = self.mech
        nc, nq = m.nc, m.nqp
        self.u1.interpolate(m.u)
        self.u1.x.array[:] *= m.L0
        self.vm.x.array[:nc] = m.vm_q.reshape(nc, nq).mean(axis=1) * m.S0
        for k, f in self.internal.items():
            f.x.array[:nc] = m.points.state[k].reshape(nc, nq).mean(axis=1)
        self.s33.x.array[:nc] = m.sig_q[:, 3].reshape(nc, nq).mean(axis=1) * m.S0
        cell_fields = [self.vm, *self.internal.values(), self.s33]
        for f in cell_fields:
            f.x.scatter_forward()
        for f in (self.u1, self.vm, *self.internal.values(), self.ph, self.s33):
            self.file.write_function(f, t)

    def close(self):
        """Close the XDMF file."""
        self.file.close()


def snapshot(mech, path, comm=None):
    """Deformed triangles (SI) with cell-averaged von Mises, creep strain and phase, gathered to
    rank 0 into one small .npz for the RVE maps of `creep-cathode report` (Fig. 4b/c/f)."""
    from .output import atomic_write
    import io as _io

    msh = mech.dom.mesh
    comm = comm or msh.comm
    nc, nq = mech.nc, mech.nqp
    V1 = fem.functionspace(msh, ("Lagrange", 1, (2,)))
    u1 = fem.Function(V1)
    u1.interpolate(mech.u)
    gdm = msh.geometry.dofmaps[0][:nc]
    udm = V1.dofmap.list[:nc]
    X = msh.geometry.x[gdm][:, :, :2] + u1.x.array.reshape(-1, 2)[udm]
    data = dict(
        tri=X * mech.L0,
        vm=mech.vm_q.reshape(nc, nq).mean(axis=1) * mech.S0,
        creep=mech.points.equivalent_creep().reshape(nc, nq).mean(axis=1),
        phase=mech.cell_phase.astype(np.int16),
    )
    # the deformed box [x0, x1, y0, y1] (m): sides on rollers stay, free/pressure sides move by the
    # mean normal displacement of their DoFs (as the width/height_change metrics; collective)
    ext = mech.bc.mean_normal_displacement(mech.u.x.array, comm)
    W, H = mech.dom.width, mech.dom.height
    box = np.array([ext["left"] * mech.L0, W + ext["right"] * mech.L0, ext["bottom"] * mech.L0,
                    H + ext["top"] * mech.L0])
    parts = comm.gather(data, root=0)
    if comm.rank == 0:
        out = {k: np.concatenate([p[k] for p in parts]) for k in data}
        buf = _io.BytesIO()
        np.savez_compressed(buf, phases=np.array(mech.phases), width=W, height=H, box=box, **out)
        atomic_write(path, buf.getvalue())
