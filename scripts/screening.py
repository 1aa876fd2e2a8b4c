"""Design screening: which strategy keeps contact? Table and design map from a sweep folder.

    .venv/bin/python scripts/screening.py runs/screening --sweep configs/sweep_screening.toml --jobs 2
    .venv/bin/python scripts/screening.py runs/screening          # tables and map of a finished sweep

With `--sweep`, first runs `creep-cathode sweep SWEEP -o DIR --jobs N` (finished cases are skipped),
then reads every case folder of DIR and writes

  DIR/screening.csv      one row per case, every number below
  DIR/screening.md       the markdown table of the README
  DIR/design_map.png     the design map (in the spirit of Xiong 2024, Fig. 2a): volume change of the
                         active material against its homologous temperature T/T_m (creep propensity),
                         one panel per framework stiffness (and top side), each case coloured by the
                         active boundary in contact at full lithiation of the last cycle, annotated
                         with its change since cycle 1, the peak von Mises stress and the fracture risk

The active phase is the config's active one (configs/screening.toml calls it AM, the framework FW);
a case's material comes from its `source` ("library <name>: ..."), its T/T_m, volume change and
whether it creeps from summary.json's descriptors, its Norton constants from its config.toml.

Quantities (per case):
  contact            contact_<AM>_any (the active boundary touching any particle) at the end of the first
                     and of the last lithiation, and of the last delithiation. All particles start apart
                     (min_gap), so contact is what swelling and creep built.
  peak stress        largest von Mises stress of any phase at any step (timeseries.csv)
  fracture risk      fracture_risk_<AM> at the end of the last lithiation and delithiation (cycles.csv);
                     for the framework and as `*_max`, the largest share at any step (timeseries.csv)
  box height         height_change at the end of the last lithiation: the mean normal displacement of the top
                     side over the box height (0 on rollers; under a top pressure the sinking of the cut faces)
  proximal ratio     largest proximal energy / stored energy of any step (timeseries.csv) and of the
                     states the table reports (the cycle ends, cycles.csv): the regularisation that holds
                     floating particles (contact.proximal) should not drive the answer; above
                     contact.proximal_tolerance (default 1e-3) it starts to; the map flags a case whose
                     cycle ends are above 10 x the tolerance as not in equilibrium, and one that is only
                     out of equilibrium between them (e.g. while a packing settles) as such
  Norton rate        A (sigma / sigma_ref)^n at sigma = the active phase's mean von Mises at the end of the
                     first lithiation, with the Arrhenius factor at the run temperature (0: no creep)

A case that did not complete keeps the cycles it finished; `reached` says where it stopped and the
`*_last_step` columns give its last converged step (the map colours it by that step, red edge).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from creep_cathode.metrics import EQUILIBRIUM_FLAG, in_state, phases_of
from creep_cathode.output import CSVTable, atomic_write

R_GAS = 8.314462618
T_H_CREEP = 0.3  # Xiong 2024, Fig. 2a: T_H > 0.3 creeps, T_H < 0.3 is brittle

COLUMNS = [  # (key, markdown header, format) of the markdown table; the CSV has every key of the record
    ("material", "active material", "{}"),
    ("framework_E_GPa", "framework E [GPa]", "{:.0f}"),
    ("top", "top side", "{}"),
    ("status", "status", "{}"),
    ("volume_change", "ΔV/V", "pct1"),
    ("homologous_temperature", "T/T_m", "th"),
    ("norton_rate_1_s", "Norton rate [1/s]", "{:.1e}"),
    ("contact_lithiated_first", "AM in contact, lith., cycle 1", "pct1"),
    ("contact_lithiated_last", "lith., last cycle", "pct1"),
    ("contact_delithiated_last", "delith., last cycle", "pct1"),
    ("fw_covered_last", "FW covered by AM, lith., last", "pct1"),
    ("vm_mean_active_last_GPa", "mean vM AM, lith., last [GPa]", "{:.3f}"),
    ("peak_vm_GPa", "peak vM, any phase, any step [GPa]", "{:.2f}"),
    ("fracture_risk_active_lithiated_last", "fracture risk AM, lith., last", "pct1"),
    ("fracture_risk_active_delithiated_last", "fracture risk AM, delith., last", "pct1"),
    ("fracture_risk_framework_max", "fracture risk FW, max", "pct1"),
    ("height_change_last", "box height, lith., last", "pct1"),
    ("proximal_ratio_max", "proximal / stored energy, max, any step", "{:.2g}"),
    ("proximal_ratio_states_max", "proximal / stored, max, cycle ends", "{:.2g}"),
    ("cycles", "cycles", "{}"),
    ("wall_time_s", "wall [min]", "min"),
]


# ------------------------------------------------------------------------------- reading a case
def _num(v):
    try:
        x = float(v)
    except (TypeError, ValueError):
        return math.nan
    return x


def _nanmax(values) -> float:
    vals = [v for v in map(_num, values) if not math.isnan(v)]
    return max(vals) if vals else math.nan


def _library_name(mat: dict) -> str:
    src = mat.get("source", "") or ""
    return src[len("library "):].split(":", 1)[0].strip() if src.startswith("library ") else ""


def _top(boundary: dict) -> str:
    top = boundary.get("top", "roller")
    if isinstance(top, dict) and "pressure" in top:
        return f"{top['pressure'] / 1e6:g} MPa"
    return str(top)


def norton_rate(creep: dict | None, sigma: float, temperature: float) -> float:
    """A (sigma / sigma_ref)^n exp(-Q/R (1/T - 1/T_ref)) [1/s]; 0 without creep."""
    if not creep or not creep.get("A") or not (sigma > 0):
        return 0.0
    arr = math.exp(-creep.get("Q", 0.0) / R_GAS * (1.0 / temperature - 1.0 / creep.get("T_ref", temperature)))
    return creep["A"] * (sigma / creep["sigma_ref"]) ** creep["n"] * arr


def case_record(folder: Path) -> dict:
    """Everything the table and the map need from one case folder of the sweep (missing files: NaN)."""
    folder = Path(folder)
    summary = json.loads((folder / "summary.json").read_text()) if (folder / "summary.json").exists() else {}
    cfg_path = folder / "config.toml" if (folder / "config.toml").exists() else folder / "input.toml"
    cfg = tomllib.loads(cfg_path.read_text()) if cfg_path.exists() else {}
    mats = cfg.get("materials", {})
    active = [p for p, m in mats.items() if m.get("active")]
    am = active[0] if active else ""
    fw = next((p for p in mats if p != am), "")
    desc = (summary.get("descriptors") or {}).get("phases", {}).get(am) or _descriptors(cfg_path, am)
    T = (cfg.get("cycling") or {}).get("temperature", 343.15)
    cyc = CSVTable.read(folder / "cycles.csv")
    ts = CSVTable.read(folder / "timeseries.csv")
    lit, delit = in_state(cyc, "lithiated"), in_state(cyc, "delithiated")
    phases = phases_of(ts[0]) if ts else [am, fw]

    def at(rows, i, key):
        return _num(rows[i].get(key)) if rows else math.nan

    vm1 = at(lit, 0, f"vm_mean_{am}_Pa")
    last = ts[-1] if ts else {}
    rec = {
        "case": folder.name,
        "material": _library_name(mats.get(am, {})) or am,
        "framework": _library_name(mats.get(fw, {})) or fw,
        "framework_E_GPa": _num(mats.get(fw, {}).get("youngs_modulus")) / 1e9,
        "top": _top(cfg.get("boundary", {})),
        "status": summary.get("status", "not run"),
        "reason": summary.get("reason", ""),
        "cycles": int(lit[-1]["cycle"]) if lit else 0,
        "reached": f"cycle {_num(last.get('cycle')):.0f}, theta {_num(last.get(f'theta_{am}')):.2f}" if last else "",
        "wall_time_s": _num(summary.get("wall_time_s")),
        "volume_change": _num(desc.get("volume_change", _num(mats.get(am, {}).get("volume_ratio_lithiated")) - 1)),
        "homologous_temperature": _num(desc.get("homologous_temperature")),
        "homologous_temperature_bound": desc.get("homologous_temperature_bound", ""),
        "creeps": bool(desc.get("creeps", bool(mats.get(am, {}).get("creep")))),
        "norton_rate_1_s": norton_rate(mats.get(am, {}).get("creep"), vm1, T),
        "contact_lithiated_first": at(lit, 0, f"contact_{am}_any"),
        "contact_lithiated_last": at(lit, -1, f"contact_{am}_any"),
        "contact_delithiated_last": at(delit, -1, f"contact_{am}_any"),
        "fw_covered_last": at(lit, -1, f"contact_{fw}_{am}"),
        "vm_mean_active_first_GPa": vm1 / 1e9,
        "vm_mean_active_last_GPa": at(lit, -1, f"vm_mean_{am}_Pa") / 1e9,
        "peak_vm_GPa": _nanmax(r.get(f"vm_max_{p}_Pa") for r in ts for p in phases) / 1e9,
        "fracture_risk_active_max": _nanmax(r.get(f"fracture_risk_{am}") for r in ts),
        "fracture_risk_framework_max": _nanmax(r.get(f"fracture_risk_{fw}") for r in ts),
        "fracture_risk_active_lithiated_last": at(lit, -1, f"fracture_risk_{am}"),
        "fracture_risk_active_delithiated_last": at(delit, -1, f"fracture_risk_{am}"),
        "porosity_lithiated_last": at(lit, -1, "porosity"),
        # the last converged step (where a run that failed stopped)
        "contact_last_step": _num(last.get(f"contact_{am}_any")),
        "vm_mean_active_last_step_GPa": _num(last.get(f"vm_mean_{am}_Pa")) / 1e9,
        "fracture_risk_active_last_step": _num(last.get(f"fracture_risk_{am}")),
        "height_change_last": at(lit, -1, "height_change"),
        "proximal_ratio_max": _nanmax(r.get("proximal_energy_ratio") for r in ts),
        # at the states the table reports (the ends of lithiation and delithiation, cycles.csv)
        "proximal_ratio_states_max": _nanmax(r.get("proximal_energy_ratio") for r in cyc),
        "proximal_tolerance": _num((cfg.get("contact") or {}).get("proximal_tolerance", 1e-3)),
    }
    return rec


def _descriptors(cfg_path: Path, phase: str) -> dict:
    """The descriptors of a phase from the run's config (a run still going has none in summary.json)."""
    from creep_cathode.config import ConfigError, load_config
    from creep_cathode.descriptors import descriptors_for_config

    try:
        return descriptors_for_config(load_config(cfg_path))["phases"].get(phase, {})
    except (ConfigError, OSError):
        return {}


