"""The constitutive state of every quadrature point of the RVE (no DOLFINx).

`MaterialPoints` holds, for N quadrature points with a phase each: the material-point law of each
phase (creep_cathode.laws), the per-point property records at the current theta, the internal
variables (one array per variable the laws declare) and the step update. The mechanics gives it
deformation gradients and gets stresses, tangents and the step energy back; it knows nothing
about meshes or forms.
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np

from .laws import PointResponse, law_class


class MaterialPoints:
    """Constitutive state of N points.

    materials: {phase: config Material}, in phase order; point_phase: (N,) index into that order;
    temperature [K]; scaling: creep_cathode.units.Scaling."""

    def __init__(self, materials: dict, point_phase: np.ndarray, temperature: float, scaling,
                 integrator: str = "bdf2"):
        self.materials = dict(materials)
        self.phases = list(self.materials)
        self.point_phase = np.asarray(point_phase)
        self.temperature, self.scaling = temperature, scaling
        n = len(self.point_phase)
        # group the phases by law (one law object per law class)
        laws, groups = {}, {}
        for i, p in enumerate(self.phases):
            cls = law_class(self.materials[p].law)
            laws.setdefault(cls, cls())
            groups.setdefault(cls, []).append(i)
        self.groups = []  # (law, phase indices, point index or None for all points)
        for law in laws.values():
            if hasattr(law, "integrator"):  # laws that integrate a rate in time (solver.creep_integrator)
                law.integrator = integrator
        for cls, ph in groups.items():
            idx = None if len(groups) == 1 else np.flatnonzero(np.isin(self.point_phase, ph))
            self.groups.append((laws[cls], ph, idx))
        self.state: dict[str, np.ndarray] = {}
        self.variables = {}
        for law, _, _ in self.groups:
            for v in law.state_variables:
                old = self.variables.get(v.name)
                if old is not None and (old.components, old.initial) != (v.components, v.initial):
                    raise ValueError(f"internal variable {v.name!r} declared differently by two laws")
                self.variables[v.name] = v
                self.state.setdefault(v.name, v.initial_array(n))
        self._props = None
        self._start = [None] * len(self.groups)
        self.dt = 0.0

    @property
    def npoints(self) -> int:
        return len(self.point_phase)

    # ------------------------------------------------------------------ properties
    def set_state(self, theta: dict, dt: float) -> None:
        """Properties at the state of lithiation `theta` ({phase: float or array over the phase's
        points}; phases not named: 0) and the step `dt` [s]."""
        self.dt = dt
        props = []
        for law, ph, idx in self.groups:
            recs = [law.properties(self.materials[self.phases[i]], theta.get(self.phases[i], 0.0), self.temperature,
                                   self.scaling) for i in ph]
            local = self.point_phase if idx is None else self.point_phase[idx]
            props.append(_stack(recs, ph, local))
        self._props = props
        # each law's per-step work on the committed state (e.g. BDF2's extrapolated creep state),
        # done once here instead of at every Newton iterate: `law.start(state, props, dt)`, optional
        self._start = [law.start(self._group_state(idx), p, dt) if hasattr(law, "start") else None
                       for (law, _, idx), p in zip(self.groups, props)]

    def _group_state(self, idx) -> dict:
        return self.state if idx is None else {k: v[idx] for k, v in self.state.items()}

    def _step_state(self, g: int, idx) -> dict:
        """The committed state of group g, with the law's per-step start data as "_start"."""
        st = self._group_state(idx)
        return st if self._start[g] is None else {**st, "_start": self._start[g]}

    # ------------------------------------------------------------------ step
    def update(self, F: np.ndarray, tangent: bool) -> PointResponse:
        """The step at every point from the committed state: F (N,2,2) -> PointResponse."""
        if len(self.groups) == 1:
            law, _, _ = self.groups[0]
            return law.update(F, self._step_state(0, None), self._props[0], self.dt, tangent)
        out = None
        for g, ((law, _, idx), props) in enumerate(zip(self.groups, self._props)):
            r = law.update(F[idx], self._step_state(g, idx), props, self.dt, tangent)
            if out is None:
                out = _empty_response(self, tangent)
            _scatter(out, r, idx)
        return out

    def energy_density(self, response: PointResponse, F: np.ndarray) -> np.ndarray:
        """Incremental potential per reference area at each point (inf where inadmissible)."""
        if len(self.groups) == 1:
            law, _, _ = self.groups[0]
            return law.energy_density(response, F, self._props[0])
        W = np.empty(self.npoints)
        for (law, _, idx), props in zip(self.groups, self._props):
            part = PointResponse(response.P[idx], None, response.tau[idx], response.sigma[idx], response.vm[idx],
                                 {k: v[idx] for k, v in response.state.items()},
                                 None if response.deps is None else response.deps[idx],
                                 None if response.ratio is None else response.ratio[idx])
            W[idx] = law.energy_density(part, F[idx], props)
        return W

    def step_error(self, response: PointResponse) -> np.ndarray:
        """Each law's local time-integration error estimate of the step, per point (relative)."""
        if len(self.groups) == 1:
            law, _, _ = self.groups[0]
            return law.step_error(response, self.state, self._props[0], self.dt)
        err = np.zeros(self.npoints)
        for (law, _, idx), props in zip(self.groups, self._props):
            part = PointResponse(response.P[idx], None, response.tau[idx], response.sigma[idx], response.vm[idx],
                                 {}, None if response.deps is None else response.deps[idx],
                                 None if response.ratio is None else response.ratio[idx])
            err[idx] = law.step_error(part, {k: v[idx] for k, v in self.state.items()}, props, self.dt)
        return err

    def step_increment(self, response: PointResponse) -> np.ndarray:
        """The equivalent inelastic strain increment of the step per point: a law's
        `step_increment(response, dt)` where it defines one (BDF2: the explicit part included),
        else response.deps."""
        if all(not hasattr(law, "step_increment") for law, _, _ in self.groups):
            return response.deps
        out = np.array(response.deps, dtype=float, copy=True)
        for law, _, idx in self.groups:
            if hasattr(law, "step_increment"):
                d = law.step_increment(response, self.dt)  # over all points; this group's are kept
                if idx is None:
                    out[:] = d
                else:
                    out[idx] = d[idx]
        return out

    def error_order(self) -> int:
        """The order in dt of the laws' local error estimates for the current step (2: first-order
        integration, 3: second order; the lowest over the laws)."""
        orders = [law.error_order(self._group_state(idx), self.dt)
                  for law, _, idx in self.groups if hasattr(law, "error_order")]
        return min(orders, default=2)

    def commit(self, response: PointResponse) -> None:
        """Accept the step: the internal variables become those of `response`."""
        for k, v in response.state.items():
            self.state[k][:] = v

    def shear_modulus(self) -> np.ndarray:
        """Per point shear modulus at the current state (model units), for laws that have one (else 0)."""
        out = np.zeros(self.npoints)
        for (law, _, idx), props in zip(self.groups, self._props):
            mu = getattr(props, "mu", 0.0)
            if idx is None:
                out[:] = mu
            else:
                out[idx] = mu
        return out

    def equivalent_creep(self) -> np.ndarray:
        """Equivalent inelastic (creep) strain per point (zeros for laws that have none)."""
        v = self.state.get("eps_cr")
        return v if v is not None else np.zeros(self.npoints)


