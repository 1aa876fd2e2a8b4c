"""Tables and plots of docs/experiments.md from run folders (issue 14: stack pressure, Fig. 3d, temperature).

    python scripts/experiments.py stack RUN [--img docs/img/NAME.png]
        per cycle and state: thickness change against the initial box and against the pressed state
        (the end of the first 'Rest' step, before any lithiation), porosity, contact ratios, mean
        von Mises stresses and the proximal / stored energy of the state (markdown table); a plot of
        the thickness change per cycle with the paper's +4.76 % (Se-MSe) after 100 cycles, states
        that are not in equilibrium drawn as open markers: proximal / stored energy above 10x the
        run's contact.proximal_tolerance (1e-2 by default, the flag of scripts/screening.py), i.e.
        floating particles that the proximal term holds
    python scripts/experiments.py fig3d RUN [RUN ...] [--labels A B ...] [--img docs/img/NAME.png]
        the Fig. 3d shares per cycle (pores_fig3d_cycles.csv, recomputed from the snapshots) and a
        plot of the first cycle of each run side by side
    python scripts/experiments.py temperature RUN_25C RUN_70C [--img docs/img/NAME.png]
        contact ratios and mean von Mises stresses at the lithiated state per cycle at the two
        temperatures (markdown table and plot)

Reads only the run folders' CSV files and snapshots; no solver.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from creep_cathode.metrics import EQUILIBRIUM_FLAG
from creep_cathode.output import CSVTable
from creep_cathode.rundir import read_summary

PAPER_THICKNESS = {"Se": 0.0476, "FeS": 0.667}  # Xiong 2024, Fig. 5d-g: after 100 cycles


def equilibrium_flag(run: Path) -> float:
    """Proximal / stored energy above which a state is not in equilibrium: 10x the run's
    contact.proximal_tolerance, as scripts/screening.py flags it."""
    import tomllib

    try:
        tol = tomllib.loads((run / "config.toml").read_text()).get("contact", {}).get("proximal_tolerance", 1e-3)
    except (OSError, ValueError):
        tol = 1e-3
    return EQUILIBRIUM_FLAG * float(tol)


def in_equilibrium(row, flag: float = 1e-2) -> bool:
    """The state carries (almost) no proximal energy: the regularisation of floating bodies holds nothing."""
    r = row.get("proximal_energy_ratio", "")
    return r == "" or r is None or float(r) <= flag


def _phases(row):
    return [k[len("vm_mean_"):-len("_Pa")] for k in row if k.startswith("vm_mean_") and k.endswith("_Pa")]


def pressed_reference(ts: list[dict]) -> dict | None:
    """The timeseries row at the end of the first rest (theta still 0): the pressed electrode. Only
    the rows before the first lithiation count, not the later returns to theta = 0 (a full
    delithiation and the rest after it)."""
    theta = [k for k in ts[0] if k.startswith("theta_")]
    ref = None
    for r in ts[1:]:
        if any(r[k] != 0 for k in theta):
            break
        ref = r
    return ref


def rest_ends(ts: list[dict], finished: bool = True) -> list[dict]:
    """The timeseries row at the end of every rest (steps that do not change theta), in order: the
    pressed reference first, then, in a protocol that rests at the start of each cycle, the
    electrode pressed again after each delithiation. `finished` False (a run stopped or still
    going): a rest that the last row is part of has not ended and is left out."""
    theta = [k for k in ts[0] if k.startswith("theta_")]
    ends = []
    for prev, r, nxt in zip(ts, ts[1:], ts[2:] + [None]):
        rest = all(r[k] == prev[k] for k in theta)
        if rest and ((nxt is None and finished) or (nxt is not None and any(nxt[k] != r[k] for k in theta))):
            ends.append(r)
    return ends


def stack(run: Path, img: Path | None):
    ts = CSVTable.read(run / "timeseries.csv")
    cy = CSVTable.read(run / "cycles.csv")
    ref = pressed_reference(ts)
    h0 = ref["height_change"] if ref else 0.0
    ph = _phases(ts[0])
    act = ph[0]
    if ref:
        print(f"pressed reference (t = {ref['time_s']:.4g} s, end of the first rest): height change "
              f"{100 * h0:+.2f} % of the initial box, porosity {ref['porosity']:.4f} (initial {ts[0]['porosity']:.4f})")
    print()
    print(f"| cycle | state | thickness vs pressed [%] | vs initial box [%] | porosity | {act}-MSe contact | "
          f"{act}-{act} contact | mean vM {act} [MPa] | mean vM MSe [MPa] | proximal / stored |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows, flag = [], equilibrium_flag(run)
    rests = rest_ends(ts, finished=(read_summary(run) or {}).get("status") == "completed")
    states = sorted([dict(r, state="end of rest") for r in rests if r is not ref] + list(cy),
                    key=lambda r: (r["cycle"], r["state"] != "end of rest"))  # stable: lithiated before delithiated
    for r in states:
        t = (1 + r["height_change"]) / (1 + h0) - 1
        eq = in_equilibrium(r, flag)
        rows.append((r["cycle"], r["state"], t, eq))
        prox = r.get("proximal_energy_ratio", "")
        print(f"| {r['cycle']} | {r['state']} | {100 * t:+.2f} | {100 * r['height_change']:+.2f} | "
              f"{r['porosity']:.4f} | {100 * r[f'contact_{act}_MSe']:.1f} | {100 * r[f'contact_{act}_{act}']:.1f} | "
              f"{r[f'vm_mean_{act}_Pa'] / 1e6:.0f} | {r['vm_mean_MSe_Pa'] / 1e6:.0f} | "
              f"{'' if prox in ('', None) else f'{float(prox):.2g}'}{'' if eq else ' (not in equilibrium)'} |")
    if img and rows:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.5, 4))
        for state, mark, name in (("lithiated", "o-", "lithiated"), ("delithiated", "s--", "delithiated"),
                                  ("end of rest", "^:", "pressed again (end of the rest that starts the cycle)")):
            c = [x[0] for x in rows if x[1] == state]
            if not c:
                continue
            line, = ax.plot(c, [100 * x[2] for x in rows if x[1] == state], mark, ms=4, label=f"computed, {name}")
            off = [x for x in rows if x[1] == state and not x[3]]
            if off:  # open markers over the states the proximal term holds
                ax.plot([x[0] for x in off], [100 * x[2] for x in off], mark[0], ms=6, mfc="white",
                        color=line.get_color(), label=f"{state}: not in equilibrium (proximal / stored > {flag:g})")
        if act in PAPER_THICKNESS:
            ax.axhline(100 * PAPER_THICKNESS[act], color="k", ls=":", lw=1,
                       label=f"paper, after 100 cycles: {100 * PAPER_THICKNESS[act]:+.2f} %")
        ax.axhline(0, color="0.7", lw=0.8)
        ax.set_xlabel("cycle")
        ax.set_ylabel("thickness change vs pressed state [%]")
        ax.set_title(f"{run.name}: {act}-MSe under stack pressure", fontsize=9)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(img, dpi=120)
        print(f"\nwrote {img}")


def stack_snapshots(run: Path, img: Path) -> None:
    """The RVE at rest, at the first lithiated and at the last delithiated state, coloured by von
    Mises, with the platen's level (the box height of that state)."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    cy = CSVTable.read(run / "cycles.csv")
    last_d = [r for r in cy if r["state"] == "delithiated"][-1]
    states = [("initial", 0, 0.0), ("lithiated", 1, cy[0]["height_change"]),
              ("delithiated", last_d["cycle"], last_d["height_change"])]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.6))
    for ax, (state, c, hc) in zip(axes, states):
        z = np.load(run / "fields" / f"snapshot_cycle{c:03d}_{state}.npz")
        W, H = float(z["width"]) * 1e6, float(z["height"]) * 1e6
        tri = z["tri"] * 1e6
        pc = PolyCollection(tri, array=z["vm"] / 1e9, cmap="jet", edgecolors="face", linewidths=0.05)
        pc.set_clim(0, 0.4)
        ax.add_collection(pc)
        ax.axhline(H * (1 + hc), color="k", lw=1.5)
        ax.set_xlim(-0.3, W + 0.3)
        ax.set_ylim(-0.3, 1.3 * H)
        ax.set_aspect("equal")
        ax.set_xlabel("x [µm]")
        ax.set_title(f"cycle {c}, {state}: platen {100 * hc:+.1f} %,\nhighest solid point {tri[..., 1].max() - H * (1 + hc):+.2f} µm "
                     "from it", fontsize=8)
    axes[0].set_ylabel("y [µm]")
    fig.colorbar(pc, ax=axes.tolist(), label="von Mises [GPa]", shrink=0.7)
    fig.savefig(img, dpi=110)
    print(f"wrote {img}")


