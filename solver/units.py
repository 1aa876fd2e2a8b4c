"""Internal units of the discrete problem (no DOLFINx).

Configs and outputs are SI. The finite-element problem works in model units, chosen once per
run so that coordinates and stresses are O(1) (well-conditioned matrices and tolerances that do
not depend on the RVE size):

    length  L0 = min(width, height) / 40        (a box is 40 model units across its short side)
    stress  S0 = the largest Young's modulus of the phases in the RVE (either lithiation state)

The mesh is created in model units (`Scaling.to_model_mesh`, called once by the domain builder);
writers ask for SI coordinates through `Scaling.si_geometry`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

#: a box is this many model length units across its shorter side
BOX_UNITS = 40.0


@dataclass(frozen=True)
class Scaling:
    """Model units: lengths in `length` = L0 [m], stresses in `stress` = S0 [Pa]."""

    length: float  # L0 [m]
    stress: float  # S0 [Pa]

    @classmethod
    def for_config(cls, cfg) -> "Scaling":
        """The scaling of a run: takes a validated `Config`, returns Scaling(L0, S0)."""
        L0 = min(cfg.rve.width, cfg.rve.height) / BOX_UNITS
        S0 = max(max(m.youngs_modulus, (m.lithiated.youngs_modulus or 0) if m.lithiated else 0)
                 for m in cfg.used_materials().values())
        return cls(L0, S0)

    def to_model_mesh(self, mesh) -> None:
        """Divide the coordinates of a freshly built DOLFINx mesh (SI) by L0, in place."""
        mesh.geometry.x[:, :2] /= self.length

    @contextlib.contextmanager
    def si_geometry(self, mesh):
        """Within the block, the mesh coordinates are SI (for writers); model units after."""
        x = mesh.geometry.x
        x[:, :2] *= self.length
        try:
            yield mesh
        finally:
            x[:, :2] /= self.length
