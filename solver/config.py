"""Config schema (TOML), validation and `--set` overrides. Imports no DOLFINx.

All quantities are SI (m, Pa, s, K). The schema is the one of DESIGN section 6; every key is
documented in docs/config.md (generated from the `description`s below by `config_reference()`).
Unknown keys are rejected. A bad config raises `ConfigError` with one line that names the key.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .protocol import ProtocolError, parse_protocol

__all__ = ["Config", "ConfigError", "load_config", "validate", "apply_overrides", "physics_hash", "to_toml", "to_dict"]


class ConfigError(ValueError):
    """Bad configuration: message is one line naming the offending key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


PosFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)]


# --------------------------------------------------------------------------------------------
# [rve]
class SizeDist(_Strict):
    mean_diameter: PosFloat = Field(description="mean particle diameter [m] (lognormal)")
    cv: float = Field(0.3, ge=0, le=2, description="coefficient of variation of the diameter [-]")


class ParticleSpec(_Strict):
    phase: str = Field(description="solid phase (a key of [materials])")
    center: tuple[float, float] = Field(description="centre [x, y] [m]")
    radius: PosFloat = Field(description="radius [m]")


class RVE(_Strict):
    kind: Literal["random", "particles", "block"] = Field("random", description="RVE kind")
    width: PosFloat = Field(40e-6, description="RVE width [m]")
    height: PosFloat = Field(40e-6, description="RVE height [m]")
    seed: int = Field(1, ge=0, description="random seed of the packing (kind = random)")
    mesh_size: PosFloat = Field(0.8e-6, description="element size inside particles [m] (refined in narrow gaps)")
    min_gap: float = Field(0.05e-6, ge=0, allow_inf_nan=False,
                           description="smallest initial gap between separate bodies [m]")
    fractions: dict[str, Fraction] = Field(
        default_factory=dict, description="kind = random: area fraction per solid phase; pores are the rest")
    size: dict[str, SizeDist] = Field(default_factory=dict,
                                      description="kind = random: size distribution per solid phase")
    particles: list[ParticleSpec] = Field(default_factory=list, description="kind = particles: explicit circles")
    phase: str | None = Field(None, description="kind = block: the phase filling the RVE")
    mesh_pores: bool = Field(True, description="`mesh` command: mesh the pore space as its own group")

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
        cells = 4.0 * self.width * self.height / self.mesh_size**2
        if cells > 4e6:
            raise ValueError(f"rve.mesh_size: too small for the RVE (~{cells:.2g} cells; at most 4e6)")
        return self

    def phases(self) -> list[str]:
        if self.kind == "random":
            return list(self.fractions)
        if self.kind == "particles":
            return list(dict.fromkeys(p.phase for p in self.particles))
        return [self.phase]


# --------------------------------------------------------------------------------------------
# [boundary]
class Pressure(_Strict):
    pressure: float = Field(description="constant pressure on that side [Pa] (> 0 compresses)",
                            allow_inf_nan=False)


Side = Union[Literal["roller", "free"], Pressure]


class Boundary(_Strict):
    left: Side = Field("roller", description='"roller" (zero normal displacement), "free", or {pressure = P}')
    right: Side = Field("roller", description="as left")
    bottom: Side = Field("roller", description="as left")
    top: Side = Field("roller", description="as left")

    @model_validator(mode="after")
    def _rigid(self):
        if not any(getattr(self, s) == "roller" for s in ("left", "right")) or \
                not any(getattr(self, s) == "roller" for s in ("bottom", "top")):
            raise ValueError("boundary: need at least one roller among left/right and one among "
                             "bottom/top (else rigid-body motion is free)")
        return self

    def kind(self, side: str) -> str:
        v = getattr(self, side)
        return v if isinstance(v, str) else "pressure"


# --------------------------------------------------------------------------------------------
# [materials.X]
class Creep(_Strict):
    A: float = Field(description="Norton rate coefficient [1/s] (strain rate at sigma_e = sigma_ref)",
                     ge=0, allow_inf_nan=False)
    n: float = Field(description="stress exponent [-], >= 1", ge=1, le=50, allow_inf_nan=False)
    sigma_ref: PosFloat = Field(description="reference stress [Pa]")
    Q: float = Field(0.0, ge=0, allow_inf_nan=False, description="activation energy [J/mol] (0: no Arrhenius)")
    T_ref: PosFloat = Field(343.15, description="temperature at which A is given [K]")


class Lithiated(_Strict):
    youngs_modulus: PosFloat | None = Field(None, description="Young's modulus at theta = 1 [Pa]")
    poisson_ratio: float | None = Field(None, gt=-1, lt=0.5, description="Poisson ratio at theta = 1 [-]")
    creep: Creep | None = Field(None, description="creep parameters at theta = 1 (A, sigma_ref log-linear, n linear in theta)")