def fig3d(runs: list[Path], labels: list[str], img: Path | None):
    from creep_cathode.pores import write_pores_csv

    tables = []
    for run, lab in zip(runs, labels):
        write_pores_csv(run)  # with the deformed box (older runs: from cycles.csv)
        pc = CSVTable.read(run / "pores_fig3d_cycles.csv")
        pp = CSVTable.read(run / "pores_fig3d.csv")
        tables.append((lab, pc, pp))
        print(f"{lab} ({run}):")
        print("| cycle | pores | threshold | below threshold at end of charge | shrank during delithiation | "
              "median area, end of discharge | median area, end of charge |")
        print("|---|---|---|---|---|---|---|")
        for r in pc:
            print(f"| {r['cycle']} | {r['pores']} | {100 * r['threshold']:.0f} % | {r['pores_below_threshold']}/{r['pores']} "
                  f"({100 * r['share_below_threshold']:.0f} %) | {r['pores_shrank']}/{r['pores']} "
                  f"({100 * r['share_shrank']:.0f} %) | {100 * r['median_relative_area_discharged']:.0f} % | "
                  f"{100 * r['median_relative_area_charged']:.0f} % |")
        print()
    if img:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from creep_cathode.plots import fig3d_panel

        fig, axes = plt.subplots(1, len(tables), figsize=(6 * len(tables), 4), squeeze=False)
        for ax, (lab, pc, pp) in zip(axes[0], tables):
            if pc:
                fig3d_panel(ax, [r for r in pp if r["cycle"] == pc[0]["cycle"]], pc[0], lab)
        fig.tight_layout()
        fig.savefig(img, dpi=120)
        print(f"wrote {img}")


