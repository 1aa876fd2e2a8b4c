"""Config schema (TOML), validation and `--set` overrides. Imports no DOLFINx.

All quantities are SI (m, Pa, s, K). The schema is the one of DESIGN section 6; every key is
documented in docs/config.md (generated from the `description`s below by `config_reference()`).
Unknown keys are rejected. A bad config raises `ConfigError` with one line that names the key.

Numbers are strict: a boolean or a string is not a number (`youngs_modulus = true` is refused).
Every magnitude has bounds beyond which a value is certainly a mistake (a unit slip, a typo, a
hostile input); each bound and its reason is in the key's description. What can be decided
about the geometry without packing or meshing (particle sizes against the box and the mesh,
overlapping explicit particles, fractions too dense to pack, too many particles) is decided here.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import stat
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)

from .protocol import ProtocolError, parse_protocol
from .text import one_line, short, show_key

__all__ = ["Config", "ConfigError", "load_config", "validate", "apply_overrides", "physics_hash", "to_toml", "to_dict"]


class ConfigError(ValueError):
    """Bad configuration: message is one line naming the offending key."""

    def __init__(self, msg: str):
        super().__init__(one_line(msg))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


# -- strict scalar types ---------------------------------------------------------------------
def _number(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"expected a number (got {short(v)})")
    return v


def _integer(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"expected an integer (got {short(v)})")
    return v


def _boolean(v):
    if not isinstance(v, bool):
        raise ValueError(f"expected true or false (got {short(v)})")
    return v


#: longest phase name; a phase name is a letter followed by letters, digits, '_', '-', '+' or '.'
#: (any script: 'Sé' is fine); it becomes part of CSV column names and plot labels
PHASE_NAME_MAX = 40


def _phase_name(v: str) -> str:
    if not (v and len(v) <= PHASE_NAME_MAX and v[0].isalpha() and all(c.isalnum() or c in "_-+." for c in v)):
        raise ValueError(f"phase name {short(v, 50)} must be a letter followed by at most {PHASE_NAME_MAX - 1} "
                         "letters, digits, '_', '-', '+' or '.'")
    return v


Real = Annotated[float, BeforeValidator(_number)]
Int = Annotated[int, BeforeValidator(_integer)]
Bool = Annotated[bool, BeforeValidator(_boolean)]
PhaseName = Annotated[str, AfterValidator(_phase_name)]
PosFloat = Annotated[Real, Field(gt=0)]
Fraction = Annotated[Real, Field(gt=0, lt=1)]

# Bounds (a value beyond them is certainly a mistake); each is stated in its key's description.
E_MIN, E_MAX = 1e3, 1e13  # Pa: softer than any solid (a hydrogel); 8x diamond's 1.2 TPa
LENGTH_MIN, LENGTH_MAX = 1e-8, 1e-2  # m: 10 nm (continuum particles end); 1 cm (thicker than any electrode)
T_MIN, T_MAX = 1.0, 3000.0  # K: above the melting point of every electrode material
A_MAX = 1e6  # 1/s: a strain rate of 1e6 1/s at sigma_ref is ballistic impact, not creep
SIGMA_REF_MIN, SIGMA_REF_MAX = 1.0, 1e12  # Pa: the theoretical strength of solids is E/10 <= 1e12 Pa
Q_MAX = 2e6  # J/mol: 4x the largest activation energies of creep (~500 kJ/mol)
PRESSURE_MAX = 1e10  # Pa: 10 GPa, 100x a lab cell's stack pressure; above every electrode's strength
DT_MAX = 1e9  # s: 32 years
E_RATIO_MAX = 1e6  # stiffest / softest Young's modulus of the phases in the RVE (tolerances scale with E_max)
ARRHENIUS_EXP_MAX = 700.0  # |exponent| of the Arrhenius factor: e^700 ~ 1e304 is the end of doubles


# --------------------------------------------------------------------------------------------
# [rve]
class SizeDist(_Strict):
    mean_diameter: PosFloat = Field(description="mean particle diameter [m] (lognormal); at most half the smaller "
                                                "box side, at least rve.mesh_size/10, and at most ~20000 particles "
                                                "in the box (the limits of packing and meshing)")
    cv: Real = Field(0.3, ge=0, le=2, description="coefficient of variation of the diameter [-], in [0, 2]")


class ParticleSpec(_Strict):
    phase: PhaseName = Field(description="solid phase (a key of [materials])")
    center: tuple[Annotated[Real, Field(ge=-LENGTH_MAX, le=LENGTH_MAX)], Annotated[Real, Field(ge=-LENGTH_MAX,
                                                                                              le=LENGTH_MAX)]] = Field(
        description=f"centre [x, y] [m], each in [-{LENGTH_MAX:g}, {LENGTH_MAX:g}]")
    radius: PosFloat = Field(le=LENGTH_MAX, description=f"radius [m], at most {LENGTH_MAX:g}; the diameter at least "
                                                        "rve.mesh_size/10")


#: most explicit particles (the same limit as a random packing's, meshes/packing.py MAX_PARTICLES)
MAX_PARTICLES = 20_000


class RVE(_Strict):
    kind: Literal["random", "particles", "block"] = Field("random", description="RVE kind")
    width: PosFloat = Field(40e-6, ge=LENGTH_MIN, le=LENGTH_MAX,
                            description=f"RVE width [m], in [{LENGTH_MIN:g}, {LENGTH_MAX:g}] (10 nm: the end of "
                                        "continuum particles; 1 cm: thicker than any electrode)")
    height: PosFloat = Field(40e-6, ge=LENGTH_MIN, le=LENGTH_MAX, description="RVE height [m], as width")
    seed: Int = Field(1, ge=0, le=2**63 - 1, description="random seed of the packing (kind = random), a 64-bit "
                                                        "integer >= 0")
    mesh_size: PosFloat = Field(0.8e-6, description="element size inside particles [m] (refined in narrow gaps); "
                                                    "at most half the RVE width/height and at least "
                                                    "sqrt(width height)/1000 (4e6 cells)")
    min_gap: Real = Field(0.05e-6, ge=0, description="smallest initial gap between separate bodies [m]; for "
                                                     "kind = random below half the smallest mean diameter")
    fractions: dict[PhaseName, Fraction] = Field(
        default_factory=dict, description="kind = random: area fraction per solid phase; pores are the rest. "
                                          "Refused when too dense to pack: above 0.86 with the disks inflated "
                                          "by min_gap/2")
    size: dict[PhaseName, SizeDist] = Field(default_factory=dict,
                                            description="kind = random: size distribution per solid phase")
    packing_iterations: Int = Field(1_000_000, ge=1000, le=100_000_000,
                                    description="kind = random: budget of packing relaxation iterations, all random "
                                                "starts together (about 20-100 us each); the packing gives up with "
                                                "an error when it is spent. Not physics: not in the config hash")
    particles: list[ParticleSpec] = Field(default_factory=list, max_length=MAX_PARTICLES,
                                          description=f"kind = particles: explicit circles (at most {MAX_PARTICLES}); "
                                                      "each must meet the box (a piece of >= 5 % of its area "
                                                      "inside), not cover all of it, and keep min_gap to the others")
    phase: PhaseName | None = Field(None, description="kind = block: the phase filling the RVE")
    mesh_pores: Bool = Field(True, description="`mesh` command: mesh the pore space as its own group")

    @field_validator("fractions")
    @classmethod
    def _sum(cls, v):
        if v and sum(v.values()) >= 1.0:
            raise ValueError(f"solid fractions must sum to < 1 (got {sum(v.values()):.4g})")
        return v

    @model_validator(mode="after")
    def _kind(self):
        if self.kind == "random":
            if not self.fractions:
                raise ValueError("rve.fractions: required for kind = 'random'")
            for p in self.fractions:
                if p not in self.size:
                    raise ValueError(f"rve.size.{p}: missing size distribution for phase {p!r}")
            for p in self.size:
                if p not in self.fractions:
                    raise ValueError(f"rve.size.{p}: phase {p!r} has no entry in rve.fractions")
            if self.min_gap >= 0.5 * min(s.mean_diameter for s in self.size.values()):
                raise ValueError("rve.min_gap: must be smaller than half the smallest mean diameter")
        elif self.kind == "particles":
            if not self.particles:
                raise ValueError("rve.particles: required (non-empty) for kind = 'particles'")
        elif self.kind == "block":
            if not self.phase:
                raise ValueError("rve.phase: required for kind = 'block'")
        if self.mesh_size > 0.5 * min(self.width, self.height):
            raise ValueError("rve.mesh_size: must be at most half the RVE width/height")
        cells = 4.0 * (self.width / self.mesh_size) * (self.height / self.mesh_size)  # mesh_size**2 may underflow
        if cells > 4e6:
            raise ValueError(f"rve.mesh_size: too small for the RVE (~{cells:.2g} cells; at most 4e6)")
        if self.min_gap >= 0.5 * min(self.width, self.height):
            raise ValueError("rve.min_gap: must be smaller than half the RVE width/height")
        if self.kind != "block":
            self._geometry()
        return self

    def _geometry(self):
        """Sizes against the mesh, then what packing/meshing would refuse (meshes/packing.py)."""
        from .meshes import packing

        h = self.mesh_size
        if self.kind == "random":
            for p, s in self.size.items():
                if s.mean_diameter < 0.1 * h:
                    raise ValueError(f"rve.size.{p}.mean_diameter: {s.mean_diameter:.3g} m is far below rve.mesh_size "
                                     f"= {h:.3g} m (a particle must be at least mesh_size/10 across)")
            try:
                packing.check_random(self.width, self.height, dict(self.fractions),
                                     {p: (s.mean_diameter, s.cv) for p, s in self.size.items()}, self.min_gap,
                                     self.seed, max_iterations=self.packing_iterations)
            except packing.PackingError as e:
                raise ValueError(f"{e.key or 'rve'}: {e}") from None
        else:
            for k, c in enumerate(self.particles):
                if 2.0 * c.radius < 0.1 * h:
                    raise ValueError(f"rve.particles[{k}].radius: {c.radius:.3g} m is far below rve.mesh_size = "
                                     f"{h:.3g} m (a particle must be at least mesh_size/10 across)")
            circles = [packing.Circle(c.phase, c.center[0], c.center[1], c.radius) for c in self.particles]
            try:
                packing.validate_particles(circles, self.width, self.height, self.min_gap)
            except packing.PackingError as e:
                raise ValueError(f"{e.key or 'rve.particles'}: {e}") from None

    def phases(self) -> list[str]:
        if self.kind == "random":
            return list(self.fractions)
        if self.kind == "particles":
            return list(dict.fromkeys(p.phase for p in self.particles))
        return [self.phase]


# --------------------------------------------------------------------------------------------
# [boundary]
class Pressure(_Strict):
    pressure: Real = Field(ge=-PRESSURE_MAX, le=PRESSURE_MAX,
                           description=f"constant pressure on that side [Pa] (> 0 compresses), |p| <= "
                                       f"{PRESSURE_MAX:g} (100x a lab cell's stack pressure)")
    platen: Bool = Field(False, description="true: the pressure acts through a rigid platen (the side's solid "
                                            "faces stay flat, move together and carry p x side length between "
                                            "them, as under a current collector); false: a dead load p on each "
                                            "solid face of the side on its own")


Side = Union[Literal["roller", "free"], Pressure]


class Boundary(_Strict):
    left: Side = Field("roller", description='"roller" (zero normal displacement), "free", {pressure = P} or '
                                                 '{pressure = P, platen = true}')
    right: Side = Field("roller", description="as left")
    bottom: Side = Field("roller", description="as left")
    top: Side = Field("roller", description="as left")

    @model_validator(mode="after")
    def _rigid(self):
        if not any(getattr(self, s) == "roller" for s in ("left", "right")) or \
                not any(getattr(self, s) == "roller" for s in ("bottom", "top")):
            raise ValueError("boundary: need at least one roller among left/right and one among "
                             "bottom/top (else rigid-body motion is free)")
        if sum(self.kind(s) == "pressure" and getattr(self, s).platen for s in ("left", "right", "bottom", "top")) > 1:
            raise ValueError("boundary: at most one side with a platen")
        return self

    def kind(self, side: str) -> str:
        v = getattr(self, side)
        return v if isinstance(v, str) else "pressure"


# --------------------------------------------------------------------------------------------
# [materials.X]
_E_DESC = f"in [{E_MIN:g}, {E_MAX:g}] (softer than any solid; 8x diamond)"


class Creep(_Strict):
    A: Real = Field(description=f"Norton rate coefficient [1/s] (strain rate at sigma_e = sigma_ref), in [0, "
                                f"{A_MAX:g}] (faster is impact, not creep); with the Arrhenius factor at "
                                f"cycling.temperature too", ge=0, le=A_MAX)
    n: Real = Field(description="stress exponent [-], in [1, 50]", ge=1, le=50)
    sigma_ref: PosFloat = Field(ge=SIGMA_REF_MIN, le=SIGMA_REF_MAX,
                                description=f"reference stress [Pa], in [{SIGMA_REF_MIN:g}, {SIGMA_REF_MAX:g}] "
                                            "(the theoretical strength of solids is E/10 <= 1e12 Pa)")
    Q: Real = Field(0.0, ge=0, le=Q_MAX, description=f"activation energy [J/mol] (0: no Arrhenius), at most {Q_MAX:g} "
                                                    "(4x the largest activation energies of creep); the factor "
                                                    "exp(-Q/R (1/T - 1/T_ref)) must stay within e^+-700")
    T_ref: PosFloat = Field(343.15, ge=T_MIN, le=T_MAX, description=f"temperature at which A is given [K], in "
                                                                    f"[{T_MIN:g}, {T_MAX:g}]")


class Lithiated(_Strict):
    youngs_modulus: PosFloat | None = Field(None, ge=E_MIN, le=E_MAX,
                                            description=f"Young's modulus at theta = 1 [Pa], {_E_DESC}")
    poisson_ratio: Real | None = Field(None, gt=-1, lt=0.5, description="Poisson ratio at theta = 1 [-]")
    creep: Creep | None = Field(None, description="creep parameters at theta = 1 (A, sigma_ref log-linear, n linear in theta)")


class Material(_Strict):
    active: Bool = Field(False, description="lithiated by the protocol (swells)")
    youngs_modulus: PosFloat = Field(ge=E_MIN, le=E_MAX, description=f"Young's modulus (delithiated) [Pa], {_E_DESC}; "
                                                                    "the phases of the RVE at most 1e6 apart (the "
                                                                    "solver's tolerances are relative to the stiffest)")
    poisson_ratio: Real = Field(description="Poisson ratio (delithiated) [-], -1 < nu < 0.5", gt=-1, lt=0.5)
    volume_ratio_lithiated: PosFloat = Field(1.0, ge=0.1, le=10.0,
                                             description="J_l,max: volume ratio at theta = 1 [-], in [0.1, 10] "
                                                         "(Se -> Li2Se is 1.98; silicon's 4 is the largest known)")
    creep: Creep | None = Field(None, description="Norton creep; omit for elastic")
    lithiated: Lithiated | None = Field(None, description="properties at theta = 1 (linear in theta between)")
    strength: PosFloat | None = Field(None, description="fracture strength [Pa] of the fracture-risk metric, at every "
                                                        "theta (default: the library entry's, linear in theta)")
    source: str = Field("", description="citation / provenance of the values (free text)")
    law: str | None = Field(None, description="material-point law: a registered name (default \"hencky_norton\": "
                                              "Hencky elasticity, swelling, Norton creep) or \"package.module:Class\"")
    parameters: dict[str, Any] | None = Field(None, description="law-specific parameters, validated by the law's "
                                                                "own schema (hencky_norton has none)")

    @model_validator(mode="after")
    def _act(self):
        if not self.active and self.volume_ratio_lithiated != 1.0:
            raise ValueError("volume_ratio_lithiated: only active materials swell (set active = true)")
        return self

    @model_validator(mode="after")
    def _law(self):
        from .laws import law_class

        try:
            cls = law_class(self.law)
        except ValueError as e:
            raise ValueError(f"law: {e}") from None
        if cls.Parameters is None:
            if self.parameters:
                raise ValueError(f"parameters: law {cls.name!r} takes no parameters")
        else:
            try:
                checked = cls.Parameters.model_validate(self.parameters or {})
            except ValidationError as e:
                err = max(e.errors(include_url=False), key=lambda x: len(x.get("loc", ())))
                loc = ".".join(str(x) for x in err.get("loc", ()))
                raise ValueError(f"parameters.{loc}: {err['msg']}") from None
            object.__setattr__(self, "parameters", checked.model_dump())
        return self

    def law_parameters(self):
        """The law's parameters as its validated pydantic model (None for a law without)."""
        from .laws import law_class

        cls = law_class(self.law)
        return None if cls.Parameters is None else cls.Parameters.model_validate(self.parameters or {})


