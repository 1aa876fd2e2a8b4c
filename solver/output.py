"""Run-folder files: atomic CSV/JSON/TOML writes and provenance (rank 0 only; no DOLFINx import).

Every file is written to a temporary name in the same folder and renamed over the target
(os.replace is atomic on POSIX), so a killed run never leaves half a row or half a JSON.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["atomic_write", "write_json", "CSVTable", "provenance"]

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: str | Path, data: str | bytes) -> None:
    """Write `data` (text or bytes) to `path` through a temporary file renamed over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the usual permissions
        with os.fdopen(fd, mode) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _clean(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):  # numpy scalars
        return _clean(x.item())
    return x


def write_json(path: str | Path, obj) -> None:
    """Write `obj` as indented JSON, atomically (non-finite floats become null)."""
    atomic_write(path, json.dumps(_clean(obj), indent=2, sort_keys=False) + "\n")


class CSVTable:
    """Rows in memory, the whole file rewritten atomically on `flush()` (a few MB at most; each row
    is formatted once, so a flush costs a write, not a reformat of the whole run: rows must not be
    changed after they were appended, and `rows` may be replaced as a whole).

    Columns are fixed by the first row (later rows may not add keys)."""

    def __init__(self, path: str | Path, rows: list[dict] | None = None):
        self.path = Path(path)
        self.rows: list[dict] = list(rows or [])
        self._last = 0.0
        self._lines: list[tuple[dict, str]] = []  # (row, its formatted line), in the order of rows

    def append(self, row: dict, flush_every_s: float = 2.0) -> None:
        self.rows.append(row)
        if time.monotonic() - self._last >= flush_every_s:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        cols = list(self.rows[0].keys())
        lines = self._lines
        if lines and (len(lines) > len(self.rows) or lines[0][0] is not self.rows[0]
                      or lines[-1][0] is not self.rows[len(lines) - 1]):
            lines.clear()  # rows replaced (e.g. on resume): format them all again
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        head = buf.getvalue()
        for r in self.rows[len(lines):]:
            buf.seek(0)
            buf.truncate()
            w.writerow({k: (f"{v:.10g}" if isinstance(v, float) else v) for k, v in r.items()})
            lines.append((r, buf.getvalue()))
        atomic_write(self.path, head + "".join(line for _, line in lines))
        self._last = time.monotonic()

    @staticmethod
    def read(path: str | Path) -> list[dict]:
        path = Path(path)
        if not path.exists():
            return []
        with open(path, newline="") as f:
            out = []
            for r in csv.DictReader(f):
                out.append({k: _num(v) for k, v in r.items()})
            return out


def _num(v: str):
    try:
        i = int(v)
        return i
    except ValueError:
        pass
    try:
        return float(v)
    except ValueError:
        return v


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
        if out.returncode == 0:
            dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return None


def provenance(ranks: int = 1) -> dict:
    """Where a result came from: git commit, Python, platform, host, ranks, command line, start time, package versions."""
    from importlib import metadata

    versions = {}
    for pkg in ("creep-cathode", "fenics-dolfinx", "dolfinx-solver-real", "fenics-basix", "fenics-ufl",
                "fenics-ffcx", "petsc4py", "gmsh", "numpy", "mpi4py", "ipctk", "pydantic"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return {
        "git_commit": _git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": platform.node(),
        "ranks": ranks,
        "argv": sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": versions,
    }
