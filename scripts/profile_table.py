"""Markdown table of runs against a reference run: Newton iterations per step and the Fig. 4 metrics at
the end of the first lithiation (and each later one).

    .venv/bin/python scripts/profile_table.py runs/lith1_base runs/lith1_norelax ...
"""
import sys

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from newton_profile import summarise  # noqa: E402

KEYS = (("contact_Se_Se", "Se-Se", 100, "pt"), ("contact_Se_MSe", "Se-MSe", 100, "pt"),
        ("contact_MSe_Se", "MSe-Se", 100, "pt"), ("contact_Se_any", "Se-any", 100, "pt"),
        ("vm_mean_Se_Pa", "vM Se MPa", 1e-6, "%"), ("vm_mean_MSe_Pa", "vM MSe MPa", 1e-6, "%"),
        ("porosity", "porosity %", 100, "pt"))


def main(runs, cycle=1):
    outs = [summarise(r) for r in runs]
    ref = outs[0]
    hdr = ("| run | steps | Newton its | its/step mean / median / max | steps > 25 | rejected | proximal its/step | "
           "projected its | s/step (noisy) | " + " | ".join(k[1] for k in KEYS) + " |")
    print(hdr)
    print("|" + "---|" * (hdr.count("|") - 1))
    rm = next(m for m in ref["metrics"] if m["cycle"] == cycle)
    for o in outs:
        m = next((m for m in o["metrics"] if m["cycle"] == cycle), None)
        cells = []
        for k, _, s, unit in KEYS:
            if m is None:
                cells.append("—")
                continue
            v = m[k] * s
            if o is ref:
                cells.append(f"{v:.2f}" if unit == "pt" else f"{v:.1f}")
            elif unit == "pt":
                cells.append(f"{v:.2f} ({v - rm[k] * s:+.2f})")
            else:
                cells.append(f"{v:.1f} ({100 * (m[k] / rm[k] - 1):+.1f} %)")
        name = o["run"].split("/")[-1]
        print(f"| {name} | {o['steps']} | {o['its_total']} | {o['its_per_step_mean']:.1f} / {o['its_per_step_median']:.0f} / "
              f"{o['its_per_step_max']} | {o['steps_over_25']} | {o['rejected_attempts']} | {o['proximal_per_step']:.1f} | "
              f"{o['iteration_kinds'].get('projected', 0)} | {o['time_per_step']:.1f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
