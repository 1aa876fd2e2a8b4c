"""Output folders: created on rank 0, with the decision broadcast so that all ranks fail together.

`prepare_folder` makes a folder (any command's `-o`); `prepare_outdir` also starts a run folder:
the resolved `config.toml` and a `summary.json` that says "running".
"""

from __future__ import annotations

from pathlib import Path

from mpi4py import MPI

from . import config as cfgmod
from .output import atomic_write, write_json


def prepare_folder(path, comm=MPI.COMM_WORLD, write=None) -> None:
    """Create folder `path` on rank 0 (and call write(path) there, if given); raise OSError with
    one line on every rank when it is not usable."""
    err = None
    if comm.rank == 0:
        p = Path(path)
        try:
            if p.exists() and not p.is_dir():
                err = f"output folder {path} exists and is not a folder"
            else:
                p.mkdir(parents=True, exist_ok=True)
                if write is not None:
                    write(p)
        except OSError as e:
            err = f"cannot write output folder {path}: {e.strerror or e}"
    err = comm.bcast(err, root=0)
    if err:
        raise OSError(err)


def prepare_outdir(outdir, cfg, comm=MPI.COMM_WORLD, resume=False) -> None:
    """Make the run folder and write config.toml and summary.json (status "running")."""

    def start(p: Path):
        atomic_write(p / "config.toml", cfgmod.to_toml(cfg))
        write_json(p / "summary.json", {"status": "running", "config_hash": cfgmod.physics_hash(cfg)})

    prepare_folder(outdir, comm, start)
