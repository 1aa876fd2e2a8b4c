"""Contact parameters of a run, derived from the config in one place (no DOLFINx).

All lengths and stresses in model units (creep_cathode.units.Scaling):

- d̂ (barrier width): `contact.dhat`, else min(min_gap / 2, mesh_size / 8): the boundary
  resolution near gaps, below half the smallest initial gap;
- contact tolerance (a boundary point with a gap <= tolerance is "in contact"): `contact.tolerance`,
  else d̂ / 2;
- κ (barrier stiffness, a stress): `contact.stiffness` x the smallest Young's modulus of the phases;
- proximal stiffness: `contact.proximal` / (mean particle radius)^2 (model units), which pins
  floating particles to the last converged step (relaxed by `ProximalRelaxation`);
- rigid walls: the sides on rollers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..tags import SIDES


@dataclass(frozen=True)
class ContactParameters:
    """Contact parameters in model units (see the module docstring for how each is derived)."""

    dhat: float
    kappa: float
    tolerance: float
    proximal: float
    walls: dict
    project_hessian: bool
    proximal_relaxations: int
    proximal_tolerance: float
    settle_relaxations: int = 0

    @classmethod
    def from_config(cls, cfg, radii_si, scaling) -> "ContactParameters":
        """Takes the Config, the particle radii [m] (empty: a quarter of the box's short side) and
        the Scaling; returns the parameters in model units."""
        L0, S0 = scaling.length, scaling.stress
        c = cfg.contact
        radii = list(radii_si) or [min(cfg.rve.width, cfg.rve.height) / 4]
        r_mean = float(np.mean(radii)) / L0
        gap = cfg.rve.min_gap / L0
        h_gap = cfg.rve.mesh_size / 8 / L0
        dhat = c.dhat / L0 if c.dhat else min(0.5 * gap if gap > 0 else 1e9, h_gap)
        tol = c.tolerance / L0 if c.tolerance else 0.5 * dhat
        E_min = min(min(m.youngs_modulus, (m.lithiated.youngs_modulus or m.youngs_modulus) if m.lithiated
                        else m.youngs_modulus) for m in cfg.used_materials().values())
        walls = {s: cfg.boundary.kind(s) == "roller" for s in SIDES}
        return cls(dhat, c.stiffness * E_min / S0, tol, c.proximal / r_mean**2, walls, c.project_hessian,
                   c.proximal_relaxations, c.proximal_tolerance, c.settle_relaxations)
