"""The README's "Results" table: the paper's Fig. 4 numbers next to ours, from run folders.

    .venv/bin/python scripts/results_table.py runs/se_mse runs/lco_mse runs/fes_mse

Reads cycles.csv (lithiated state of cycles 1 and 20, or the last cycle reached) and summary.json
of each folder and prints markdown. Contact ratios are given both ways for Se-MSe (the paper does
not say whose boundary is the denominator; DESIGN section 3).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from creep_cathode.metrics import in_state
from creep_cathode.reference import PAPER, PAPER_EXTRA

ROWS = [  # (label, our column, paper key, scale, unit)
    ("Se-Se contact ratio", "contact_Se_Se", "contact_Se_Se", 100, "%"),
    ("Se-MSe contact ratio (Se boundary)", "contact_Se_MSe", None, 100, "%"),
    ("Se-MSe contact ratio (MSe boundary; the paper's)", "contact_MSe_Se", "contact_MSe_Se", 100, "%"),
    ("Se boundary in contact with anything", "contact_Se_any", None, 100, "%"),
    ("mean von Mises, Se", "vm_mean_Se_Pa", "vm_mean_Se_Pa", 1e-9, "GPa"),
    ("mean von Mises, MSe", "vm_mean_MSe_Pa", "vm_mean_MSe_Pa", 1e-9, "GPa"),
    ("peak von Mises, Se", "vm_max_Se_Pa", None, 1e-9, "GPa"),
    ("peak von Mises, MSe", "vm_max_MSe_Pa", None, 1e-9, "GPa"),
    ("porosity", "porosity", None, 100, "%"),
    ("LCO-LCO contact ratio", "contact_LCO_LCO", "contact_LCO_LCO", 100, "%"),
    ("LCO-MSe contact ratio (LCO boundary)", "contact_LCO_MSe", None, 100, "%"),
    ("LCO-MSe contact ratio (MSe boundary; the paper's)", "contact_MSe_LCO", "contact_MSe_LCO", 100, "%"),
    ("peak von Mises, LCO", "vm_max_LCO_Pa", None, 1e-9, "GPa"),
    ("mean von Mises, LCO", "vm_mean_LCO_Pa", None, 1e-9, "GPa"),
    ("FeS-FeS contact ratio", "contact_FeS_FeS", None, 100, "%"),
    ("FeS-MSe contact ratio (FeS boundary)", "contact_FeS_MSe", None, 100, "%"),
    ("FeS-MSe contact ratio (MSe boundary)", "contact_MSe_FeS", None, 100, "%"),
    ("mean von Mises, FeS", "vm_mean_FeS_Pa", None, 1e-9, "GPa"),
    ("peak von Mises, FeS", "vm_max_FeS_Pa", None, 1e-9, "GPa"),
]


def _fmt(v, scale, unit):
    return "—" if v is None else (f"{v * scale:.1f} {unit}" if unit == "%" else f"{v * scale:.3f} {unit}")


def main(folders: list[str]) -> int:
    lines = ["| quantity (fully lithiated) | paper, cycle 1 | ours, cycle 1 | paper, cycle 20 | ours, last cycle | run |",
             "|---|---|---|---|---|---|"]
    for folder in map(Path, folders):
        rows = in_state(list(csv.DictReader(open(folder / "cycles.csv"))), "lithiated")
        if not rows:
            continue
        s = json.loads((folder / "summary.json").read_text())
        first, last = rows[0], rows[-1]
        tag = f"`{folder.name}` ({s['status']}, {len(rows)} cycles)"
        for label, col, pkey, scale, unit in ROWS:
            if col not in first:
                continue
            paper = PAPER.get(pkey or "", {}) or PAPER_EXTRA.get(col, {})
            if pkey == "vm_mean_MSe_Pa" and "vm_mean_Se_Pa" not in first:
                paper = {}  # the paper's MSe stresses are those of the Se-MSe cathode
            lines.append(f"| {label} | {_fmt(paper.get(1), scale, unit)} | {_fmt(float(first[col]), scale, unit)} | "
                         f"{_fmt(paper.get(20), scale, unit)} | {_fmt(float(last[col]), scale, unit)} "
                         f"(cycle {last['cycle']}) | {tag} |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