def case_folders(sweep_dir: Path) -> list[Path]:
    return sorted(p for p in Path(sweep_dir).iterdir()
                  if p.is_dir() and ((p / "input.toml").exists() or (p / "summary.json").exists()))


# ------------------------------------------------------------------------------- table
def _fmt(v, fmt: str) -> str:
    if isinstance(v, float) and math.isnan(v):
        return "—"
    if fmt == "pct1":
        return f"{100 * v:.1f} %"
    if fmt == "pct0":
        return f"{100 * v:.0f} %"
    if fmt == "th":
        return f"{v:.2f}"
    if fmt == "min":
        return f"{v / 60:.1f}"
    return fmt.format(v)


def markdown(records: list[dict]) -> str:
    head = "| " + " | ".join(h for _, h, _ in COLUMNS) + " |"
    lines = [head, "|" + "---|" * len(COLUMNS)]
    for r in records:
        cells = []
        for k, _, f in COLUMNS:
            c = _fmt(r.get(k, math.nan), f)
            if k == "status" and c != "completed" and r.get("reached"):
                c = f"{c} ({r['reached']})"
            if k == "norton_rate_1_s" and not r.get("creeps", True):
                c = "no creep"
            if k == "homologous_temperature" and r.get("homologous_temperature_bound") == "upper" and c != "—":
                c = "≤ " + c
            cells.append(c)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_csv(records: list[dict], path: Path) -> None:
    keys = list(dict.fromkeys(k for r in records for k in r))
    t = CSVTable(path, [{k: r.get(k, "") for k in keys} for r in records])
    t.flush()