class Material(_Strict):
    active: bool = Field(False, description="lithiated by the protocol (swells)")
    youngs_modulus: PosFloat = Field(description="Young's modulus (delithiated) [Pa]")
    poisson_ratio: float = Field(description="Poisson ratio (delithiated) [-], -1 < nu < 0.5", gt=-1, lt=0.5,
                                 allow_inf_nan=False)
    volume_ratio_lithiated: PosFloat = Field(1.0, description="J_l,max: volume ratio at theta = 1 [-]")
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
        if self.volume_ratio_lithiated > 10:
            raise ValueError("volume_ratio_lithiated: absurd (> 10)")
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
class Cycling(_Strict):
    protocol: list[str] = Field(["Lithiate at 0.1C", "Delithiate at 0.1C"],
                                description="steps of one cycle, repeated `cycles` times")
    cycles: int = Field(20, ge=1, le=100000, description="number of cycles")
    temperature: PosFloat = Field(343.15, description="temperature [K] (Arrhenius factor on A)")
    initial_theta: float = Field(0.0, ge=0, le=1, description="state of lithiation at t = 0")

    @field_validator("protocol")
    @classmethod
    def _protocol(cls, v):
        try:
            parse_protocol(v)
        except ProtocolError as e:
            raise ValueError(str(e)) from None
        return v


class ContactSettings(_Strict):
    tolerance: float | None = Field(None, gt=0, allow_inf_nan=False,
                                    description="contact_tolerance [m]: a boundary point is in contact when its "
                                                "deformed gap is at most this (default: 0.5 x dhat)")
    dhat: float | None = Field(None, gt=0, allow_inf_nan=False,
                               description="barrier activation distance [m] (default: min(min_gap/2, mesh_size/8), the "
                                           "boundary resolution near gaps)")
    stiffness: float = Field(1e-3, gt=0, allow_inf_nan=False,
                             description="barrier stiffness kappa (a stress) relative to the smallest Young's "
                                         "modulus of the solid phases [-]")
    project_hessian: bool = Field(False, description="always project the barrier Hessian onto the PSD cone (robust, "
                                                     "linear convergence); default: exact Hessian, projected only "
                                                     "when Newton meets a non-descent direction")
    proximal_relaxations: int = Field(3, ge=0, le=50, description="re-solves of a step anchored at its solution "
                                                                 "while the proximal energy exceeds the tolerance")
    proximal_tolerance: float = Field(1e-3, gt=0, allow_inf_nan=False,
                                      description="acceptable proximal energy / stored energy of a step [-]")
    proximal: float = Field(1e-2, ge=0, allow_inf_nan=False,
                            description="proximal (pseudo-time) stiffness for floating bodies, relative to "
                                        "E_max / L^2 [-]")


class Solver(_Strict):
    element_degree: Literal[1, 2] = Field(2, description="Lagrange degree of the displacement (2 avoids locking)")
    quadrature_degree: int | None = Field(None, ge=1, le=8, description="quadrature degree (default 2 x (degree - 1), min 1)")
    rtol: float = Field(1e-8, gt=0, lt=1, description="Newton relative residual tolerance")
    atol: float = Field(1e-8, gt=0, description="Newton absolute residual tolerance (internal units: nodal force / "
                                                "(E_max L0), L0 = min(width, height)/40)")
    max_iterations: int = Field(40, ge=1, le=500, description="Newton iterations per step")
    dt_initial: PosFloat = Field(60.0, description="first time step [s]")
    dt_min: PosFloat = Field(1e-3, description="smallest time step before giving up [s]")
    stall_steps: int = Field(100, ge=2, le=100000, description="the run fails as stalled when this many consecutive "
                                                               "steps together cover less than stall_fraction of their "
                                                               "protocol step")
    stall_fraction: float = Field(0.01, ge=0, lt=1, description="see stall_steps (0 disables the check) [-]")
    dt_max: PosFloat = Field(3600.0, description="largest time step [s]")
    max_theta_increment: Fraction = Field(0.05, description="largest change of theta per step [-]")
    max_creep_increment: PosFloat = Field(0.02, description="largest equivalent creep strain increment per step [-]")
    creep_increment_quantile: float = Field(0.99, gt=0, le=1, description="the bound holds for this quantile of "
                                            "the quadrature points (1 = every point; hot spots above it are left "
                                            "to backward Euler's stability) [-]")
    newton_continuations: int = Field(0, ge=0, le=20, description="when Newton reaches max_iterations, go on from its "
                                                              "last iterate this many times before cutting the step "
                                                              "(elastic snap-through between jammed particles)")
    max_cutbacks: int = Field(8, ge=0, le=40, description="halvings of a failing step before the run fails")
    growth: float = Field(1.5, gt=1, le=10, description="step growth factor after an easy step")
    easy_iterations: int = Field(12, ge=0, le=500, description="a step that took at most this many Newton "
                                                               "iterations is easy: the next one grows")
    hard_iterations: int = Field(30, ge=1, le=500, description="a step that took more Newton iterations than this "
                                                               "is hard: the next one shrinks by 0.7")
    log_newton: bool = Field(False, description="print every Newton iteration (debugging)")
    predictor: bool = Field(True, description="start each step from the extrapolated last increment")
    checkpoint_every: int = Field(0, ge=0, description="write a checkpoint every N steps (0: cycle ends only)")

    @model_validator(mode="after")
    def _dt(self):
        if self.dt_min > self.dt_max:
            raise ValueError("solver.dt_min: must not exceed dt_max")
        return self


