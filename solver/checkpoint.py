"""Checkpoint / restart of a run (one atomic file `checkpoint.npz` in the run folder).

The state is stored independent of the MPI partition, so a run may resume on another number of
ranks: nodal values are keyed by their (quantised) coordinates, quadrature-point values by the
original (input) cell index of their cell. Stored: u, u_n, Cp^-1, equivalent creep strain, time,
step size, protocol position, counters and the physics hash of the config (resume is refused
when the physics changed).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from mpi4py import MPI

from .output import atomic_write

NAME = "checkpoint.npz"
_Q = 1e-7  # coordinate quantum (internal length units ~ 1e-6 m -> 1e-13 m)


class CheckpointError(RuntimeError):
    pass


def _keys(xy: np.ndarray) -> np.ndarray:
    ix = np.round(xy[:, 0] / _Q).astype(np.int64)
    iy = np.round(xy[:, 1] / _Q).astype(np.int64)
    return ix * np.int64(2**31) + iy


def _node_data(mech, du_prev=None):
    V = mech.V
    nloc = V.dofmap.index_map.size_local
    xy = V.tabulate_dof_coordinates()[:nloc, :2]
    u = mech.u.x.array.reshape(-1, 2)[:nloc]
    un = mech.u_n.x.array.reshape(-1, 2)[:nloc]
    dp = np.zeros_like(u) if du_prev is None else du_prev.reshape(-1, 2)[:nloc]
    return _keys(xy), np.hstack([u, un, dp])


def _cell_data(mech):
    orig = np.asarray(mech.dom.mesh.topology.original_cell_index[: mech.nc], dtype=np.int64)
    q = mech.nqp
    data = np.hstack([mech.Cp_inv.reshape(mech.nc, q * 4), mech.eps_cr.reshape(mech.nc, q)])
    return orig, data


def _gather_sorted(comm, keys, data):
    allk = comm.gather(keys, root=0)
    alld = comm.gather(data, root=0)
    if comm.rank != 0:
        return None, None
    k = np.concatenate(allk)
    d = np.vstack(alld)
    o = np.argsort(k, kind="stable")
    return k[o], d[o]


def save(folder, mech, meta: dict, comm=MPI.COMM_WORLD, du_prev=None) -> None:
    """`du_prev`: the last step's increment (the predictor of the next step), or None."""
    nk, nd = _gather_sorted(comm, *_node_data(mech, du_prev))
    ck, cd = _gather_sorted(comm, *_cell_data(mech))
    if comm.rank == 0:
        buf = io.BytesIO()
        np.savez(buf, node_keys=nk, node_data=nd, cell_keys=ck, cell_data=cd,
                 meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
        atomic_write(Path(folder) / NAME, buf.getvalue())
    comm.barrier()


def load_meta(folder, comm=MPI.COMM_WORLD) -> dict | None:
    meta, err = None, None
    if comm.rank == 0:
        p = Path(folder) / NAME
        if p.exists():
            try:
                with np.load(p) as z:
                    meta = json.loads(bytes(z["meta"]).decode())
            except Exception as e:  # corrupt file
                err = f"checkpoint {p} unreadable: {e}"
    meta, err = comm.bcast((meta, err), root=0)
    if err:
        raise CheckpointError(err)
    return meta


def restore(folder, mech, comm=MPI.COMM_WORLD) -> dict:
    """Load the state into `mech`; returns the meta dict."""
    p = Path(folder) / NAME
    z = None
    if comm.rank == 0:
        with np.load(p) as f:
            z = {k: f[k] for k in f.files}
    z = comm.bcast(z, root=0)
    meta = json.loads(bytes(z["meta"]).decode())
    keys, data = _node_data(mech)
    idx = np.searchsorted(z["node_keys"], keys)
    idx = np.clip(idx, 0, len(z["node_keys"]) - 1)
    if not np.array_equal(z["node_keys"][idx], keys):
        raise CheckpointError("checkpoint does not match this mesh (nodes differ)")
    vals = z["node_data"][idx]
    nloc = mech.V.dofmap.index_map.size_local
    mech.u.x.array.reshape(-1, 2)[:nloc] = vals[:, :2]
    mech.u_n.x.array.reshape(-1, 2)[:nloc] = vals[:, 2:4]
    mech.u.x.scatter_forward()
    mech.u_n.x.scatter_forward()
    du = np.zeros_like(mech.u.x.array)
    du.reshape(-1, 2)[:nloc] = vals[:, 4:6]
    meta["du_prev"] = du  # ghosts are refreshed by the caller's scatter of u_prev = u_n - du
    ck, _ = _cell_data(mech)
    idx = np.clip(np.searchsorted(z["cell_keys"], ck), 0, len(z["cell_keys"]) - 1)
    if not np.array_equal(z["cell_keys"][idx], ck):
        raise CheckpointError("checkpoint does not match this mesh (cells differ)")
    cd = z["cell_data"][idx]
    q = mech.nqp
    mech.Cp_inv[:] = cd[:, : 4 * q].reshape(-1, 4)
    mech.eps_cr[:] = cd[:, 4 * q:].reshape(-1)
    return meta
