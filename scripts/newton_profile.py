"""Summarise the Newton profile of a run (CREEP_CATHODE_PROFILE=1 writes RUN/profile.jsonl).

    CREEP_CATHODE_PROFILE=1 .venv/bin/creep-cathode run configs/se_mse.toml -o runs/x ...
    .venv/bin/python scripts/newton_profile.py runs/x [runs/y ...] [--json out.json]

Per run: Newton iterations per accepted step (all solves of the step, rejected attempts included,
as `newton_iterations_total / steps`), split by solve (main, continuation, proximal re-solves,
rejected attempts), by line-search outcome (full step, CCD-capped, Armijo backtracking, projected
Hessian, steepest descent, residual fallback), by Newton phase (globalisation = up to the last
iteration with alpha < 1; tail = the iterations after it), steps with / without new contacts,
time split, and the Fig. 4 metrics at the end of each lithiation (cycles.csv).
"""

from __future__ import annotations

import csv
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

METRICS = ("contact_Se_Se", "contact_Se_MSe", "contact_MSe_Se", "contact_Se_any", "vm_mean_Se_Pa", "vm_mean_MSe_Pa",
           "porosity")


def load(run):
    run = Path(run)
    recs = [json.loads(line) for line in open(run / "profile.jsonl")]
    summ = json.load(open(run / "summary.json")) if (run / "summary.json").exists() else {}
    cyc = list(csv.DictReader(open(run / "cycles.csv"))) if (run / "cycles.csv").exists() else []
    return recs, summ, cyc


def summarise(run, kinds=None):
    recs, summ, cyc = load(run)
    if kinds:
        recs = [r for r in recs if r.get("kind") in kinds]
    out = {"run": str(run), "steps": len(recs), "status": summ.get("status"), "wall_s": summ.get("wall_time_s")}
    per_step, main, cont, prox, rej, nprox = [], [], [], [], [], []
    kinds_c = Counter()
    glob, tail = 0, 0
    halv = []
    amax_capped = []
    newc, its_newc, its_nonew = [], [], []
    tsum = Counter()
    for r in recs:
        sol = r["solves"]
        m = sum(s["its"] for s in sol if s["phase"] == "main")
        c = sum(s["its"] for s in sol if s["phase"] == "continuation")
        p = sum(s["its"] for s in sol if s["phase"] == "proximal")
        j = sum(a["its"] for a in r["attempts"])
        main.append(m)
        cont.append(c)
        prox.append(p)
        rej.append(j)
        nprox.append(sum(1 for s in sol if s["phase"] == "proximal"))
        tot = m + c + p + j
        per_step.append(tot)
        allsolves = sol + [s for a in r["attempts"] for s in a["solves"]]
        for s in allsolves:
            recs_it = s["records"]
            last_short = -1
            for k, it in enumerate(recs_it):
                if "kind" not in it:
                    continue
                kinds_c[it["kind"]] += 1
                if it["projected"]:
                    kinds_c["projected"] += 1
                if it["sd"]:
                    kinds_c["steepest_descent"] += 1
                if it["residual_step"]:
                    kinds_c["residual_step"] += 1
                if it["kind"] == "armijo":
                    halv.append(it["halvings"])
                if it["amax"] < 1.0:
                    amax_capped.append(it["amax"])
                if it["alpha"] < 1.0:
                    last_short = k
            n_it = s["its"]
            glob += last_short + 1
            tail += n_it - (last_short + 1)
            for k, v in s["timers"].items():
                tsum["newton_" + k] += v
        newc.append(r["new_vertices"])
        (its_newc if r["new_vertices"] > 0 else its_nonew).append(tot)
        for k, v in r["timers"].items():
            tsum[k] += v
    a = np.array(per_step) if per_step else np.zeros(1)
    out.update({
        "its_total": int(a.sum()), "its_per_step_mean": float(a.mean()), "its_per_step_median": float(np.median(a)),
        "its_per_step_max": int(a.max()), "steps_over_25": int((a > 25).sum()),
        "main_per_step": float(np.mean(main)), "continuation_per_step": float(np.mean(cont)),
        "proximal_per_step": float(np.mean(prox)), "proximal_resolves_per_step": float(np.mean(nprox)),
        "rejected_its_per_step": float(np.mean(rej)),
        "rejected_attempts": int(sum(len(r["attempts"]) for r in recs)),
        "hist": np.histogram(a, bins=[0, 3, 6, 10, 15, 20, 25, 30, 40, 60, 100, 1000])[0].tolist(),
        "iteration_kinds": dict(kinds_c),
        "globalisation_its": glob, "tail_its": tail,
        "armijo_halvings_mean": float(np.mean(halv)) if halv else 0.0,
        "ccd_amax_median": float(np.median(amax_capped)) if amax_capped else 1.0,
        "steps_with_new_contacts": len(its_newc), "its_steps_new_contacts": float(np.mean(its_newc)) if its_newc else 0,
        "its_steps_no_new_contacts": float(np.mean(its_nonew)) if its_nonew else 0,
        "contacts_end": recs[-1]["contacts_end"] if recs else 0,
        "pred_used": sum(1 for r in recs if r["pred"]["used"]),
        "pred_capped": sum(1 for r in recs if r["pred"]["used"] and r["pred"]["alpha"] < 1.0),
        "time": {k: round(v, 2) for k, v in sorted(tsum.items())},
    })
    wall = tsum.get("wall", 0.0)
    out["time_per_step"] = wall / max(1, len(recs))
    lit = [row for row in cyc if row["state"] == "lithiated"]
    out["metrics"] = [{k: float(row[k]) for k in METRICS if k in row} | {"cycle": int(row["cycle"])} for row in lit]
    return out