def _stack(records: list, phases: list[int], point_phase: np.ndarray):
    """One record with per-point arrays from one record per phase (floats or arrays)."""
    cls = type(records[0])
    names = [f.name for f in fields(cls)]
    if all(np.isscalar(getattr(r, k)) for r in records for k in names):
        tab = np.array([[getattr(r, k) for k in names] for r in records])
        where = np.searchsorted(np.asarray(phases), point_phase) if list(phases) != list(range(len(phases))) \
            else point_phase
        return cls(**{k: tab[where, c] for c, k in enumerate(names)})
    out = {k: np.empty(len(point_phase)) for k in names}
    for r, i in zip(records, phases):
        m = point_phase == i
        for k in names:
            out[k][m] = getattr(r, k)
    return cls(**out)


def _empty_response(mp: MaterialPoints, tangent: bool) -> PointResponse:
    n = mp.npoints
    return PointResponse(np.empty((n, 2, 2)), np.empty((n, 2, 2, 2, 2)) if tangent else None, np.empty((n, 4)),
                         np.empty((n, 4)), np.empty(n), {k: v.copy() for k, v in mp.state.items()},
                         np.zeros(n), np.ones(n))


def _scatter(out: PointResponse, r: PointResponse, idx) -> None:
    out.P[idx], out.tau[idx], out.sigma[idx], out.vm[idx] = r.P, r.tau, r.sigma, r.vm
    if out.dPdF is not None:
        out.dPdF[idx] = r.dPdF
    for k, v in r.state.items():
        out.state[k][idx] = v
    if r.deps is not None:
        out.deps[idx] = r.deps
    if r.ratio is not None:
        out.ratio[idx] = r.ratio
