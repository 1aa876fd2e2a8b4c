"""Plots of a run folder (matplotlib, Agg): `creep-cathode report DIR` redraws them.

- plots/stress_vs_time.png      mean and max von Mises per phase vs time (with theta)
- plots/contact_vs_cycle.png    contact ratios at the lithiated state vs cycle (Fig. 4d; paper points
                                overlaid when the phases are Se/MSe or LCO/MSe)
- plots/stress_vs_cycle.png     mean von Mises per phase at the lithiated state vs cycle (Fig. 4e)
- plots/porosity_vs_time.png    porosity and equivalent creep strain vs time
- plots/pores_fig3d.png         relative area of each pore at the end of discharge and of charge, first
                                and last cycle, with the threshold 1 - theta_charge (Xiong 2024, Fig. 3d)
- plots/rve_vm_cycleNNN.png     deformed RVE coloured by von Mises, first and last lithiated state
                                (Fig. 4b/f); plots/rve_creep_cycleNNN.png: creep strain map (Fig. 4c)
"""

from __future__ import annotations

from pathlib import Path

from .metrics import in_state, kind_columns, phases_of
from .output import CSVTable
from .reference import PAPER

def _save(fig, path: Path, files: list, dpi: int = 120) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    files.append(path)


def make_plots(folder) -> list[Path]:
    """Draw the plots of run folder `folder` into folder/plots; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    ts = CSVTable.read(folder / "timeseries.csv")
    cy = CSVTable.read(folder / "cycles.csv")
    out = folder / "plots"
    out.mkdir(exist_ok=True)
    files = []
    if not ts:
        return files
    phases = phases_of(ts[0])
    t = [r["time_s"] / 3600 for r in ts]

    fig, ax = plt.subplots(figsize=(7, 4))
    for p in phases:
        ax.plot(t, [r[f"vm_mean_{p}_Pa"] / 1e9 for r in ts], label=f"{p} mean")
        ax.plot(t, [r[f"vm_max_{p}_Pa"] / 1e9 for r in ts], "--", label=f"{p} max")
    ax.set_xlabel("time [h]")
    ax.set_ylabel("von Mises stress [GPa]")
    act = [k for k in ts[0] if k.startswith("theta_") and any(r[k] for r in ts)]
    if act:
        ax2 = ax.twinx()
        ax2.plot(t, [r[act[0]] for r in ts], color="0.6", lw=0.8)
        ax2.set_ylabel(r"$\theta$ (grey)")
    ax.legend(fontsize=8)
    _save(fig, out / "stress_vs_time.png", files)

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(t, [r["porosity"] for r in ts], label="porosity")
    for p in phases:
        ax.plot(t, [r[f"creep_eq_mean_{p}"] for r in ts], label=f"creep strain {p}")
    ax.set_xlabel("time [h]")
    ax.legend(fontsize=8)
    _save(fig, out / "porosity_vs_time.png", files)

    lit = in_state(cy, "lithiated")
    if lit:
        c = [r["cycle"] for r in lit]
        fig, ax = plt.subplots(figsize=(6, 4))
        for col in kind_columns(phases, "contact"):
            k, a, b = col.name, col.phase, col.other
            if b != "any" and any(r.get(k, 0) for r in lit):
                line, = ax.plot(c, [100 * r[k] for r in lit], "o-", ms=3, label=f"{a}-{b}")
                if k in PAPER:
                    ax.plot(list(PAPER[k]), [100 * v for v in PAPER[k].values()], "s", mfc="none",
                            color=line.get_color(), ms=8, label=f"{a}-{b} paper")
        ax.set_xlabel("cycle")
        ax.set_ylabel("contact ratio at full lithiation [%]")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        _save(fig, out / "contact_vs_cycle.png", files)

        fig, ax = plt.subplots(figsize=(6, 4))
        for p in phases:
            k = f"vm_mean_{p}_Pa"
            line, = ax.plot(c, [r[k] / 1e9 for r in lit], "o-", ms=3, label=p)
            if k in PAPER:
                ax.plot(list(PAPER[k]), [v / 1e9 for v in PAPER[k].values()], "s", mfc="none",
                        color=line.get_color(), ms=8, label=f"{p} paper")
        ax.set_xlabel("cycle")
        ax.set_ylabel("mean von Mises at full lithiation [GPa]")
        ax.legend(fontsize=8)
        _save(fig, out / "stress_vs_cycle.png", files)
    files += rve_maps(folder, plt)
    files += pore_plot(folder, plt)
    files += fig3d_plot(folder, plt)
    return files


def fig3d_plot(folder, plt) -> list[Path]:
    """plots/pores_fig3d.png in the style of Xiong 2024, Fig. 3d: per pore (sorted by its area at the
    end of discharge) the area relative to the initial one at the end of discharge and at the end of
    charge, for the first and the last cycle, with the no-creep threshold 1 - theta_charge (78 % at
    theta = 0.22) and the shares below it and that shrank during delithiation (pores_fig3d*.csv)."""
    folder = Path(folder)
    per_pore = CSVTable.read(folder / "pores_fig3d.csv")
    per_cycle = {r["cycle"]: r for r in CSVTable.read(folder / "pores_fig3d_cycles.csv")}
    if not per_pore or not per_cycle:
        return []
    cycles = sorted(per_cycle)
    chosen = [cycles[0]] + ([cycles[-1]] if len(cycles) > 1 else [])
    fig, axes = plt.subplots(1, len(chosen), figsize=(6.5 * len(chosen), 4), squeeze=False)
    for ax, c in zip(axes[0], chosen):
        fig3d_panel(ax, [r for r in per_pore if r["cycle"] == c], per_cycle[c])
    _save(fig, folder / "plots" / "pores_fig3d.png", files := [])
    return files


def fig3d_panel(ax, pores: list[dict], pc: dict, label: str = "") -> None:
    """One Fig. 3d panel on `ax`: the pores of one cycle (rows of pores_fig3d.csv), sorted by their
    area at the end of discharge, as bars at the end of discharge and of charge, the no-creep
    threshold 1 - theta_charge and the cycle's shares (`pc`, a row of pores_fig3d_cycles.csv)."""
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    rows = sorted(pores, key=lambda r: r["relative_area_discharged"])
    x = np.arange(1, len(rows) + 1)
    ax.bar(x - 0.2, [100 * r["relative_area_discharged"] for r in rows], 0.4, color="C0",
           label="end of discharge (lithiated)")
    ax.bar(x + 0.2, [100 * r["relative_area_charged"] for r in rows], 0.4, color="C3",
           label="end of charge (delithiated)")
    ax.axhline(100 * pc["threshold"], color="k", ls="--", lw=1,
               label=f"no creep: {100 * pc['threshold']:.0f} % (1 - theta_charge)")
    ax.axhline(100, color="0.6", lw=0.8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("pore (sorted by its area at the end of discharge)")
    ax.set_ylabel("area / initial area [%]")
    ax.set_title(f"{label + ', ' if label else ''}cycle {pc['cycle']}: {pc['pores_below_threshold']}/{pc['pores']} "
                 f"below {100 * pc['threshold']:.0f} %, {pc['pores_shrank']}/{pc['pores']} shrank on charge\n"
                 "(paper, 20 pores: most below 78 %, 8/20 shrank)", fontsize=9)
    ax.legend(fontsize=7)


def pore_plot(folder, plt) -> list[Path]:
    """plots/pores_vs_cycle.png: relative area of each pore at the lithiated and delithiated states,
    from pores.csv (written by the run; made from the snapshots here only when it is missing)."""
    from .pores import write_pores_csv

    folder = Path(folder)
    path = folder / "pores.csv"
    if not path.exists():
        path = write_pores_csv(folder)
    rows = CSVTable.read(path) if path else []
    rows = [r for r in rows if r["state"] in ("lithiated", "delithiated")]
    if not rows:
        return []
    files = []
    fig, ax = plt.subplots(figsize=(7, 4))
    for state, mark in (("lithiated", "o-"), ("delithiated", "s--")):
        cyc = sorted({r["cycle"] for r in rows if r["state"] == state})
        if not cyc:
            continue
        for p in sorted({r["pore"] for r in rows}):
            v = {r["cycle"]: r["relative_area"] for r in rows if r["state"] == state and r["pore"] == p}
            ax.plot(cyc, [v.get(c, float("nan")) for c in cyc], mark, color="C0" if state == "lithiated" else "C1",
                    alpha=0.35, ms=3, lw=0.8)
        por = {r["cycle"]: r["porosity"] for r in rows if r["state"] == state}
        ax.plot(cyc, [por[c] for c in cyc], mark, color="k",
                lw=2, ms=4, label=f"porosity, {state}")
    ax.plot([], [], "o-", color="C0", alpha=0.5, label="each pore / its initial area, lithiated")
    ax.plot([], [], "s--", color="C1", alpha=0.5, label="each pore / its initial area, delithiated")
    ax.set_xlabel("cycle")
    ax.set_ylabel("relative pore area, porosity [-]")
    ax.legend(fontsize=7)
    _save(fig, folder / "plots" / "pores_vs_cycle.png", files)
    return files


def rve_maps(folder, plt) -> list[Path]:
    """Deformed RVE coloured by von Mises (first and last lithiated cycle) and creep strain."""
    import numpy as np
    from matplotlib.collections import PolyCollection

    folder = Path(folder)
    snaps = sorted((folder / "fields").glob("snapshot_cycle*_lithiated.npz"))
    if not snaps:
        return []
    files = []
    chosen = [snaps[0]] + ([snaps[-1]] if len(snaps) > 1 else [])
    for s in chosen:
        z = np.load(s)
        cyc = int(s.name[len("snapshot_cycle"):len("snapshot_cycle") + 3])
        for key, label, cmap in (("vm", "von Mises [GPa]", "jet"), ("creep", "equivalent creep strain", "viridis")):
            if key == "creep" and not np.any(z["creep"]):
                continue
            vals = z[key] / (1e9 if key == "vm" else 1.0)
            fig, ax = plt.subplots(figsize=(5.5, 5.5 * float(z["height"]) / float(z["width"]) * 0.9 + 0.5))
            pc = PolyCollection(z["tri"] * 1e6, array=vals, cmap=cmap, edgecolors="face", linewidths=0.05)
            ax.add_collection(pc)
            ax.set_xlim(-0.02 * z["width"] * 1e6, 1.02 * z["width"] * 1e6)
            ax.set_ylim(-0.02 * z["height"] * 1e6, 1.02 * z["height"] * 1e6)
            ax.set_aspect("equal")
            ax.set_xlabel("x [µm]")
            ax.set_ylabel("y [µm]")
            ax.set_title(f"cycle {cyc}, lithiated")
            fig.colorbar(pc, ax=ax, label=label, shrink=0.8)
            _save(fig, folder / "plots" / f"rve_{key}_cycle{cyc:03d}.png", files, dpi=130)
    return files