class Output(_Strict):
    fields: Literal["none", "cycle_ends", "every_step"] = Field("cycle_ends", description="ParaView fields to write")
    plots: bool = Field(True, description="write plots/*.png at the end")
    progress: bool = Field(True, description="show a progress line on rank 0")


class Config(_Strict):
    rve: RVE = Field(default_factory=RVE)
    boundary: Boundary = Field(default_factory=Boundary)
    materials: dict[str, Material] = Field(description="one table per solid phase")
    cycling: Cycling = Field(default_factory=Cycling)
    contact: ContactSettings = Field(default_factory=ContactSettings)
    solver: Solver = Field(default_factory=Solver)
    output: Output = Field(default_factory=Output)

    @model_validator(mode="after")
    def _cross(self):
        for p in self.rve.phases():
            if p not in self.materials:
                raise ValueError(f"materials.{p}: phase {p!r} is used by the RVE but has no [materials.{p}] table")
        return self

    def used_materials(self) -> dict[str, Material]:
        return {p: self.materials[p] for p in self.rve.phases()}


# --------------------------------------------------------------------------------------------
def _loc(err: dict) -> str:
    parts = []
    for x in err.get("loc", ()):
        if isinstance(x, int):
            parts.append(f"[{x}]")
        elif x == "Pressure" or "[" in str(x):  # union-member / validator tags, not config keys
            continue
        else:
            parts.append(("." if parts else "") + str(x))
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
    got = ""
    if err["type"] not in ("value_error",) and not isinstance(inp, (dict, list)):
        got = f" (got {inp!r})"
    if loc and msg.startswith(loc.split(".")[0] + "."):
        return msg  # validator already named the key
    if msg.startswith(("rve.", "materials.", "boundary", "solver.", "cycling.", "volume_ratio")) and not loc:
        return msg
    return f"{loc}: {msg}{got}" if loc else f"{msg}{got}"


def validate(data: dict) -> Config:
    from .library import resolve_materials  # `use = "Se"` / `materials.Se = "Se"` -> the library's explicit values

    data = resolve_materials(data)
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_message(e)) from None


def load_toml(path: str | Path) -> dict:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{path}: config file not found")
    if p.is_dir():
        raise ConfigError(f"{path}: is a directory, not a config file")
    try:
        text = p.read_bytes().decode("utf-8")
    except PermissionError:
        raise ConfigError(f"{path}: config file not readable (permission denied)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read config file ({e.__class__.__name__})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None


def parse_value(text: str) -> Any:
    """A `--set` value: a TOML value, or a bare word taken as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    from .library import expand_short_forms  # materials.X = "name" -> { use = "name" }, so --set can reach into it

    data = copy.deepcopy(expand_short_forms(data))
    for ov in overrides or []:
        if "=" not in ov:
            raise ConfigError(f"--set {ov!r}: expected key.path=value")
        key, val = ov.split("=", 1)
        key = key.strip()
        parts = key.split(".")
        if not key or any(not p for p in parts):
            raise ConfigError(f"--set {ov!r}: bad key path")
        d = data
        for p in parts[:-1]:
            if p not in d:
                d[p] = {}
            if not isinstance(d[p], dict):
                raise ConfigError(f"--set {key}: {p!r} is not a table")
            d = d[p]
        d[parts[-1]] = parse_value(val.strip())
    return data


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    return validate(apply_overrides(load_toml(path), overrides or []))


def to_dict(cfg: Config) -> dict:
    return cfg.model_dump(mode="json", exclude_none=True)


def to_toml(cfg: Config) -> str:
    """The normalised config as TOML (a resolved config.toml)."""
    return _dump_toml(to_dict(cfg))


def physics_hash(cfg: Config) -> str:
    """Hash of everything that changes the answer (not output or progress settings)."""
    d = to_dict(cfg)
    d.pop("output", None)
    d.get("solver", {}).pop("checkpoint_every", None)
    for m in d.get("materials", {}).values():  # citations are provenance, not physics
        m.pop("source", None)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


# -- minimal TOML writer (tomllib reads only) --------------------------------------------------
def _tv(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_tv(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_tv(x)}" for k, x in v.items()) + " }"
    raise TypeError(type(v))


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else json.dumps(k)


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
