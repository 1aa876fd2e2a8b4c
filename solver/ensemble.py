"""RVE ensembles: the same config over N packings (random seeds), and per-cycle statistics.

`creep-cathode ensemble CONFIG --seeds N -o DIR` runs the config with rve.seed = 1..N (a sweep
over the seed, one run folder per seed, completed runs reused; a seed whose packing cannot be made
is replaced by the next seed after N, so that N packings run) and writes:

- DIR/ensemble.csv: per cycle and state (lithiated / delithiated), for every metric of cycles.csv,
  the mean over the packings, the half-width of its 95 % confidence interval (Student's t with
  n - 1 degrees of freedom: t_{0.975, n-1} s / sqrt(n)) and n;
- DIR/plots/ensemble_contact.png, ensemble_stress.png: means with 95 % bands and the paper's points.

The statistics (`summarise`) are pure and tested on synthetic inputs.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from .metrics import in_state, phases_of


def t_quantile(n: int, p: float = 0.975) -> float:
    """Student's t quantile for n samples (n - 1 degrees of freedom); nan for n < 2."""
    if n < 2:
        return math.nan
    from scipy.stats import t

    return float(t.ppf(p, n - 1))


def mean_ci(values) -> tuple[float, float, int]:
    """(mean, 95 % confidence half-width, n) of the finite values."""
    v = np.asarray([x for x in values if isinstance(x, (int, float)) and math.isfinite(x)], dtype=float)
    n = len(v)
    if n == 0:
        return math.nan, math.nan, 0
    if n == 1:
        return float(v[0]), math.nan, 1
    return float(v.mean()), t_quantile(n) * float(v.std(ddof=1)) / math.sqrt(n), n


def summarise(runs: list[list[dict]]) -> list[dict]:
    """Per (cycle, state) statistics over runs (each: the rows of one run's cycles.csv). A row per
    (cycle, state) that at least one run reached: cycle, state, and for every numeric metric
    column c: c_mean, c_ci95 (half-width), c_n."""
    keys = []
    for rows in runs:
        for r in rows:
            k = (int(r["cycle"]), r["state"])
            if k not in keys:
                keys.append(k)
    cols = [c for c in (runs[0][0] if runs and runs[0] else {})
            if c not in ("cycle", "state", "step", "time_s") and not c.startswith("theta_")]
    out = []
    for cyc, state in sorted(keys, key=lambda k: (k[0], k[1] != "lithiated")):
        row = {"cycle": cyc, "state": state}
        sel = [next((r for r in rows if int(r["cycle"]) == cyc and r["state"] == state), None) for rows in runs]
        for c in cols:
            m, h, n = mean_ci([r[c] for r in sel if r is not None and c in r])
            row[f"{c}_mean"], row[f"{c}_ci95"], row[f"{c}_n"] = m, h, n
        out.append(row)
    return out


