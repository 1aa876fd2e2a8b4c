"""Shared by the serial-vs-MPI tests: run the same CLI command on 1 and 2 ranks."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXE = str(ROOT / ".venv" / "bin" / "creep-cathode")
MPIEXEC = str(ROOT / ".venv" / "bin" / "mpiexec")


def run_serial_and_mpi(args: list[str], tmp_path: Path) -> tuple[Path, Path]:
    """`creep-cathode ARGS -o tmp/s1` serially and `-o tmp/s2` on 2 ranks; both must succeed."""
    r1 = subprocess.run([EXE] + args + ["-o", str(tmp_path / "s1")], capture_output=True, text=True)
    assert r1.returncode == 0, r1.stderr
    r2 = subprocess.run([MPIEXEC, "-n", "2", EXE] + args + ["-o", str(tmp_path / "s2")], capture_output=True,
                        text=True)
    assert r2.returncode == 0, r2.stderr
    return tmp_path / "s1", tmp_path / "s2"