# ------------------------------------------------------------------------------- design map
def design_map(records: list[dict], path: Path) -> Path:
    """One panel per (top side, framework stiffness): volume change (log) against T/T_m, colour = the
    active boundary in contact at full lithiation of the last cycle; labels: material, contact change
    since cycle 1, peak von Mises, fracture risk of the active phase (lithiated / delithiated)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize

    fws = sorted({r["framework_E_GPa"] for r in records}, reverse=True)
    tops = sorted({r["top"] for r in records}, key=lambda t: (t != "roller", t))
    fig, axes = plt.subplots(len(tops), len(fws), figsize=(6.0 * len(fws) + 1.4, 6.0 * len(tops) + 0.8),
                             squeeze=False, sharex=True, sharey=True)
    norm, cmap = Normalize(0.0, 100.0), plt.get_cmap("viridis")
    dv = [r["volume_change"] for r in records if r["volume_change"] > 0]
    xlo, xhi = (min(dv) / 2.5, max(dv) * 2.5) if dv else (1e-3, 3.0)
    xmid = math.sqrt(xlo * xhi)
    th = [r["homologous_temperature"] for r in records if not math.isnan(r["homologous_temperature"])]
    yhi = max(th + [0.5]) * 1.2
    y_unknown = (0.10, 0.035)  # the band of materials without a melting point (no T_H; no creep modelled)
    for i, top in enumerate(tops):
        for j, E in enumerate(fws):
            ax = axes[i][j]
            ax.axhspan(0, 0.135, color="0.93", zorder=0)
            in_band = 0
            ax.axhline(T_H_CREEP, color="0.5", ls="--", lw=0.8)
            ax.text(0.02, 0.98, "dashed: T/T_m = 0.3, creeps above it (Xiong 2024, Fig. 2a)", fontsize=6.5,
                    color="0.4", ha="left", va="top", transform=ax.transAxes)
            if not any(r["framework_E_GPa"] == E and r["top"] == top for r in records):
                ax.text(0.5, 0.5, "no case of this panel run", transform=ax.transAxes, ha="center", fontsize=9,
                        color="0.4")
            for r in (r for r in records if r["framework_E_GPa"] == E and r["top"] == top):
                x = max(r["volume_change"], xlo)
                y = r["homologous_temperature"]
                if math.isnan(y):  # staggered inside the band, so that the labels do not overlap
                    y, in_band = y_unknown[in_band % len(y_unknown)], in_band + 1
                ok = r["status"] == "completed"
                c = r["contact_lithiated_last"]
                has = r["cycles"] > 0 and not math.isnan(c)  # a run that failed later still has its first cycles
                c_face = c if has else r.get("contact_last_step", math.nan)  # else: where it stopped
                face = cmap(norm(100 * c_face)) if not math.isnan(c_face) else "white"
                marker = "v" if r.get("homologous_temperature_bound") == "upper" else "o"
                ax.scatter([x], [y], s=170, c=[face], marker=marker, edgecolors="k" if ok else "red",
                           linewidths=1.0 if ok else 2.0, zorder=3)
                head = r["material"] if ok else f"{r['material']} ({r['status']} after {r['cycles']} lith.)"
                if has:
                    d = 100 * (r["contact_lithiated_last"] - r["contact_lithiated_first"])
                    label = (f"{head}: contact {_fmt(c, 'pct0')} ({d:+.1f} pts)\n"
                             f"peak {r['peak_vm_GPa']:.2g} GPa, "
                             f"FR {_fmt(r['fracture_risk_active_lithiated_last'], 'pct0')} / "
                             f"{_fmt(r['fracture_risk_active_delithiated_last'], 'pct0')}")
                else:
                    label = (f"{r['material']}: failed at {r['reached']}:\ncontact {_fmt(c_face, 'pct0')} there, "
                             f"peak {r['peak_vm_GPa']:.2g} GPa\nFR {_fmt(r.get('fracture_risk_active_last_step'), 'pct0')}"
                             " there")
                states = r.get("proximal_ratio_states_max", math.nan)
                if not math.isnan(states) and states > EQUILIBRIUM_FLAG * r["proximal_tolerance"]:
                    label += f"\nNOT in equilibrium at cycle ends (prox./stored {states:.2g})"
                elif r["proximal_ratio_max"] > EQUILIBRIUM_FLAG * r["proximal_tolerance"]:
                    label += f"\nin equilibrium at cycle ends, not between ({r['proximal_ratio_max']:.2g})"
                right = x > xmid  # label on the side with room
                ax.annotate(label, (x, y), xytext=(-11 if right else 11, 0), textcoords="offset points",
                            fontsize=6.8, va="center", ha="right" if right else "left")
            ax.set_xscale("log")
            ax.set_xlim(xlo, xhi)
            ax.set_ylim(0, yhi)
            side = "roller (fixed thickness)" if top == "roller" else f"{top}\n(stack pressure through a rigid platen)"
            ax.set_title(f"framework {E:g} GPa, top side: {side}", fontsize=9)
    fig.supxlabel("volume change of the active material on lithiation, ΔV/V", fontsize=9)
    fig.supylabel("homologous temperature T/T_m of the active material at the run temperature", fontsize=9)
    sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    cb = fig.colorbar(sm, ax=axes.ravel().tolist(), shrink=0.85)
    cb.set_label("active boundary in contact at full lithiation, last cycle [%]")
    n = max((r["cycles"] for r in records), default=0)
    fig.suptitle(f"Which strategy keeps contact? {n} cycles. contact: active boundary touching any particle at full "
                 "lithiation (pts: change since cycle 1);\nFR: share of the active phase above its strength, lithiated / "
                 "delithiated, last cycle;\n▼: T_m a lower bound; red edge: the run did not finish (coloured by its last step); "
                 "grey band: no T_m known (T/T_m unknown, no creep modelled)",
                 fontsize=8.5)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------- main
def collect(sweep_dir: Path) -> list[dict]:
    records = [case_record(f) for f in case_folders(sweep_dir)]
    write_csv(records, Path(sweep_dir) / "screening.csv")
    atomic_write(Path(sweep_dir) / "screening.md", markdown(records))
    if records:
        design_map(records, Path(sweep_dir) / "design_map.png")
    return records


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", help="sweep output folder")
    ap.add_argument("--sweep", help="run this sweep file into DIR first (creep-cathode sweep; finished cases are skipped)")
    ap.add_argument("--jobs", type=int, default=1, help="parallel cases of the sweep (default 1)")
    a = ap.parse_args(argv)
    rc = 0
    if a.sweep:
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        rc = subprocess.call([sys.executable, "-m", "creep_cathode.cli", "sweep", a.sweep, "-o", a.dir,
                              "--jobs", str(a.jobs)], env=env)
        if rc != 0:  # a case that fails is a result (its row says so); the table and map are still drawn
            print(f"warning: creep-cathode sweep exited {rc}; drawing what there is", file=sys.stderr)
    d = Path(a.dir)
    if not d.is_dir():
        print(f"error: {d}: no such sweep folder", file=sys.stderr)
        return 2
    records = collect(d)
    sys.stdout.write(markdown(records))
    print(f"wrote {d / 'screening.csv'}, {d / 'screening.md'}, {d / 'design_map.png'} ({len(records)} cases)")
    return rc


if __name__ == "__main__":
    sys.exit(main())