# --------------------------------------------------------------------------------------------
#: most steps of the whole schedule (protocol steps x cycles)
MAX_SEGMENTS = 1_000_000


class Cycling(_Strict):
    protocol: list[str] = Field(["Lithiate at 0.1C", "Delithiate at 0.1C"],
                                description="steps of one cycle, repeated `cycles` times; C-rates in [1e-5, 1000] C, "
                                            "rests of at most 1e9 s, at most 1000 steps, and steps x cycles at most "
                                            "1e6")
    cycles: Int = Field(20, ge=1, le=100000, description="number of cycles, in [1, 100000]")
    temperature: PosFloat = Field(343.15, ge=T_MIN, le=T_MAX,
                                  description=f"temperature [K] (Arrhenius factor on A), in [{T_MIN:g}, {T_MAX:g}] "
                                              "(above the melting point of every electrode material)")
    initial_theta: Real = Field(0.0, ge=0, le=1, description="state of lithiation at t = 0")

    @field_validator("protocol")
    @classmethod
    def _protocol(cls, v):
        try:
            parse_protocol(v)
        except ProtocolError as e:
            raise ValueError(str(e)) from None
        return v

    @model_validator(mode="after")
    def _length(self):
        if len(self.protocol) * self.cycles > MAX_SEGMENTS:
            raise ValueError(f"cycling.cycles: {self.cycles} cycles of {len(self.protocol)} steps exceed "
                             f"{MAX_SEGMENTS:g} steps in all")
        return self


