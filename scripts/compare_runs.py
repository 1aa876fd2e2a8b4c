"""Per-cycle differences of the fully lithiated Fig. 4 metrics between two run folders.

    .venv/bin/python scripts/compare_runs.py runs/ens16_c20/000_seed=1 runs/se_mse_tol4

Reads both cycles.csv; for every cycle both reached, prints B − A: contact ratios and porosity in
points, mean stresses in % of A; then the largest absolute difference of each kind. Used for the
time-step (dt-halving) and solver-setting checks in the README.
"""

from __future__ import annotations

import sys
from pathlib import Path

from creep_cathode.metrics import in_state
from creep_cathode.output import CSVTable

COLUMNS = ("contact_Se_Se", "contact_Se_MSe", "contact_MSe_Se", "contact_Se_any", "vm_mean_Se_Pa",
           "vm_mean_MSe_Pa", "porosity")


def lithiated(folder: Path) -> dict:
    """{cycle: row} of the fully lithiated states in a run folder's cycles.csv."""
    return {int(r["cycle"]): r for r in in_state(CSVTable.read(folder / "cycles.csv"))}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    a, b = (lithiated(Path(p)) for p in argv)
    cols = [c for c in COLUMNS if a and c in next(iter(a.values()))]
    print("| cycle | " + " | ".join(c + (" [%]" if c.endswith("_Pa") else " [points]") for c in cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    worst = {"points": 0.0, "%": 0.0}
    for cyc in sorted(set(a) & set(b)):
        cells = []
        for c in cols:
            x, y = float(a[cyc][c]), float(b[cyc][c])
            if c.endswith("_Pa"):
                d = 100 * (y - x) / x
                worst["%"] = max(worst["%"], abs(d))
            else:
                d = 100 * (y - x)
                worst["points"] = max(worst["points"], abs(d))
            cells.append(f"{d:+.2f}")
        print(f"| {cyc} | " + " | ".join(cells) + " |")
    print(f"\nlargest: {worst['points']:.2f} points (contact ratios, porosity), {worst['%']:.2f} % (mean stresses)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