def plot_bands(summary: list[dict], folder, paper: dict | None = None) -> list[Path]:
    """Contact ratios and mean von Mises stresses at full lithiation vs cycle: ensemble means with
    95 % bands, the paper's points where it has them. Returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .reference import PAPER

    paper = PAPER if paper is None else paper
    lit = in_state(summary, "lithiated")
    if not lit:
        return []
    folder = Path(folder)
    (folder / "plots").mkdir(parents=True, exist_ok=True)
    phases = phases_of({k[:-len("_mean")]: 0 for k in lit[0] if k.endswith("_mean")})
    c = [r["cycle"] for r in lit]
    files = []
    for kind, cols, scale, ylabel in (
            ("contact", [f"contact_{a}_{b}" for a in phases for b in phases], 100, "contact ratio at full lithiation [%]"),
            ("stress", [f"vm_mean_{p}_Pa" for p in phases], 1e-9, "mean von Mises at full lithiation [GPa]")):
        if not any(f"{col}_mean" in lit[0] for col in cols):
            continue
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for col in cols:
            m = np.array([r.get(f"{col}_mean", np.nan) for r in lit], float)
            h = np.array([r.get(f"{col}_ci95", np.nan) for r in lit], float)
            if not np.any(np.nan_to_num(m)):
                continue
            line, = ax.plot(c, m * scale, "o-", ms=3, label=col.replace("contact_", "").replace("vm_mean_", "").replace("_Pa", ""))
            ax.fill_between(c, (m - h) * scale, (m + h) * scale, color=line.get_color(), alpha=0.2, lw=0)
            if col in paper:
                ax.plot(list(paper[col]), [v * scale for v in paper[col].values()], "s", mfc="none",
                        color=line.get_color(), ms=8, label=f"{line.get_label()} paper")
        n = max((r.get(f"{cols[0]}_n", 0) for r in lit), default=0)
        ax.set_title(f"ensemble of {n} packings: mean and 95 % interval")
        ax.set_xlabel("cycle")
        ax.set_ylabel(ylabel)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        fig.tight_layout()
        p = folder / "plots" / f"ensemble_{kind}.png"
        fig.savefig(p, dpi=120)
        plt.close(fig)
        files.append(p)
    return files


#: the Fig. 4 quantities the ensemble table reports (fully lithiated), with display scale and unit
TABLE = (("contact_Se_Se", 100, "%"), ("contact_MSe_Se", 100, "%"), ("contact_Se_any", 100, "%"),
         ("vm_mean_Se_Pa", 1e-6, "MPa"), ("vm_mean_MSe_Pa", 1e-6, "MPa"),
         ("porosity", 100, "%"), ("height_change", 100, "%"))


def criterion(row: dict, contact_points: float = 0.03, stress_rel: float = 0.05) -> dict:
    """Whether an ensemble row's 95 % half-widths meet the RVE criterion of issue 14: <= 3 points
    for contact ratios, <= 5 % of the mean for mean stresses. {column: (half-width, limit, ok)}."""
    out = {}
    for k, v in row.items():
        if not k.endswith("_ci95"):
            continue
        c = k[:-len("_ci95")]
        m = row.get(f"{c}_mean", math.nan)
        if c.startswith("contact_"):
            lim = contact_points
        elif c.startswith("vm_mean_"):
            lim = stress_rel * abs(m)
        else:
            continue
        out[c] = (v, lim, bool(math.isfinite(v) and v <= lim))
    return out


def table_md(summary: list[dict], paper: dict | None = None, label: str = "") -> str:
    """A Markdown table: mean ± 95 % half-width at full lithiation of the first and last cycle (and
    cycle 20 where reached) of the TABLE quantities present, next to the paper's numbers."""
    from .reference import PAPER

    paper = PAPER if paper is None else paper
    lit = in_state(summary, "lithiated")
    if not lit:
        return "(no fully lithiated state reached)\n"
    by = {r["cycle"]: r for r in lit}
    cycles = sorted({min(by), max(by)} | ({20} & set(by)))
    n = min((r.get(f"{TABLE[0][0]}_n", 0) for r in lit), default=0)
    head = f"| quantity (fully lithiated) | " + " | ".join(f"cycle {c}" for c in cycles)
    head += " | paper, cycle " + ", ".join(str(c) for c in cycles if c in (1, 20)) + " |\n"
    lines = [head, "|---" * (len(cycles) + 2) + "|\n"]
    for col, scale, unit in TABLE:
        if f"{col}_mean" not in by[cycles[0]]:
            continue
        cells = []
        for c in cycles:
            m, h, k = by[c][f"{col}_mean"], by[c][f"{col}_ci95"], by[c][f"{col}_n"]
            s = f"{m * scale:.1f}" if math.isfinite(m) else "—"
            if math.isfinite(h):
                s += f" ± {h * scale:.1f}"
            if k != n:
                s += f" (n={k})"
            cells.append(s)
        p = paper.get(col, {})
        ref = ", ".join(f"{p[c] * scale:.1f}" for c in cycles if c in p) or "—"
        lines.append(f"| {col} [{unit}] | " + " | ".join(cells) + f" | {ref} |\n")
    note = f"{label}mean ± 95 % half-width (Student t) over n = {n} packings\n\n"
    return note + "".join(lines)