class ContactSettings(_Strict):
    tolerance: PosFloat | None = Field(None, description="contact_tolerance [m]: a boundary point is in contact when "
                                                         "its deformed gap is at most this (default: 0.5 x dhat); at "
                                                         "most a tenth of the smaller RVE side")
    dhat: PosFloat | None = Field(None, description="barrier activation distance [m] (default: min(min_gap/2, "
                                                    "mesh_size/8), the boundary resolution near gaps); at most a "
                                                    "tenth of the smaller RVE side")
    stiffness: PosFloat = Field(1e-3, le=1e3,
                                description="barrier stiffness kappa (a stress) relative to the smallest Young's "
                                            "modulus of the solid phases [-], at most 1e3")
    project_hessian: Bool = Field(False, description="always project the barrier Hessian onto the PSD cone (robust, "
                                                     "linear convergence); default: exact Hessian, projected only "
                                                     "when Newton meets a non-descent direction")
    proximal_relaxations: Int = Field(3, ge=0, le=50, description="re-solves of a step anchored at its solution "
                                                                 "while the proximal energy exceeds the tolerance")
    proximal_tolerance: PosFloat = Field(1e-3, le=1.0,
                                         description="acceptable proximal energy / stored energy of a step [-], at "
                                                     "most 1")
    settle_relaxations: Int = Field(0, ge=0, le=10000,
                                    description="in a rest step, re-solves allowed instead of proximal_relaxations, "
                                                "so that a packing under a stack pressure settles into equilibrium "
                                                "(proximal / stored <= proximal_tolerance) before lithiation, the "
                                                "proximal stiffness softened while it has not; 0: a rest relaxes as "
                                                "any step")
    proximal: Real = Field(1e-2, ge=0, le=1e3,
                           description="proximal (pseudo-time) stiffness for floating bodies, relative to "
                                       "E_max / L^2 [-], at most 1e3")


