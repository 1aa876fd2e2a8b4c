"""Checkpoint / restart of a run (one atomic file `checkpoint.npz` in the run folder).

The state is stored independent of the MPI partition, so a run may resume on another number of
ranks: nodal values are keyed by their (quantised) coordinates, quadrature-point values by the
original (input) cell index of their cell. Stored: u, u_n and the nodal arrays of the stepper's
state (the predictor's last increment), every internal variable that the material-point laws
declare (by name), and a JSON meta record (time, counters, step size, protocol position, the
physics hash of the config: resume is refused when the physics changed).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from mpi4py import MPI

from .config import ConfigError
from .mpiutil import on_root
from .output import atomic_write

NAME = "checkpoint.npz"
_Q = 1e-7  # coordinate quantum (internal length units ~ 1e-6 m -> 1e-13 m)
_ARRAYS = ("node_keys", "node_data", "cell_keys", "cell_data", "meta")


class CheckpointError(ConfigError):
    """A checkpoint that cannot be used (unreadable, corrupt, another mesh or run): bad input, exit 2."""


def _keys(xy: np.ndarray) -> np.ndarray:
    ix = np.round(xy[:, 0] / _Q).astype(np.int64)
    iy = np.round(xy[:, 1] / _Q).astype(np.int64)
    return ix * np.int64(2**31) + iy


def _node_data(mech, arrays: dict):
    """(keys, data, names): the owned nodes' keys and [u, u_n, *arrays] values (2 columns each)."""
    V = mech.V
    nloc = V.dofmap.index_map.size_local
    xy = V.tabulate_dof_coordinates()[:nloc, :2]
    names = ["u", "u_n", *arrays]
    vals = [mech.u.x.array, mech.u_n.x.array, *arrays.values()]
    return _keys(xy), np.hstack([np.asarray(v).reshape(-1, 2)[:nloc] for v in vals]), names


def _cell_data(mech):
    """(keys, data, layout): owned cells' original indices and their internal variables, one row
    per cell (all quadrature points); layout = [(name, components)]."""
    orig = np.asarray(mech.dom.mesh.topology.original_cell_index[: mech.nc], dtype=np.int64)
    q, state = mech.nqp, mech.points.state
    layout = [(k, 1 if v.ndim == 1 else v.shape[1]) for k, v in state.items()]
    data = np.hstack([state[k].reshape(mech.nc, q * c) for k, c in layout])
    return orig, data, layout


def _gather_sorted(comm, keys, data):
    allk = comm.gather(keys, root=0)
    alld = comm.gather(data, root=0)
    if comm.rank != 0:
        return None, None
    k = np.concatenate(allk)
    d = np.vstack(alld)
    o = np.argsort(k, kind="stable")
    return k[o], d[o]


def save(folder, mech, meta: dict, comm=MPI.COMM_WORLD, arrays: dict | None = None) -> None:
    """Write the state of `mech` (creep_cathode.mechanics.Mechanics), the JSON-able `meta` and the
    nodal `arrays` ({name: local array of the displacement space}) to folder/checkpoint.npz."""
    nk, nd, names = _node_data(mech, arrays or {})
    ok, od, layout = _cell_data(mech)
    nk, nd = _gather_sorted(comm, nk, nd)
    ck, cd = _gather_sorted(comm, ok, od)
    if comm.rank == 0:
        meta = dict(meta, node_fields=names, cell_fields=layout)
        buf = io.BytesIO()
        np.savez(buf, node_keys=nk, node_data=nd, cell_keys=ck, cell_data=cd,
                 meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
        atomic_write(Path(folder) / NAME, buf.getvalue())
    comm.barrier()


def _read(p: Path) -> dict:
    """Every array of a checkpoint file, checked (CRC, no pickled objects, all parts present, a
    JSON meta record); CheckpointError (one line) otherwise."""
    try:
        if not p.is_file():
            raise ValueError("not a regular file")
        with np.load(p, allow_pickle=False) as f:
            z = {k: f[k] for k in f.files}
        missing = [k for k in _ARRAYS if k not in z]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        meta = json.loads(bytes(z["meta"]).decode())
        if not isinstance(meta, dict) or "stepper" not in meta:
            raise ValueError("no stepper state (written by an older version?)")
        if len(z["node_keys"]) != len(z["node_data"]) or len(z["cell_keys"]) != len(z["cell_data"]):
            raise ValueError("inconsistent array lengths")
    except Exception as e:  # noqa: BLE001 - any way a file can be broken
        msg = " ".join(str(e).split())[:200]
        raise CheckpointError(f"checkpoint {p} unreadable ({e.__class__.__name__}: {msg})") from None
    z["meta"] = meta
    return z


def validate(folder) -> dict | None:
    """The meta record of folder/checkpoint.npz after reading and checking the whole file (this
    process alone; None when there is none). Raises CheckpointError when it cannot be used."""
    p = Path(folder) / NAME
    if not p.exists():
        return None
    return _read(p)["meta"]


def load_meta(folder, comm=MPI.COMM_WORLD) -> dict | None:
    """validate() on rank 0, broadcast (all ranks raise together)."""
    return on_root(comm, lambda: validate(folder), CheckpointError)


def restore(folder, mech, comm=MPI.COMM_WORLD) -> tuple[dict, dict]:
    """Load the state into `mech`; returns (meta, arrays): the meta dict and the stored nodal
    arrays other than u and u_n ({name: local array, ghosts not updated})."""
    z = on_root(comm, lambda: _read(Path(folder) / NAME), CheckpointError)
    meta = z["meta"]
    keys, _, _ = _node_data(mech, {})
    idx = np.searchsorted(z["node_keys"], keys)
    idx = np.clip(idx, 0, len(z["node_keys"]) - 1)
    if not np.array_equal(z["node_keys"][idx], keys):
        raise CheckpointError("checkpoint does not match this mesh (nodes differ)")
    vals = z["node_data"][idx]
    nloc = mech.V.dofmap.index_map.size_local
    arrays = {}
    for i, name in enumerate(meta["node_fields"]):
        if name in ("u", "u_n"):
            f = mech.u if name == "u" else mech.u_n
            f.x.array.reshape(-1, 2)[:nloc] = vals[:, 2 * i:2 * i + 2]
            f.x.scatter_forward()
        else:
            a = np.zeros_like(mech.u.x.array)
            a.reshape(-1, 2)[:nloc] = vals[:, 2 * i:2 * i + 2]
            arrays[name] = a
    ck, _, layout = _cell_data(mech)
    stored = [tuple(x) for x in meta["cell_fields"]]
    history = {v.name for v in mech.points.variables.values() if getattr(v, "history", False)}
    if stored != layout and stored != [x for x in layout if x[0] not in history]:
        raise CheckpointError(f"checkpoint holds other internal variables ({meta['cell_fields']}) than this "
                              f"run's laws ({layout})")
    layout = stored  # without the history variables of a checkpoint older than them: they keep their initial values
    idx = np.clip(np.searchsorted(z["cell_keys"], ck), 0, len(z["cell_keys"]) - 1)
    if not np.array_equal(z["cell_keys"][idx], ck):
        raise CheckpointError("checkpoint does not match this mesh (cells differ)")
    cd = z["cell_data"][idx]
    q, col = mech.nqp, 0
    for k, c in layout:
        block = cd[:, col:col + q * c]
        mech.points.state[k][:] = block.reshape(mech.points.state[k].shape)
        col += q * c
    return meta, arrays