def temperature(cold: Path, hot: Path, img: Path | None):
    runs = [("25 C", CSVTable.read(cold / "cycles.csv")), ("70 C", CSVTable.read(hot / "cycles.csv"))]
    ph = _phases(runs[0][1][0])
    act = ph[0]
    keys = [(f"contact_MSe_{act}", f"{act}-MSe contact, MSe boundary (paper's) [%]", 100),
            (f"contact_{act}_MSe", f"{act}-MSe contact, {act} boundary [%]", 100),
            (f"contact_{act}_{act}", f"{act}-{act} contact [%]", 100),
            (f"vm_mean_{act}_Pa", f"mean vM {act} [MPa]", 1e-6), ("vm_mean_MSe_Pa", "mean vM MSe [MPa]", 1e-6),
            (f"creep_eq_mean_{act}", f"mean creep strain {act}", 1)]
    print("| cycle | T | " + " | ".join(k[1] for k in keys) + " |")
    print("|---|---|" + "---|" * len(keys))
    ncyc = min(max(r["cycle"] for r in rows) for _, rows in runs)
    for c in range(1, ncyc + 1):
        for lab, rows in runs:
            r = next((r for r in rows if r["cycle"] == c and r["state"] == "lithiated"), None)
            if r:
                print(f"| {c} | {lab} | " + " | ".join(f"{r[k] * s:.4g}" for k, _, s in keys) + " |")
    if img:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for (lab, rows), ls in zip(runs, ("--", "-")):
            lit = [r for r in rows if r["state"] == "lithiated"]
            c = [r["cycle"] for r in lit]
            axes[0].plot(c, [100 * r[f"contact_MSe_{act}"] for r in lit], "o" + ls, color="C0",
                         label=f"{act}-MSe (MSe boundary), {lab}")
            axes[0].plot(c, [100 * r[f"contact_{act}_{act}"] for r in lit], "s" + ls, color="C1", label=f"{act}-{act}, {lab}")
            axes[1].plot(c, [r[f"vm_mean_{act}_Pa"] / 1e6 for r in lit], "o" + ls, color="C0", label=f"{act}, {lab}")
            axes[1].plot(c, [r["vm_mean_MSe_Pa"] / 1e6 for r in lit], "s" + ls, color="C2", label=f"MSe, {lab}")
        axes[0].set_ylabel("contact ratio at full lithiation [%]")
        axes[1].set_ylabel("mean von Mises at full lithiation [MPa]")
        from matplotlib.ticker import MaxNLocator

        for ax in axes:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("cycle")
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(img, dpi=120)
        print(f"\nwrote {img}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("stack")
    a.add_argument("run", type=Path)
    a.add_argument("--img", type=Path)
    a.add_argument("--snapshots", type=Path, help="also draw the RVE at rest, first lithiated, last delithiated")
    b = sub.add_parser("fig3d")
    b.add_argument("runs", type=Path, nargs="+")
    b.add_argument("--labels", nargs="+")
    b.add_argument("--img", type=Path)
    c = sub.add_parser("temperature")
    c.add_argument("cold", type=Path)
    c.add_argument("hot", type=Path)
    c.add_argument("--img", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "stack":
        stack(args.run, args.img)
        if args.snapshots:
            stack_snapshots(args.run, args.snapshots)
    elif args.cmd == "fig3d":
        fig3d(args.runs, args.labels or [r.name for r in args.runs], args.img)
    else:
        temperature(args.cold, args.hot, args.img)


if __name__ == "__main__":
    sys.exit(main())