class Solver(_Strict):
    element_degree: Annotated[Literal[1, 2], BeforeValidator(_integer)] = Field(
        2, description="Lagrange degree of the displacement (2 avoids locking)")
    quadrature_degree: Int | None = Field(None, ge=1, le=8, description="quadrature degree (default 2 x (degree - 1), min 1)")
    rtol: Real = Field(1e-8, gt=0, lt=1, description="Newton relative residual tolerance")
    atol: Real = Field(1e-8, gt=0, le=1e-3, description="Newton absolute residual tolerance (internal units: nodal "
                                                        "force / (E_max L0), L0 = min(width, height)/40), at most 1e-3 "
                                                        "(a looser one accepts a step's unsolved first iterate); 1e-5 "
                                                        "saves a third of the iterations on contact runs but breaks "
                                                        "the creep error control of a fully relaxed, fast-creeping "
                                                        "phase (docs/physics.md)")
    max_iterations: Int = Field(40, ge=1, le=500, description="Newton iterations per step")
    chord_steps: Int = Field(3, ge=0, le=50, description="Newton iterations in a row that may solve with the tangent "
                                                         "already factorised (chord steps): after a full step that "
                                                         "cut the residual 100-fold, and at the start of a proximal "
                                                         "re-solve; the same answer to the tolerance with fewer "
                                                         "assemblies and factorisations (0: a fresh tangent every "
                                                         "iteration, as before this setting)")
    dt_initial: PosFloat = Field(60.0, le=DT_MAX, description=f"first time step [s], at most {DT_MAX:g} (32 years)")
    dt_min: PosFloat = Field(1e-3, le=DT_MAX, description="smallest time step before giving up [s]")
    stall_steps: Int = Field(100, ge=2, le=100000, description="the run fails as stalled when this many consecutive "
                                                               "steps together cover less than stall_fraction of their "
                                                               "protocol step")
    stall_fraction: Real = Field(0.01, ge=0, lt=1, description="see stall_steps (0 disables the check) [-]")
    dt_max: PosFloat = Field(3600.0, le=DT_MAX, description=f"largest time step [s], at most {DT_MAX:g}")
    max_theta_increment: Fraction = Field(0.05, description="largest change of theta per step [-]")
    max_creep_increment: PosFloat = Field(0.02, le=1.0, description="largest equivalent creep strain increment per "
                                                                    "step [-], at most 1")
    creep_tolerance: Real = Field(0.002, ge=0, le=1,
                                  description="creep error control: the local time-integration error estimate of "
                                              "a step (BDF2: Milne's device against the two-step Adams-Bashforth "
                                              "increment; backward Euler: half the difference between the creep "
                                              "strain increments with the end and the start rates; as a stress) "
                                              "averaged over each phase stays below this fraction of the phase's "
                                              "mean von Mises stress (docs/physics.md; 0: no error control) [-]")
    creep_integrator: Literal["bdf2", "backward_euler"] = Field(
        "bdf2", description="time integration of the creep rate: second-order BDF2 (backward Euler on the first "
                            "step and after a step more than twice as long as the last) or first-order backward "
                            "Euler; both implicit and unconditionally stable (docs/physics.md)")
    creep_increment_quantile: Real = Field(0.99, gt=0, le=1, description="the bound holds for this quantile of "
                                           "the quadrature points (1 = every point; hot spots above it are left "
                                           "to backward Euler's stability) [-]")
    newton_continuations: Int = Field(0, ge=0, le=20, description="when Newton reaches max_iterations, go on from its "
                                                              "last iterate this many times before cutting the step "
                                                              "(elastic snap-through between jammed particles)")
    max_cutbacks: Int = Field(8, ge=0, le=40, description="halvings of a failing step before the run fails")
    growth: Real = Field(1.5, gt=1, le=10, description="step growth factor after an easy step")
    easy_iterations: Int = Field(12, ge=0, le=500, description="a step that took at most this many Newton "
                                                               "iterations is easy: the next one grows")
    hard_iterations: Int = Field(30, ge=1, le=500, description="a step that took more Newton iterations than this "
                                                               "is hard: the next one shrinks by 0.7")
    linear_solver: Literal["lu", "gmres_gamg", "gmres_hypre"] = Field(
        "lu", description="linear solver of each Newton iteration: MUMPS direct (the LDLT factorisation of the "
                          "symmetric tangent, LU where that fails the residual check), or GMRES with algebraic "
                          "multigrid (PETSc GAMG or hypre BoomerAMG; the rigid-body modes as near-null space) for "
                          "large RVEs (README, Performance)")
    linear_rtol: Real = Field(1e-9, gt=0, le=1e-4, description="relative residual of the iterative linear solvers "
                                                               "(the Newton direction is checked to 1e-6)")
    log_newton: Bool = Field(False, description="print every Newton iteration (debugging)")
    predictor: Bool = Field(True, description="start each step from the extrapolated last increment")
    proximal_anchor: Literal["extrapolated", "last_step"] = Field(
        "extrapolated", description="where the proximal term of floating bodies (contact.proximal) is anchored: at "
                                    "the predictor's extrapolation of the last increment less each body's rigid "
                                    "motion (it then resists only the departure from a steady deformation, e.g. a "
                                    "free particle's swelling, needs fewer proximal re-solves, and still pins each "
                                    "body's rigid motion) or at the last converged step (as before this setting; "
                                    "without a predictor always there)")
    checkpoint_every: Int = Field(0, ge=0, le=10**9,
                                  description="write a checkpoint every N steps (0: cycle ends only)")

    @model_validator(mode="after")
    def _dt(self):
        if self.dt_min > self.dt_max:
            raise ValueError("solver.dt_min: must not exceed dt_max")
        return self


