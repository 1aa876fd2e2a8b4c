"""Design screening: which strategy keeps contact? Table and design map from a sweep folder.

    .venv/bin/python scripts/screening.py runs/screening --sweep configs/sweep_screening.toml --jobs 2
    .venv/bin/python scripts/screening.py runs/screening          # tables and map of a finished sweep

With `--sweep`, first runs `creep-cathode sweep SWEEP -o DIR --jobs N` (finished cases are skipped),
then reads every case folder of DIR and writes

  DIR/screening.csv      one row per case, every number below
  DIR/screening.md       the markdown table of the README
  DIR/design_map.png     the design map (in the spirit of Xiong 2024, Fig. 2a): volume change of the
                         active material against its homologous temperature T/T_m (creep propensity),
                         one panel per framework stiffness and stack condition, each case coloured by
                         the active boundary still in contact after the last cycle, annotated with the
                         peak von Mises stress and the fracture risk

The active phase is the config's active one (configs/screening.toml calls it AM, the framework FW);
a case's material comes from its `source` ("library <name>: ..."), its T/T_m, volume change and
whether it creeps from summary.json's descriptors, its Norton constants from its config.toml.

Quantities (per case):
  contact retained   contact_<AM>_any at the end of the last delithiation (all particles start apart:
                     0 at t = 0, so what is left once the material has shrunk back is what cycling built)
  contact lithiated  contact_<AM>_any at the end of the first and of the last lithiation
  peak stress        largest von Mises stress of any phase at any step (timeseries.csv)
  fracture risk      largest share of a phase above its strength at any step (fracture_risk_*, timeseries.csv)
  Norton rate        A (sigma / sigma_ref)^n at sigma = the active phase's mean von Mises at the end of the
                     first lithiation, with the Arrhenius factor at the run temperature (0: no creep)
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

from creep_cathode.metrics import in_state, phases_of
from creep_cathode.output import CSVTable, atomic_write

R_GAS = 8.314462618
T_H_CREEP = 0.3  # Xiong 2024, Fig. 2a: T_H > 0.3 creeps, T_H < 0.3 is brittle

COLUMNS = [  # (key, markdown header, format) of the markdown table; the CSV has every key of the record
    ("material", "active material", "{}"),
    ("framework_E_GPa", "framework E [GPa]", "{:.0f}"),
    ("top", "top side", "{}"),
    ("status", "status", "{}"),
    ("volume_change", "ΔV", "pct1"),
    ("homologous_temperature", "T/T_m", "th"),
    ("norton_rate_1_s", "Norton rate [1/s]", "{:.1e}"),
    ("contact_lithiated_first", "AM in contact, lith. c1", "pct1"),
    ("contact_lithiated_last", "lith. last", "pct1"),
    ("contact_retained", "retained (delith. last)", "pct1"),
    ("fw_covered_last", "FW covered by AM, lith. last", "pct1"),
    ("vm_mean_active_last_GPa", "mean vM AM [GPa]", "{:.3f}"),
    ("peak_vm_GPa", "peak vM [GPa]", "{:.2f}"),
    ("fracture_risk_active_max", "fracture risk AM", "pct1"),
    ("fracture_risk_framework_max", "fracture risk FW", "pct1"),
    ("height_change_last", "thickness change", "pct1"),
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
    desc = (summary.get("descriptors") or {}).get("phases", {}).get(am, {})
    T = (cfg.get("cycling") or {}).get("temperature", 343.15)
    cyc = CSVTable.read(folder / "cycles.csv")
    ts = CSVTable.read(folder / "timeseries.csv")
    lit, delit = in_state(cyc, "lithiated"), in_state(cyc, "delithiated")
    phases = phases_of(ts[0]) if ts else [am, fw]

    def at(rows, i, key):
        return _num(rows[i].get(key)) if rows else math.nan

    vm1 = at(lit, 0, f"vm_mean_{am}_Pa")
    rec = {
        "case": folder.name,
        "material": _library_name(mats.get(am, {})) or am,
        "framework": _library_name(mats.get(fw, {})) or fw,
        "framework_E_GPa": _num(mats.get(fw, {}).get("youngs_modulus")) / 1e9,
        "top": _top(cfg.get("boundary", {})),
        "status": summary.get("status", "not run"),
        "reason": summary.get("reason", ""),
        "cycles": int(lit[-1]["cycle"]) if lit else 0,
        "wall_time_s": _num(summary.get("wall_time_s")),
        "volume_change": _num(desc.get("volume_change", _num(mats.get(am, {}).get("volume_ratio_lithiated")) - 1)),
        "homologous_temperature": _num(desc.get("homologous_temperature")),
        "homologous_temperature_bound": desc.get("homologous_temperature_bound", ""),
        "creeps": bool(desc.get("creeps", bool(mats.get(am, {}).get("creep")))),
        "norton_rate_1_s": norton_rate(mats.get(am, {}).get("creep"), vm1, T),
        "contact_lithiated_first": at(lit, 0, f"contact_{am}_any"),
        "contact_lithiated_last": at(lit, -1, f"contact_{am}_any"),
        "contact_retained": at(delit, -1, f"contact_{am}_any"),
        "fw_covered_last": at(lit, -1, f"contact_{fw}_{am}"),
        "vm_mean_active_first_GPa": vm1 / 1e9,
        "vm_mean_active_last_GPa": at(lit, -1, f"vm_mean_{am}_Pa") / 1e9,
        "peak_vm_GPa": _nanmax(r.get(f"vm_max_{p}_Pa") for r in ts for p in phases) / 1e9,
        "fracture_risk_active_max": _nanmax(r.get(f"fracture_risk_{am}") for r in ts),
        "fracture_risk_framework_max": _nanmax(r.get(f"fracture_risk_{fw}") for r in ts),
        "fracture_risk_active_lithiated_last": at(lit, -1, f"fracture_risk_{am}"),
        "fracture_risk_active_delithiated_last": at(delit, -1, f"fracture_risk_{am}"),
        "porosity_lithiated_last": at(lit, -1, "porosity"),
        "height_change_last": at(lit, -1, "height_change"),
    }
    return rec


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
    """One panel per (framework stiffness, top side): volume change (log) against T/T_m, colour =
    contact retained after the last cycle; labels: material, peak von Mises, fracture risk."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize

    fws = sorted({r["framework_E_GPa"] for r in records}, reverse=True)
    tops = sorted({r["top"] for r in records}, key=lambda t: (t != "roller", t))
    fig, axes = plt.subplots(len(fws), len(tops), figsize=(5.2 * len(tops), 4.3 * len(fws)), squeeze=False,
                             sharex=True, sharey=True)
    norm, cmap = Normalize(0.0, 100.0), plt.get_cmap("viridis")
    dv = [r["volume_change"] for r in records if r["volume_change"] > 0]
    xlo, xhi = (min(dv) / 2, max(dv) * 2.5) if dv else (1e-3, 3.0)
    th = [r["homologous_temperature"] for r in records if not math.isnan(r["homologous_temperature"])]
    yhi = max(th + [0.5]) * 1.15
    y_unknown = 0.06  # the band of materials without a melting point (no T_H; no creep modelled)
    for i, E in enumerate(fws):
        for j, top in enumerate(tops):
            ax = axes[i][j]
            ax.axhspan(0, 0.12, color="0.93", zorder=0)
            xmid = math.sqrt(xlo * xhi)
            ax.text(xmid, 0.01, "no T_m known:\nT/T_m unknown, no creep modelled", fontsize=6.5,
                    color="0.4", ha="center", va="bottom")
            ax.axhline(T_H_CREEP, color="0.5", ls="--", lw=0.8)
            ax.text(xmid, T_H_CREEP + 0.01, "T/T_m = 0.3: creeps above\n(Xiong 2024, Fig. 2a)", fontsize=6.5,
                    color="0.4", ha="center")
            for r in (r for r in records if r["framework_E_GPa"] == E and r["top"] == top):
                x = max(r["volume_change"], xlo)
                y = r["homologous_temperature"] if not math.isnan(r["homologous_temperature"]) else y_unknown
                ok = r["status"] == "completed"
                c = r["contact_retained"]
                face = cmap(norm(100 * c)) if ok and not math.isnan(c) else "white"
                marker = "v" if r.get("homologous_temperature_bound") == "upper" else "o"
                ax.scatter([x], [y], s=160, c=[face], marker=marker, edgecolors="k" if ok else "red",
                           linewidths=1.0 if ok else 2.0, zorder=3)
                label = (f"{r['material']}\npeak {r['peak_vm_GPa']:.2g} GPa\n"
                         f"FR {_fmt(r['fracture_risk_active_max'], 'pct0')}" if ok else f"{r['material']}\n{r['status']}")
                right = x > xmid  # label on the side with room
                ax.annotate(label, (x, y), xytext=(-10 if right else 10, 0), textcoords="offset points", fontsize=7,
                            va="center", ha="right" if right else "left")
            ax.set_xscale("log")
            ax.set_xlim(xlo, xhi)
            ax.set_ylim(0, yhi)
            ax.set_title(f"framework {E:g} GPa, top: {top}", fontsize=9)
    fig.supxlabel("volume change of the active material on lithiation, ΔV/V", fontsize=9)
    fig.supylabel("homologous temperature T/T_m of the active material (creep propensity)", fontsize=9)
    sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    cb = fig.colorbar(sm, ax=axes.ravel().tolist(), shrink=0.8)
    cb.set_label("active boundary in contact after the last delithiation [%]")
    n = max((r["cycles"] for r in records), default=0)
    fig.suptitle(f"Which strategy keeps contact? ({n} cycles; ▼: T_m a lower bound, so T/T_m an upper one; "
                 "FR: largest share of the active phase above its strength)", fontsize=9)
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
    if a.sweep:
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        rc = subprocess.call([sys.executable, "-m", "creep_cathode.cli", "sweep", a.sweep, "-o", a.dir,
                              "--jobs", str(a.jobs)], env=env)
        if rc != 0:
            print(f"error: creep-cathode sweep exited {rc}", file=sys.stderr)
            return rc
    d = Path(a.dir)
    if not d.is_dir():
        print(f"error: {d}: no such sweep folder", file=sys.stderr)
        return 2
    records = collect(d)
    sys.stdout.write(markdown(records))
    print(f"wrote {d / 'screening.csv'}, {d / 'screening.md'}, {d / 'design_map.png'} ({len(records)} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
