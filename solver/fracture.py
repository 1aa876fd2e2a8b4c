"""Fracture-risk indicator: the share of a phase whose maximum principal stress exceeds its strength.

The model has no fracture (no damage, no cracks, no pulverisation: DESIGN §2). This indicator is
its honest stand-in for the pulverisation that Xiong 2024 sees in FeS (Fig. 5f-g): at every
quadrature point the maximum principal Cauchy stress of the plane-strain state [s11, s22, s12, s33]

    s1 = max( (s11 + s22)/2 + sqrt(((s11 - s22)/2)^2 + s12^2),  s33 )

is compared with the fracture strength of the phase's material at its state of lithiation,

    strength(theta) = strength_0 + (strength_1 - strength_0) theta     (linear, like E and nu)

and the reported number is the deformed area of the points with s1 > strength(theta) over the
deformed area of the phase (area-weighted over quadrature points, like the phase means).

Where the strength comes from, first match wins:
  1. `materials.<phase>.strength` [Pa] in the config: one value, at every theta;
  2. the phase's library entry (`solver.library.entry_for_material`, as the descriptors):
     `strength` at theta = 0, `lithiated.strength` at theta = 1 (the theta = 0 value if absent);
  3. none: the phase gets NaN ("no strength known", not "safe").

Imports no DOLFINx.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Strength", "phase_strengths", "max_principal", "exceeding_share"]


@dataclass(frozen=True)
class Strength:
    """Fracture strength [Pa] of a phase at theta = 0 and theta = 1, and where it comes from."""

    delithiated: float
    lithiated: float
    source: str  # "config" | "library <name>"

    def at(self, theta: float) -> float:
        return self.delithiated + (self.lithiated - self.delithiated) * float(theta)


def phase_strengths(cfg, library_directory=None) -> dict[str, Strength | None]:
    """{phase: Strength or None} for every solid phase of a validated config (see the module doc)."""
    from .library import entry_for_material

    out: dict[str, Strength | None] = {}
    for phase, mat in cfg.used_materials().items():
        s = getattr(mat, "strength", None)
        if s is not None:
            out[phase] = Strength(float(s), float(s), "config")
            continue
        entry = entry_for_material(phase, mat, library_directory)
        s0 = entry.value("strength") if entry is not None else None
        if s0 is None:
            out[phase] = None
            continue
        s1 = entry.value("lithiated", "strength")
        out[phase] = Strength(float(s0), float(s0 if s1 is None else s1), f"library {entry.name}")
    return out


def max_principal(sig: np.ndarray) -> np.ndarray:
    """Largest principal value of each row [11, 22, 12, 33] (plane strain: 33 is a principal direction)."""
    sig = np.asarray(sig, dtype=float).reshape(-1, 4)
    c = 0.5 * (sig[:, 0] + sig[:, 1])
    r = np.hypot(0.5 * (sig[:, 0] - sig[:, 1]), sig[:, 2])
    return np.maximum(c + r, sig[:, 3])


def exceeding_share(s1: np.ndarray, weights: np.ndarray, threshold: float, comm=None) -> float:
    """Weighted share of the points with s1 > threshold (reduced over `comm` if given); NaN for no area."""
    over = float(weights[s1 > threshold].sum())
    total = float(weights.sum())
    if comm is not None:
        from mpi4py import MPI

        over = comm.allreduce(over, op=MPI.SUM)
        total = comm.allreduce(total, op=MPI.SUM)
    return over / total if total > 0 else math.nan