class Output(_Strict):
    fields: Literal["none", "cycle_ends", "every_step"] = Field("cycle_ends", description="ParaView fields to write")
    plots: Bool = Field(True, description="write plots/*.png at the end")
    progress: Bool = Field(True, description="show a progress line on rank 0")


class Config(_Strict):
    rve: RVE = Field(default_factory=RVE)
    boundary: Boundary = Field(default_factory=Boundary)
    materials: dict[PhaseName, Material] = Field(description="one table per solid phase")
    cycling: Cycling = Field(default_factory=Cycling)
    contact: ContactSettings = Field(default_factory=ContactSettings)
    solver: Solver = Field(default_factory=Solver)
    output: Output = Field(default_factory=Output)

    @model_validator(mode="after")
    def _cross(self):
        for p in self.rve.phases():
            if p not in self.materials:
                raise ValueError(f"materials.{p}: phase {p!r} is used by the RVE but has no [materials.{p}] table")
        side = min(self.rve.width, self.rve.height)
        for k in ("tolerance", "dhat"):
            v = getattr(self.contact, k)
            if v is not None and v > 0.1 * side:
                raise ValueError(f"contact.{k}: {v:.3g} m is more than a tenth of the smaller RVE side ({side:.3g} m)")
        moduli = {(p, w): e for p, m in self.used_materials().items()
                  for w, e in (("youngs_modulus", m.youngs_modulus),
                               ("lithiated.youngs_modulus", m.lithiated.youngs_modulus if m.lithiated else None))
                  if e is not None}
        (ps, ws), soft = min(moduli.items(), key=lambda kv: kv[1])
        stiff = max(moduli.values())
        if stiff > E_RATIO_MAX * soft:
            raise ValueError(f"materials.{ps}.{ws}: {soft:.3g} Pa is more than a factor {E_RATIO_MAX:g} below the "
                             f"stiffest phase ({stiff:.3g} Pa): the solver's tolerances are relative to the stiffest "
                             "phase and would not resolve it")
        for p, m in self.materials.items():
            for where, c in (("creep", m.creep), ("lithiated.creep", m.lithiated.creep if m.lithiated else None)):
                if c is not None:
                    _check_arrhenius(f"materials.{p}.{where}", c, self.cycling.temperature)
        return self

    def used_materials(self) -> dict[str, Material]:
        return {p: self.materials[p] for p in self.rve.phases()}