def write_summary(out, folders: list[Path], unpackable_seeds=()) -> dict:
    """Read the cycles.csv of every run folder that has one, write out/ensemble.csv, ensemble.md and
    the band plots; returns {"summary", "files", "runs"}. `unpackable_seeds`: seeds left out because
    their packing cannot be made (named in ensemble.md)."""
    from .output import CSVTable

    out = Path(out)
    runs, used = [], []
    for f in folders:
        p = Path(f) / "cycles.csv"
        if p.exists():
            rows = CSVTable.read(p)
            if rows:
                runs.append(rows)
                used.append(Path(f).name)
    summary = summarise(runs)
    files = []
    if summary:
        keys = list(dict.fromkeys(k for r in summary for k in r))
        t = CSVTable(out / "ensemble.csv", [{k: r.get(k, "") for k in keys} for r in summary])
        t.flush()
        files.append(out / "ensemble.csv")
        md = out / "ensemble.md"
        skipped = (f"\nseeds whose packing cannot be made (replaced by later seeds): "
                   f"{', '.join(map(str, unpackable_seeds))}\n" if unpackable_seeds else "")
        md.write_text(table_md(summary) + "\nruns: " + ", ".join(used) + "\n" + skipped)
        files.append(md)
        files += plot_bands(summary, out)
    return {"summary": summary, "files": files, "runs": used}


def run_ensemble(config, out, seeds: int, overrides=(), jobs: int = 1, first_seed: int = 1,
                 progress_every: float = 60.0) -> dict:
    """Run `config` (with `overrides`) over `seeds` packings as a sweep over rve.seed in `out` (one
    folder per seed; completed runs are reused, unfinished ones rerun), then write the statistics
    (write_summary). The seeds are first_seed .. first_seed + seeds - 1; a seed whose packing cannot
    be made (PackingError: the draw of sizes jams before the requested fractions) is replaced by the
    next seed after the last, up to `seeds` replacements, so that n = `seeds` wherever the config
    can be packed at all (if none of the first `seeds` can, none is added: the request itself is too
    dense). Returns write_summary's dict plus "code" (0 when `seeds` packings completed and every
    other failure was a packing that cannot be made; the sweep's exit code otherwise),
    "unpackable" (the seeds replaced) and "seeds" (the seeds tried)."""
    import argparse
    import json as _json

    from . import config as cfgmod
    from .sweep import _summary, case_folder, load_sweep, run_sweep, unpackable

    cfg = cfgmod.load_config(config, list(overrides))
    if cfg.rve.kind != "random":
        raise cfgmod.ConfigError(f"rve.kind: an ensemble needs random packings (got {cfg.rve.kind!r}: "
                                 "every seed would give the same RVE)")
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    values = list(range(first_seed, first_seed + seeds))
    sweep = out / "ensemble_sweep.toml"
    while True:
        # the seeds are only ever appended, so a case keeps its folder (NNN_seed=K) from round to round
        sweep.write_text(f"base = {_json.dumps(str(Path(config).resolve()))}\n"
                         f"set = {_json.dumps(list(overrides))}\n\n"
                         f"[[axis]]\nkey = \"rve.seed\"\nvalues = {_json.dumps(values)}\n")
        code = run_sweep(argparse.Namespace(sweep=str(sweep), out=str(out), jobs=jobs, ranks_per_case=1,
                                            slurm=False, case=None, progress_every=progress_every,
                                            unpackable_replaced=True))
        sw = load_sweep(sweep)
        folders = [case_folder(out, c) for c in sw["cases"]]
        bad = [v for v, c, f in zip(values, sw["cases"], folders) if unpackable(f, c["config"])]
        missing = seeds - (len(values) - len(bad))
        if not bad or missing <= 0 or len(bad) == len(values) or len(values) >= 2 * seeds:
            break
        add = list(range(values[-1] + 1, values[-1] + 1 + min(missing, 2 * seeds - len(values))))
        print(f"seed{'s' if len(bad) > 1 else ''} {', '.join(map(str, bad))}: the packing cannot be made; "
              f"adding seed{'s' if len(add) > 1 else ''} {', '.join(map(str, add))}", flush=True)
        values += add
    res = write_summary(out, folders, unpackable_seeds=bad)
    others = [f for c, f in zip(sw["cases"], folders)
              if _summary(f).get("status") != "completed" and not unpackable(f, c["config"])]
    res["code"] = 0 if (code == 0 or (not others and len(res["runs"]) >= seeds)) else code
    if res["code"] and not others:  # the sweep left the unpackable seeds to us
        print(f"error: {len(res['runs'])} of {seeds} packings: seed{'s' if len(bad) > 1 else ''} "
              f"{', '.join(map(str, bad))} cannot be packed and no further seed could replace "
              f"{'them' if len(bad) > 1 else 'it'}", file=sys.stderr, flush=True)
    res["unpackable"] = bad
    res["seeds"] = values
    return res


