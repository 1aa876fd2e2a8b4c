"""The metric registry: what a run reports per step (timeseries.csv) and per cycle (cycles.csv).

Each metric declares its columns once (`columns(phases)`: name, label, unit, kind) and computes
them from a `Probe` of the run at the current step (`compute(probe)`). The order of `METRICS` is
the column order of the CSV files; plots, the results table and sweeps read columns through this
module (DESIGN §3 defines the quantities, §5 the column names). Imports no DOLFINx.

Adding a metric: a `Metric` subclass here (or appended to METRICS by a plugin) with its columns
and its computation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from mpi4py import MPI

#: a state whose proximal / stored energy (`proximal_energy_ratio`) exceeds this many times
#: contact.proximal_tolerance is not in equilibrium: the regularisation, not the loads, holds its
#: floating bodies (the flag of scripts/screening.py's map and scripts/experiments.py's stack tables)
EQUILIBRIUM_FLAG = 10.0


@dataclass(frozen=True)
class Column:
    """One CSV column: name, human label, SI unit ("" for ratios, "-" dimensionless), kind
    ("time", "state", "contact", "stress", "strain", "porosity", "solver", "geometry", "fracture")
    and the phase(s) it is about."""

    name: str
    label: str
    unit: str
    kind: str
    phase: str | None = None
    other: str | None = None


@dataclass
class Probe:
    """What metrics read at a step: the mechanics (creep_cathode.mechanics.Mechanics), the contact
    tolerance, the time, cycle, step count, theta ({phase: value}), the Newton result of the step
    (None for the initial state) and the proximal relaxation hook (or None)."""

    mech: object
    tolerance: float
    time: float
    cycle: int
    step: int
    theta: dict
    info: object = None
    proximal: object = None
    _cache: dict = field(default_factory=dict)

    @property
    def phases(self) -> list[str]:
        return self.mech.phases

    def phase_integrals(self) -> dict:
        """Per-phase deformed areas and area integrals of the stress fields (reduced over ranks), the
        solid area now and at rest, and the box size (model units); computed once per probe."""
        if "phase" not in self._cache:
            self._cache["phase"] = _phase_integrals(self.mech)
        return self._cache["phase"]


class Metric:
    """Base class: `columns(phases)` -> [Column]; `compute(probe)` -> {column name: value} (SI)."""

    def columns(self, phases: list[str]) -> list[Column]:
        raise NotImplementedError

    def compute(self, probe: Probe) -> dict:
        raise NotImplementedError


class StepClock(Metric):
    def columns(self, phases):
        return [Column("time_s", "time", "s", "time"), Column("cycle", "cycle", "-", "time"),
                Column("step", "accepted steps", "-", "time")]

    def compute(self, probe):
        return {"time_s": probe.time, "cycle": probe.cycle, "step": probe.step}


class Lithiation(Metric):
    def columns(self, phases):
        return [Column(f"theta_{p}", f"state of lithiation, {p}", "-", "state", p) for p in phases]

    def compute(self, probe):
        return {f"theta_{p}": probe.theta.get(p, 0.0) for p in probe.phases}


class ContactMatrix(Metric):
    """Contact ratios (DESIGN §3): the boundary length of A-particles within the contact
    tolerance of a B-particle (or of any other particle), over the boundary length of A."""

    def columns(self, phases):
        return [Column(f"contact_{a}_{b}", f"{a}-{b} contact ratio ({a} boundary)", "", "contact", a, b)
                for a in phases for b in phases] + \
               [Column(f"contact_{a}_any", f"{a} boundary in contact with any particle", "", "contact", a, "any")
                for a in phases]

    def compute(self, probe):
        mech, ph = probe.mech, probe.phases
        out = {c.name: 0.0 for c in self.columns(ph)}
        if mech.contact is None:
            return out
        lengths, totals = mech.contact.contact_lengths(mech.u.x.array, probe.tolerance, mech.tag2phase)
        for a in ph:
            tot = totals.get(a, 0.0)
            if tot <= 0:
                continue
            for b in ph:
                out[f"contact_{a}_{b}"] = lengths.get((a, b), 0.0) / tot
            out[f"contact_{a}_any"] = lengths.get((a, "any"), 0.0) / tot
        return out


class PhaseStress(Metric):
    """Area-weighted mean (deformed configuration) and maximum von Mises stress per phase, and the
    mean equivalent creep strain."""

    def columns(self, phases):
        out = []
        for p in phases:
            out += [Column(f"vm_mean_{p}_Pa", f"mean von Mises, {p}", "Pa", "stress", p),
                    Column(f"vm_max_{p}_Pa", f"peak von Mises, {p}", "Pa", "stress", p),
                    Column(f"creep_eq_mean_{p}", f"mean equivalent creep strain, {p}", "-", "strain", p)]
        return out

    def compute(self, probe):
        I, S0 = probe.phase_integrals(), probe.mech.S0
        out = {}
        for p in probe.phases:
            out[f"vm_mean_{p}_Pa"] = _mean(I, "vm", p) * S0
            out[f"vm_max_{p}_Pa"] = I["vm_max"][p] * S0
            out[f"creep_eq_mean_{p}"] = _mean(I, "creep", p)
        return out


class Porosity(Metric):
    def columns(self, phases):
        return [Column("porosity", "porosity", "", "porosity")]

    def compute(self, probe):
        I = probe.phase_integrals()
        return {"porosity": max(0.0, 1.0 - I["solid"] / (I["width"] * I["height"]))}


class SolverStats(Metric):
    def columns(self, phases):
        return [Column("newton_iterations", "Newton iterations of the step", "-", "solver"),
                Column("dt_s", "time step", "s", "solver"),
                Column("proximal_energy_ratio", "proximal energy / stored energy", "-", "solver")]

    def compute(self, probe):
        info = probe.info
        return {"newton_iterations": info.iterations if info else 0, "dt_s": probe.mech.dt,
                "proximal_energy_ratio": probe.proximal.last_ratio if (info and probe.proximal) else 0.0}


class BoxChange(Metric):
    """Solid area over its initial value, and the width and height change of the box (sides that
    move: free or under pressure; the electrode thickness change of DESIGN §3)."""

    def columns(self, phases):
        return [Column("solid_area_ratio", "solid area / initial", "-", "geometry"),
                Column("width_change", "box width change", "-", "geometry"),
                Column("height_change", "box height change (thickness)", "-", "geometry")]

    def compute(self, probe):
        I, mech = probe.phase_integrals(), probe.mech
        return {"solid_area_ratio": I["solid"] / I["solid0"], "width_change": I["width"] / mech.W - 1.0,
                "height_change": I["height"] / mech.H - 1.0}


class PhaseStressComponents(Metric):
    def columns(self, phases):
        out = []
        for p in phases:
            out += [Column(f"s33_mean_{p}_Pa", f"mean out-of-plane stress, {p}", "Pa", "stress", p),
                    Column(f"pressure_mean_{p}_Pa", f"mean pressure, {p}", "Pa", "stress", p)]
        return out

    def compute(self, probe):
        I, S0 = probe.phase_integrals(), probe.mech.S0
        return {k: v for p in probe.phases for k, v in ((f"s33_mean_{p}_Pa", _mean(I, "s33", p) * S0),
                                                         (f"pressure_mean_{p}_Pa", _mean(I, "pressure", p) * S0))}


class FractureRisk(Metric):
    """Fracture-risk indicator (creep_cathode.fracture): the deformed-area share of each phase whose
    maximum principal Cauchy stress exceeds the fracture strength of its material at its theta
    (config `materials.<phase>.strength`, else the library entry's, linear in theta). NaN for a phase
    without a known strength. The model's stand-in for pulverisation: it has no fracture itself."""

    def __init__(self):
        self._strengths = (None, {})  # (the config they were read from, {phase: Strength | None})

    def strengths(self, cfg) -> dict:
        if self._strengths[0] is not cfg:
            from .fracture import phase_strengths

            self._strengths = (cfg, phase_strengths(cfg))
        return self._strengths[1]

    def columns(self, phases):
        return [Column(f"fracture_risk_{p}", f"share of {p} above its fracture strength", "", "fracture", p)
                for p in phases]

    def compute(self, probe):
        from .fracture import exceeding_share, max_principal

        mech = probe.mech
        strengths = self.strengths(mech.cfg)
        s1 = max_principal(mech.sig_q) * mech.S0
        wdef = mech.wdet * mech.J_q
        out = {}
        for i, p in enumerate(probe.phases):
            s = strengths.get(p)  # the same on every rank: skipping is collective
            if s is None:
                out[f"fracture_risk_{p}"] = float("nan")
                continue
            m = mech.qphase == i
            out[f"fracture_risk_{p}"] = exceeding_share(s1[m], wdef[m], s.at(probe.theta.get(p, 0.0)), mech.comm)
        return out


#: the registry, in column order
METRICS: list[Metric] = [StepClock(), Lithiation(), ContactMatrix(), PhaseStress(), Porosity(), SolverStats(),
                         BoxChange(), PhaseStressComponents(), FractureRisk()]


def columns(phases: list[str]) -> list[Column]:
    """Every column of timeseries.csv for these phases, in order."""
    return [c for m in METRICS for c in m.columns(phases)]


def row(probe: Probe) -> dict:
    """One timeseries row: every metric's values, in column order."""
    out = {}
    for m in METRICS:
        out.update(m.compute(probe))
    return out


def phases_of(row: dict) -> list[str]:
    """The phases of a run, read off one of its rows (the vm_mean_<phase>_Pa columns)."""
    return [k[len("vm_mean_"):-len("_Pa")] for k in row if k.startswith("vm_mean_") and k.endswith("_Pa")]


def kind_columns(phases: list[str], kind: str) -> list[Column]:
    """The columns of one kind ("contact", "stress", ...) for these phases."""
    return [c for c in columns(phases) if c.kind == kind]


def in_state(rows: list[dict], state: str = "lithiated") -> list[dict]:
    """The cycles.csv rows at the end of a lithiation ("lithiated") or delithiation ("delithiated")."""
    return [r for r in rows if r.get("state") == state]


def _mean(integrals: dict, key: str, phase: str) -> float:
    """Area mean of an integrated field over a phase (deformed area; 0 for an empty phase)."""
    return integrals[key][phase] / (integrals["area"][phase] or 1.0)


def _phase_integrals(mech) -> dict:
    comm = mech.comm
    wdef = mech.wdet * mech.J_q  # deformed area weights
    out = {"area": {}, "vm": {}, "vm_max": {}, "creep": {}, "s33": {}, "pressure": {}}
    out["solid"] = comm.allreduce(float(wdef.sum()), op=MPI.SUM)
    out["solid0"] = comm.allreduce(float(mech.wdet.sum()), op=MPI.SUM)
    eps_cr, sig = mech.points.equivalent_creep(), mech.sig_q
    for i, p in enumerate(mech.phases):
        m = mech.qphase == i
        out["area"][p] = comm.allreduce(float(wdef[m].sum()), op=MPI.SUM)
        out["vm"][p] = comm.allreduce(float((mech.vm_q[m] * wdef[m]).sum()), op=MPI.SUM)
        out["vm_max"][p] = comm.allreduce(float(mech.vm_q[m].max()) if m.any() else 0.0, op=MPI.MAX)
        out["creep"][p] = comm.allreduce(float((eps_cr[m] * wdef[m]).sum()), op=MPI.SUM)
        out["s33"][p] = comm.allreduce(float((sig[m, 3] * wdef[m]).sum()), op=MPI.SUM)
        out["pressure"][p] = comm.allreduce(float((-(sig[m, 0] + sig[m, 1] + sig[m, 3]) / 3 * wdef[m]).sum()),
                                            op=MPI.SUM)
    # box: sides that move (free/pressure) - mean normal displacement of their wall dofs
    ext = mech.bc.mean_normal_displacement(mech.u.x.array, comm)
    out["width"] = mech.W + ext["right"] - ext["left"]
    out["height"] = mech.H + ext["top"] - ext["bottom"]
    return out