def _check_arrhenius(key: str, c: Creep, T: float) -> None:
    """The Arrhenius factor exp(x), x = -Q/R (1/T - 1/T_ref), and A exp(x) within doubles and A_MAX."""
    if not c.Q:
        return
    from .materials import R_GAS

    x = -c.Q / R_GAS * (1.0 / T - 1.0 / c.T_ref)
    where = f"at cycling.temperature = {T:g} K (T_ref = {c.T_ref:g} K)"
    if x < -ARRHENIUS_EXP_MAX:
        raise ValueError(f"{key}.Q: the Arrhenius factor exp({x:.4g}) {where} underflows to 0 (creep switched off)")
    if x > ARRHENIUS_EXP_MAX or (c.A > 0 and math.log(c.A) + x > math.log(A_MAX)):
        raise ValueError(f"{key}.Q: the Arrhenius factor exp({x:.4g}) {where} makes the creep rate A = "
                         f"{c.A:.3g} x exp({x:.4g}) 1/s, above {A_MAX:g} 1/s")


# --------------------------------------------------------------------------------------------
_BOUND_WORDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


def _loc(err: dict) -> str:
    parts = []
    for x in err.get("loc", ()):
        if isinstance(x, int):
            parts.append(f"[{x}]")
        elif x == "Pressure" or "[" in str(x):  # union-member / validator tags, not config keys
            continue
        else:
            parts.append(("." if parts else "") + show_key(x))
    return "".join(parts)


def _message(e: ValidationError) -> str:
    errs = e.errors(include_url=False)
    # Prefer the most specific error (longest location); union alternatives produce several.
    err = max(errs, key=lambda x: len(x.get("loc", ())))
    loc = _loc(err)
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return f"{loc}: unknown key"
    if err["type"] == "missing":
        return f"{loc}: required key missing"
    inp = err.get("input")
    if err["type"] in _BOUND_WORDS:
        bound = next(iter(err.get("ctx", {}).values()), None)
        msg = f"must be {_BOUND_WORDS[err['type']]} {bound:g}" if isinstance(bound, (int, float)) else msg
    got = ""
    if err["type"] not in ("value_error",) and not isinstance(inp, (dict, list)):
        got = f" (got {short(inp)})"
    if loc and msg.startswith(loc.split(".")[0] + "."):
        return msg  # validator already named the key
    if not loc and msg.startswith(("rve.", "materials.", "boundary", "solver.", "cycling.", "contact.",
                                   "volume_ratio")):
        return msg
    return f"{loc}: {msg}{got}" if loc else f"{msg}{got}"


#: deepest nesting of tables and arrays a config may have (the schema needs 4)
MAX_DEPTH = 32


def _check_tree(data, path: str = "", depth: int = 0) -> None:
    """Nesting depth, and text that is valid Unicode (no lone surrogates from a command line)."""
    if depth > MAX_DEPTH:
        raise ConfigError(f"{path or 'config'}: nested deeper than {MAX_DEPTH} levels")
    if isinstance(data, dict):
        items = data.items()
    elif isinstance(data, list):
        items = ((f"[{i}]", v) for i, v in enumerate(data))
    else:
        if isinstance(data, str):
            try:
                data.encode("utf-8")
            except UnicodeEncodeError:
                raise ConfigError(f"{path or 'config'}: not valid Unicode text ({short(data)})") from None
        return
    for k, v in items:
        if isinstance(k, str) and not k.startswith("["):
            try:
                k.encode("utf-8")
            except UnicodeEncodeError:
                raise ConfigError(f"{path or 'config'}: key {short(k)} is not valid Unicode text") from None
        sub = f"{path}{k}" if str(k).startswith("[") else (f"{path}.{show_key(k)}" if path else show_key(k))
        _check_tree(v, sub, depth + 1)


