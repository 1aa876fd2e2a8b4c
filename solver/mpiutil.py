"""MPI helpers shared by the modules that decide on rank 0 (no DOLFINx)."""

from __future__ import annotations


def on_root(comm, fn, *errors):
    """fn() on rank 0, its result broadcast to every rank. An exception of one of the `errors`
    types raised on rank 0 is raised on every rank (same type, same one-line message), so all
    ranks fail together."""
    res, err = None, None
    if comm.rank == 0:
        try:
            res = fn()
        except errors as e:
            err = (type(e), str(e))
    res, err = comm.bcast((res, err), root=0)
    if err:
        raise err[0](err[1])
    return res
