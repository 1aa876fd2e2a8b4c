"""Output folders: decided and created on rank 0, the outcome broadcast (no heavy imports)."""

from __future__ import annotations

from pathlib import Path


def make_folder(out, comm=None) -> None:
    """Create folder `out` (and its parents) on rank 0 of `comm` (None: this process alone);
    every rank raises the same OSError when it exists as a file or cannot be created."""
    out = Path(out)
    err = None
    if comm is None or comm.rank == 0:
        if out.exists() and not out.is_dir():
            err = f"output folder {out} exists and is not a folder"
        else:
            try:
                out.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                err = f"cannot create output folder {out}: {e.strerror or e}"
    if comm is not None and comm.size > 1:
        err = comm.bcast(err, root=0)
    if err:
        raise OSError(err)