def validate(data: dict) -> Config:
    """A validated Config from a raw dict (e.g. parsed TOML); ConfigError (one line naming the key) otherwise."""
    if not isinstance(data, dict):
        raise ConfigError(f"config: expected a table (got {short(data)})")
    _check_tree(data)
    from .library import resolve_materials  # `use = "Se"` / `materials.Se = "Se"` -> the library's explicit values

    data = resolve_materials(data)
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_message(e)) from None


#: largest config (or sweep) file read: far above any real config (10000 explicit particles ~ 1 MB)
MAX_FILE_BYTES = 16 * 2**20


def read_text(path: str | Path, what: str = "config file") -> str:
    """The UTF-8 text of a regular file, or a ConfigError naming the path (never blocks on a FIFO)."""
    name = short(str(path), 120)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens without waiting for a writer
    except FileNotFoundError:
        raise ConfigError(f"{name}: {what} not found") from None
    except PermissionError:
        raise ConfigError(f"{name}: {what} not readable (permission denied)") from None
    except (OSError, ValueError) as e:  # name too long, embedded NUL, ...
        raise ConfigError(f"{name}: cannot open {what} ({getattr(e, 'strerror', None) or e})") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ConfigError(f"{name}: is a directory, not a {what}")
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{name}: not a regular file (a device, FIFO or socket), not a {what}")
        if st.st_size > MAX_FILE_BYTES:
            raise ConfigError(f"{name}: {what} too large ({st.st_size} bytes; at most {MAX_FILE_BYTES})")
        with os.fdopen(fd, "rb") as f:
            fd = None
            raw = f.read(MAX_FILE_BYTES + 1)
    except ConfigError:
        raise
    except OSError as e:
        raise ConfigError(f"{name}: cannot read {what} ({e.strerror or e.__class__.__name__})") from None
    finally:
        if fd is not None:
            os.close(fd)
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"{name}: {what} too large (at most {MAX_FILE_BYTES} bytes)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{name}: {what} is not UTF-8 text (byte {e.start})") from None


def _toml(text: str, where: str) -> dict:
    """tomllib.loads with every failure as one ConfigError line."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{where}: not valid TOML ({e})") from None
    except ValueError as e:  # integers beyond Python's int-string limit
        raise ConfigError(f"{where}: not valid TOML (an integer with too many digits)") from None
    except RecursionError:
        raise ConfigError(f"{where}: not valid TOML (nested too deeply)") from None


def load_toml(path: str | Path, what: str = "config file") -> dict:
    """The parsed TOML file at `path` (a regular file, size- and depth-limited); ConfigError naming
    `what` otherwise."""
    data = _toml(read_text(path, what), short(str(path), 120))
    _check_tree(data)
    return data


def parse_value(text: str, key: str = "") -> Any:
    """A `--set` value: a TOML value, or a bare word taken as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
    except (ValueError, RecursionError):
        raise ConfigError(f"--set {show_key(key)}: value {short(text)} is not a usable TOML value (an integer "
                          "with too many digits, or nested too deeply)") from None


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """A copy of `data` with each "key.path=value" of `overrides` applied (value: TOML, or a bare word)."""
    from .library import expand_short_forms  # materials.X = "name" -> { use = "name" }, so --set can reach into it

    data = copy.deepcopy(expand_short_forms(data))
    for ov in overrides or []:
        if "=" not in ov:
            raise ConfigError(f"--set {short(ov)}: expected key.path=value")
        key, val = ov.split("=", 1)
        key = key.strip()
        if not key or any(not p for p in key.split(".")):
            raise ConfigError(f"--set {short(ov)}: bad key path")
        set_path(data, key, parse_value(val.strip(), key), "--set")
    return data


def set_path(data: dict, key: str, value, what: str = "--set") -> dict:
    """data[key path] = value in place (tables created on the way); ConfigError naming the key
    (prefixed by `what`) when a part of the path is not a table. Returns data."""
    parts = key.split(".")
    d = data
    for p in parts[:-1]:
        if p not in d:
            d[p] = {}
        if not isinstance(d[p], dict):
            raise ConfigError(f"{what} {show_key(key)}: {show_key(p)} is not a table")
        d = d[p]
    d[parts[-1]] = value
    return data


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """The validated Config of the TOML file at `path` with the `--set` overrides applied."""
    return validate(apply_overrides(load_toml(path), overrides or []))


def to_dict(cfg: Config) -> dict:
    """The config as plain JSON-able data (unset optional keys left out)."""
    return cfg.model_dump(mode="json", exclude_none=True)


def to_toml(cfg: Config) -> str:
    """The normalised config as TOML (a resolved config.toml)."""
    return _dump_toml(to_dict(cfg))


