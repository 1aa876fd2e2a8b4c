"""RVE-size study (issue 14): the 95 % half-widths of ensembles over box sizes, against the criterion.

Run one ensemble per box size with the same protocol, then tabulate them:

    .venv/bin/creep-cathode ensemble configs/se_mse.toml --seeds 5 --jobs 2 -o runs/size/24um \
        --set rve.width=24e-6 --set rve.height=24e-6 [--set ...]
    .venv/bin/python scripts/rve_size.py runs/size/16um runs/size/24um [--cycle 1] [-o runs/size/rve_size.md] \
        [--columns contact_Se_Se,contact_MSe_Se,vm_mean_Se_Pa,vm_mean_MSe_Pa]

Each folder is an ensemble folder (ensemble.csv, and run folders whose config.toml gives the box
width). The table (creep_cathode.ensemble.size_md) gives, per size, mean ± half-width of the contact
ratios and mean stresses at full lithiation of one cycle (default: the last that every ensemble
reached) and the smallest box that meets every criterion.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

from creep_cathode.ensemble import size_md, size_rows
from creep_cathode.output import CSVTable


def box_size(folder: Path) -> float:
    """The box width [m] of an ensemble folder's runs (all of them must agree)."""
    sizes = {tomllib.loads(p.read_text())["rve"]["width"] for p in folder.glob("*/config.toml")}
    if len(sizes) != 1:
        raise SystemExit(f"{folder}: expected one box width among its runs, found {sorted(sizes)}")
    return float(sizes.pop())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path, help="ensemble folders, one per box size")
    ap.add_argument("--cycle", type=int, default=None, help="cycle (fully lithiated); default the last common one")
    ap.add_argument("--columns", default=None,
                    help="comma-separated metric columns to judge (default: every contact ratio and mean stress)")
    ap.add_argument("-o", "--out", type=Path, default=None, help="also write the table to this file")
    a = ap.parse_args(argv)
    ens = {}
    for f in a.folders:
        rows = CSVTable.read(f / "ensemble.csv")
        if not rows:
            raise SystemExit(f"{f}: no ensemble.csv (run creep-cathode ensemble first)")
        size = box_size(f)
        if size in ens:
            raise SystemExit(f"{f}: a second ensemble of the {size * 1e6:g} µm box (one folder per size)")
        ens[size] = rows
    cols = a.columns.split(",") if a.columns else None
    md = size_md(size_rows(ens, a.cycle, columns=cols))
    if a.out:
        a.out.write_text(md)
    sys.stdout.write(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
