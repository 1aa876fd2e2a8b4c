"""Verification plot: Norton relaxation of a free Se block vs the closed form (README figure).

A block with left/bottom rollers and free right/top sides is lithiated quickly (1 s) to
theta = 0.01 and then rested. The out-of-plane stress is uniaxial with eps_33 = 0, so
    d sigma/dt = -E A (sigma/sigma_ref)^n
    sigma(t) = [sigma0^(1-n) + (n-1) E A sigma_ref^(-n) t]^(1/(1-n))   (n > 1),  sigma0 exp(-E A t/sigma_ref) (n = 1).

    .venv/bin/python scripts/plot_relaxation.py [-o docs/img/norton_relaxation.png]
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np

from creep_cathode.config import validate
from creep_cathode.output import CSVTable
from creep_cathode.simulation import Simulation, prepare_outdir

E, NU, A, SREF = 10e9, 0.32, 1e-4, 100e6


def exact(s0, n, t):
    if n == 1:
        return s0 * np.exp(-E * A / SREF * t)
    return (s0 ** (1 - n) + (n - 1) * E * A * SREF ** (-n) * t) ** (1 / (1 - n))


def simulate(n, folder):
    cfg = validate({
        "rve": {"kind": "block", "phase": "Se", "width": 4e-6, "height": 4e-6, "mesh_size": 1e-6},
        "boundary": {"left": "roller", "bottom": "roller", "right": "free", "top": "free"},
        "materials": {"Se": {"active": True, "youngs_modulus": E, "poisson_ratio": NU,
                             "volume_ratio_lithiated": 1.98, "creep": {"A": A, "n": n, "sigma_ref": SREF}}},
        "cycling": {"protocol": ["Lithiate at 36C to 0.01", "Rest for 4 hours"], "cycles": 1},
        "solver": {"dt_initial": 1.0, "dt_max": 120.0, "max_creep_increment": 1e-4, "max_theta_increment": 0.5},
        "output": {"fields": "none", "plots": False, "progress": False},
    })
    prepare_outdir(folder, cfg)
    Simulation(cfg, folder).initialise().run()
    ts = CSVTable.read(Path(folder) / "timeseries.csv")
    rest = [r for r in ts if r["time_s"] >= 1.0 - 1e-9]
    t = np.array([r["time_s"] for r in rest]) - rest[0]["time_s"]
    s = -np.array([r["s33_mean_Se_Pa"] for r in rest])
    return t, s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-o", "--out", default=str(Path(__file__).resolve().parents[1] / "docs/img/norton_relaxation.png"))
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    with tempfile.TemporaryDirectory() as tmp:
        for n, c in zip((1, 3, 7), ("C0", "C1", "C2")):
            t, s = simulate(n, Path(tmp) / f"n{n}")
            tt = np.linspace(0, t[-1], 400)
            ax.plot(tt / 3600, exact(s[0], n, tt) / 1e6, "-", color=c, label=f"closed form, n = {n}")
            ax.plot(t / 3600, s / 1e6, "o", ms=3, color=c, mfc="none", label=f"creep-cathode, n = {n}")
            err = np.max(np.abs(s - exact(s[0], n, t))) / s[0]
            print(f"n = {n}: {len(t)} steps, max error {100 * err:.2f} % of sigma0")
    ax.set_xlabel("rest time [h]")
    ax.set_ylabel(r"$-\sigma_{33}$ [MPa]")
    ax.set_title("Norton relaxation of a free Se block (plane strain)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out, dpi=130)
    print(args.out)


if __name__ == "__main__":
    main()