def fmt(o):
    lines = [f"== {o['run']} ({o['status']}, {o['steps']} steps, {o['wall_s'] and round(o['wall_s'], 1)} s)"]
    lines.append(f"  Newton its: total {o['its_total']}, per step mean {o['its_per_step_mean']:.1f} median "
                 f"{o['its_per_step_median']:.0f} max {o['its_per_step_max']}, steps > 25: {o['steps_over_25']}")
    lines.append(f"  per step: main {o['main_per_step']:.1f}, continuation {o['continuation_per_step']:.1f}, proximal "
                 f"{o['proximal_per_step']:.1f} ({o['proximal_resolves_per_step']:.2f} re-solves), rejected attempts "
                 f"{o['rejected_its_per_step']:.1f} ({o['rejected_attempts']} attempts)")
    lines.append(f"  histogram [0,3,6,10,15,20,25,30,40,60,100,..]: {o['hist']}")
    lines.append(f"  iteration kinds: {o['iteration_kinds']}; Armijo halvings mean {o['armijo_halvings_mean']:.2f}; "
                 f"CCD cap median {o['ccd_amax_median']:.3g}")
    lines.append(f"  globalisation its (<= last alpha<1) {o['globalisation_its']}, quadratic tail {o['tail_its']}")
    lines.append(f"  steps with new contacts {o['steps_with_new_contacts']}: {o['its_steps_new_contacts']:.1f} its/step; "
                 f"without: {o['its_steps_no_new_contacts']:.1f}; collisions at end {o['contacts_end']}; predictor used "
                 f"{o['pred_used']} (CCD-capped {o['pred_capped']})")
    lines.append(f"  time per step {o['time_per_step']:.2f} s; split {o['time']}")
    for m in o["metrics"]:
        lines.append("  lithiated: " + ", ".join(f"{k} {v:.4g}" for k, v in m.items()))
    return "\n".join(lines)


if __name__ == "__main__":
    args = sys.argv[1:]
    js = None
    kinds = None
    if "--json" in args:
        i = args.index("--json")
        js = args[i + 1]
        del args[i:i + 2]
    if "--kind" in args:
        i = args.index("--kind")
        kinds = args[i + 1].split(",")
        del args[i:i + 2]
    outs = [summarise(r, kinds) for r in args]
    for o in outs:
        print(fmt(o))
    if js:
        json.dump(outs, open(js, "w"), indent=1)