# ---------------------------------------------------------------------- RVE size study
def size_rows(ensembles: dict, cycle: int | None = None, state: str = "lithiated",
              columns=None) -> list[dict]:
    """The RVE-size study of issue 14: per box size, the ensemble's 95 % half-widths at one
    (cycle, state) against the criterion (`criterion`: <= 3 points for contact ratios, <= 5 % of
    the mean for mean stresses).

    `ensembles` maps the box size [m] to its summary (the rows of ensemble.csv). `cycle` None: the
    last cycle that every size reached in `state`. `columns`: judge only these (default every
    contact ratio and mean stress). Returns one row per size, smallest first:
    {"size", "cycle", "n", "columns": {column: (mean, half-width, limit, ok)}, "ok"} ("ok": every
    criterion column met; False when a half-width is undefined, n < 2)."""
    sel = {s: {int(r["cycle"]): r for r in rows if r["state"] == state} for s, rows in ensembles.items()}
    sel = {s: by for s, by in sel.items() if by}
    if not sel:
        return []
    if cycle is None:
        cycle = min(max(by) for by in sel.values())
    out = []
    for size in sorted(sel):
        row = sel[size].get(cycle)
        if row is None:
            continue
        crit = {c: v for c, v in criterion(row).items() if columns is None or c in columns}
        cols = {c: (row.get(f"{c}_mean", math.nan), hw, lim, ok) for c, (hw, lim, ok) in crit.items()}
        n = min((int(row.get(f"{c}_n", 0) or 0) for c in crit), default=0)
        out.append({"size": float(size), "cycle": cycle, "n": n, "columns": cols,
                    "ok": bool(cols) and all(v[3] for v in cols.values())})
    return out


def smallest_rve(rows: list[dict]) -> float | None:
    """The smallest box size [m] whose ensemble meets every criterion (`size_rows`), or None."""
    return next((r["size"] for r in rows if r["ok"]), None)


def size_md(rows: list[dict]) -> str:
    """Markdown: per box size, mean ± 95 % half-width of the criterion columns, each marked by
    whether it meets the criterion, and the smallest size that meets all of them."""
    if not rows:
        return "(no ensemble reached a common state)\n"
    cols = list(dict.fromkeys(c for r in rows for c in r["columns"]))
    unit = {c: (100, "%") if c.startswith("contact_") else (1e-6, "MPa") for c in cols}
    head = "| box | n | " + " | ".join(f"{c} [{unit[c][1]}]" for c in cols) + " | all met |\n"
    lines = [f"cycle {rows[0]['cycle']}, fully lithiated; criterion: 95 % half-width <= 3 points (contact "
             f"ratios), <= 5 % of the mean (mean stresses); yes/no per value\n\n", head,
             "|---" * (len(cols) + 3) + "|\n"]
    for r in rows:
        cells = []
        for c in cols:
            m, h, _, ok = r["columns"].get(c, (math.nan, math.nan, math.nan, False))
            s = unit[c][0]
            cells.append(f"{m * s:.1f} ± {h * s:.1f} ({'yes' if ok else 'no'})" if math.isfinite(h)
                         else f"{m * s:.1f} (n < 2)")
        lines.append(f"| {r['size'] * 1e6:g} µm | {r['n']} | " + " | ".join(cells) + f" | {'yes' if r['ok'] else 'no'} |\n")
    best = smallest_rve(rows)
    lines.append("\nsmallest box meeting every criterion: "
                 + (f"{best * 1e6:g} µm\n" if best is not None else "none of these\n"))
    return "".join(lines)