def physics_hash(cfg: Config, cycles: int | None = None) -> str:
    """Hash of everything that changes the answer (not output or progress settings); with `cycles`,
    of the same config run for that many cycles (a run extended by more cycles: rundir)."""
    d = to_dict(cfg)
    if cycles is not None:
        d["cycling"]["cycles"] = int(cycles)
    d.pop("output", None)
    d.get("solver", {}).pop("checkpoint_every", None)
    d.get("solver", {}).pop("chord_steps", None)  # how Newton converges to a step's minimiser, not the problem
    d.get("rve", {}).pop("packing_iterations", None)  # a budget: changes whether packing gives up, not the answer
    # settings whose value reproduces the code before they existed hash as before (the runs made then stay valid:
    # resume, reuse by sweeps and ensembles)
    for section, key, before in (("solver", "creep_integrator", "backward_euler"),
                                 ("solver", "proximal_anchor", "last_step"), ("contact", "settle_relaxations", 0)):
        if d.get(section, {}).get(key) == before:
            d[section].pop(key)
    for m in d.get("materials", {}).values():  # citations are provenance, not physics
        m.pop("source", None)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


# -- minimal TOML writer (tomllib reads only) --------------------------------------------------
_ESC = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _ts(s: str) -> str:
    """A TOML basic string in pure ASCII: non-ASCII and control characters as \\uXXXX / \\UXXXXXXXX."""
    out = []
    for c in s:
        o = ord(c)
        if c in _ESC:
            out.append(_ESC[c])
        elif 0x20 <= o < 0x7F:
            out.append(c)
        elif 0xD800 <= o <= 0xDFFF:  # a lone surrogate has no TOML (or UTF-8) form; validate() refuses them
            raise ValueError(f"string {short(s)} holds a lone surrogate")
        else:
            out.append(f"\\u{o:04X}" if o <= 0xFFFF else f"\\U{o:08X}")
    return '"' + "".join(out) + '"'


def _tv(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))
    if isinstance(v, str):
        return _ts(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_tv(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_tv(x)}" for k, x in v.items()) + " }"
    raise TypeError(type(v))


def _key(k: str) -> str:
    """A bare key when TOML allows one (ASCII letters, digits, '_', '-'), else a quoted one."""
    return k if k and all(c.isascii() and (c.isalnum() or c in "_-") for c in k) else _ts(k)


def _dump_toml(d: dict, prefix: str = "") -> str:
    """Scalars and lists of scalars first, then each sub-table as [prefix.key] (recursively)."""
    out, tables, arrays = [], [], []
    for k, v in d.items():
        if isinstance(v, dict):
            tables.append((k, v))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            arrays.append((k, v))
        else:
            out.append(f"{_key(k)} = {_tv(v)}")
    text = "\n".join(out) + ("\n" if out else "")
    for k, v in tables:
        name = f"{prefix}.{_key(k)}" if prefix else _key(k)
        body = _dump_toml(v, name)
        text += f"\n[{name}]\n{body}" if (not body.startswith("\n[") or not v) else body
    for k, v in arrays:
        name = f"{prefix}.{_key(k)}" if prefix else _key(k)
        for item in v:
            text += f"\n[[{name}]]\n" + "\n".join(f"{_key(a)} = {_tv(b)}" for a, b in item.items()) + "\n"
    return text


def config_reference() -> str:
    """docs/config.md: every key with its unit and default, from the schema descriptions."""
    lines = ["# Config reference", "",
             "Generated from `solver/config.py` (`python -m creep_cathode.config > docs/config.md`). All values SI: "
             "m, Pa, s, K. Unknown keys are an error. Override any key on the command line with "
             "`--set key.path=value` (a TOML value; a bare word is a string).", ""]

    def walk(model, prefix):
        rows, subs = [], []
        for name, f in model.model_fields.items():
            ann = f.annotation
            sub = None
            for cand in (ann, *getattr(ann, "__args__", ())):
                if isinstance(cand, type) and issubclass(cand, BaseModel):
                    sub = cand
            default = "required" if f.is_required() else (
                "—" if f.default_factory is not None or f.default is None else f"`{_tv(f.default)}`")
            if sub is not None and name not in ("left", "right", "bottom", "top"):
                origin = getattr(ann, "__origin__", None)
                nm = f"{prefix}.{name}" if prefix else name
                nm = nm + ".<phase>" if origin is dict else nm
                subs.append((nm, sub, f.description))
            else:
                rows.append(f"| `{prefix + '.' if prefix else ''}{name}` | {default} | {f.description or ''} |")
        return rows, subs

    def section(title, model, prefix, desc=None):
        rows, subs = walk(model, prefix)
        out = [f"## `[{title}]`", ""] + ([desc, ""] if desc else [])
        if rows:
            out += ["| key | default | meaning |", "|---|---|---|"] + rows + [""]
        for p, m, d in subs:
            out += section(p, m, p, d)
        return out

    for name, model, desc in [("rve", RVE, None), ("boundary", Boundary, None),
                              ("materials.<phase>", Material, "One table per solid phase, e.g. `[materials.Se]`."),
                              ("cycling", Cycling, "Step strings: 'Lithiate at 0.1C', 'Lithiate at 2C to 0.5', "
                               "'Delithiate at 0.1C to 0.22', 'Rest for 2 hours' (s, min, h)."),
                              ("contact", ContactSettings, None), ("solver", Solver, None), ("output", Output, None)]:
        lines += section(name, model, name, desc)
    lines += ["`rve.size.<phase>`: `{ mean_diameter = m, cv = - }`; `rve.fractions.<phase>`: area fraction in (0, 1).",
              "`[[rve.particles]]`: `phase`, `center = [x, y]` (m), `radius` (m).", ""]
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    print(config_reference())
