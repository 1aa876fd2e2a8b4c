"""A test-only material-point law, to show that a law is one file plus its schema entry.

Linear viscous (Maxwell) creep with Hencky elasticity: d(eps_eq)/dt = sigma_e / (3 eta), a
Newtonian solid of shear viscosity eta. Its schema entry is `Parameters` (the config's
`[materials.<phase>] parameters = { viscosity = ... }`); its properties map eta onto the
Hencky/Norton step with n = 1 and A / sigma_ref = 1 / (3 eta), whose stress, tangent, energy and
internal variables it inherits. A config uses it with
`law = "linear_viscous_law:LinearViscous"` (this folder on PYTHONPATH).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from creep_cathode import materials
from creep_cathode.laws.hencky_norton import HenckyNorton


class LinearViscous(HenckyNorton):
    name = "linear_viscous"

    class Parameters(BaseModel):
        model_config = ConfigDict(extra="forbid")
        viscosity: float = Field(gt=0, description="shear viscosity eta [Pa s]")

    def properties(self, material, theta, temperature, scaling):
        el = materials.elastic(material, theta)
        eta = material.law_parameters().viscosity
        S0 = scaling.stress
        # A / sigma_ref = 1 / (3 eta): sigma_ref = 1 Pa (model units 1 / S0), A = 1 Pa / (3 eta)
        return self.Properties(el.mu / S0, el.lam / S0, el.Jl, 1.0 / (3.0 * eta), 1.0, 1.0 / S0)
