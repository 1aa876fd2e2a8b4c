"""Material-point laws: one object per constitutive law (no DOLFINx).

A law (in the spirit of MOOSE's `StressUpdate` and fenicsx-pulse's strain energies) owns, at a set
of quadrature points:

- its **properties**, evaluated from the config table of a phase (`properties`: a typed record in
  model units, one per phase, stacked per point by `MaterialPoints`);
- its **internal variables** (`state_variables`: name, components, initial value, and the field
  name under which it is written for ParaView): they are what a checkpoint stores;
- the **step**: `update(F, state_n, props, dt, tangent)` returns the first Piola-Kirchhoff stress,
  its consistent tangent, the Kirchhoff/Cauchy stresses, the updated internal variables and the
  equivalent inelastic strain increment of the step; `energy_density` gives the incremental
  potential of the step per reference area (stored energy + dissipation), whose derivative the
  stress is.

Adding a law: one new file with a `MaterialLaw` subclass decorated with `@register` (built in:
import it below) or anywhere importable, named in a config as `law = "package.module:Class"`.
Law-specific config values go in `[materials.<phase>] parameters = {...}`, validated by the law's
`Parameters` (a pydantic model; its schema entry).

Laws available: `hencky_norton` (default; Hencky elasticity, swelling, Norton creep).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import numpy as np

__all__ = ["MaterialLaw", "StateVariable", "PointResponse", "register", "law_class", "DEFAULT_LAW"]

DEFAULT_LAW = "hencky_norton"
_REGISTRY: dict[str, type] = {}
_BUILTIN = {"hencky_norton": "creep_cathode.laws.hencky_norton"}


@dataclass(frozen=True)
class StateVariable:
    """An internal variable per quadrature point: `components` values (1: a scalar per point),
    `initial` value(s), and the ParaView field name it is written as (None: not written).
    `history`: time-integration history (e.g. the state one step back for BDF2), which a
    checkpoint written before the law had it may lack: it then keeps its initial value and the
    integration restarts with a one-step method."""

    name: str
    components: int
    initial: tuple
    description: str = ""
    field: str | None = None
    history: bool = False

    def initial_array(self, npoints: int) -> np.ndarray:
        """The initial values at `npoints` points: shape (npoints,) or (npoints, components)."""
        if self.components == 1:
            return np.full(npoints, float(self.initial[0]))
        return np.tile(np.array(self.initial, dtype=float), (npoints, 1))


@dataclass
class PointResponse:
    """The result of one step at N points (model units; in-plane tensors, F33 = 1).

    P (N,2,2) first Piola-Kirchhoff; dPdF (N,2,2,2,2) its algorithmic tangent or None; tau, sigma
    (N,4) Kirchhoff and Cauchy [11, 22, 12, 33]; vm (N,) von Mises of sigma; state: the internal
    variables at the end of the step; deps (N,) equivalent inelastic strain increment of the
    step; ratio (N,) equivalent stress over its elastic trial value (1: no flow) or None."""

    P: np.ndarray
    dPdF: np.ndarray | None
    tau: np.ndarray
    sigma: np.ndarray
    vm: np.ndarray
    state: dict = field(default_factory=dict)
    deps: np.ndarray | None = None
    ratio: np.ndarray | None = None


class MaterialLaw:
    """Base class of a material-point law; see the module docstring for the contract."""

    #: the name a config uses (`law = "..."`)
    name: str = ""
    #: pydantic model of `[materials.<phase>] parameters`, or None (then parameters must be empty)
    Parameters = None
    #: internal variables (each law declares its own)
    state_variables: tuple[StateVariable, ...] = ()

    def properties(self, material, theta, temperature: float, scaling):
        """Properties of one phase (config `Material`) at state of lithiation `theta` (a float,
        or an array over that phase's points) and `temperature` [K], in model units (`scaling`):
        a frozen dataclass whose fields are floats (or arrays)."""
        raise NotImplementedError

    def update(self, F: np.ndarray, state: dict, props, dt: float, tangent: bool) -> PointResponse:
        """One step at N points: F (N,2,2), `state` the internal variables at the start of the step,
        `props` the per-point property record, `dt` the step [s]. Returns a PointResponse."""
        raise NotImplementedError

    def energy_density(self, response: PointResponse, F: np.ndarray, props) -> np.ndarray:
        """Incremental potential of the step per reference area at each point (inf where det F <= 0)."""
        raise NotImplementedError

    # Optional (MaterialPoints uses them where a law defines them):
    #   start(state, props, dt) -> per-step data from the committed state, computed once per step and
    #       passed back to update as state["_start"] (e.g. an extrapolated start state); None: nothing
    #   error_order(state, dt) -> the order p of step_error in dt (local error ~ dt^p; default 2)
    #   step_increment(response, dt) -> the step's equivalent inelastic strain increment per point, where it
    #       is more than response.deps (the part the return solved for, which energy_density uses)
    #   integrator: str, set from solver.creep_integrator for laws that integrate a rate in time

    def step_error(self, response: PointResponse, state: dict, props, dt: float) -> np.ndarray:
        """Local time-integration error of the step at each point, as an equivalent stress (model
        units; zeros for a rate-independent law). The step controller keeps it, averaged over each
        phase, below solver.creep_tolerance of the phase's mean equivalent stress (in the spirit of
        MOOSE's computeTimeStepLimit)."""
        return np.zeros(len(response.vm))


def register(cls):
    """Class decorator: make a law available under `cls.name`."""
    if not cls.name:
        raise ValueError(f"{cls.__name__}: a law needs a name")
    _REGISTRY[cls.name] = cls
    return cls


def law_class(name: str | None) -> type:
    """The law class for a config's `law` value: a registered name (None: the default) or
    "package.module:Class". Raises ValueError (one line) when it cannot be found."""
    name = name or DEFAULT_LAW
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])
        return _REGISTRY[name]
    if ":" in name:
        mod, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"cannot import law {name!r} ({e.__class__.__name__}: {e})") from None
        if not (isinstance(cls, type) and issubclass(cls, MaterialLaw)):
            raise ValueError(f"{name!r} is not a MaterialLaw subclass")
        return cls
    known = sorted(set(_REGISTRY) | set(_BUILTIN))
    raise ValueError(f"unknown law {name!r} (known: {', '.join(known)}; or 'package.module:Class')")
