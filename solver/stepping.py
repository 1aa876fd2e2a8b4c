"""Adaptive time stepping over the protocol schedule (no DOLFINx).

`Stepper` advances a problem through the segments of the cycling schedule: for each step it asks
the lithiation provider for theta, sets the problem's state, predicts, solves (Newton, given as a
callable), checks the step (creep increment), runs the post-solve hooks (e.g. proximal
relaxation), commits and reports. `StepController` owns the step size: it proposes a step, cuts
it after a rejection and grows it after an easy step (DESIGN §2: cut and retry when Newton
fails, grow when it is easy, never step over a protocol boundary, bounded creep increment), and
keeps the laws' local error estimate of creep below `creep_tolerance` (docs/physics.md).

The problem (a `SteppableProblem`) is seen only through NumPy arrays, so both classes are
testable without DOLFINx.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np


class SolverFailure(RuntimeError):
    """The mechanics could not be advanced (Newton failed after all cut-backs)."""


@dataclass
class StepInfo:
    """The outcome of one solve: converged, Newton iterations, reason, residual history."""

    converged: bool
    iterations: int
    reason: str = ""
    history: tuple = ()


class SteppableProblem(Protocol):
    """What the Stepper needs of a problem (u: the local NumPy array of the unknowns)."""

    def set_state(self, theta: dict, dt: float) -> None: ...  # noqa: E704
    def get_u(self) -> np.ndarray: ...  # noqa: E704
    def set_u(self, u: np.ndarray) -> None: ...  # noqa: E704
    def energy(self, u: np.ndarray) -> float: ...  # noqa: E704
    def max_step(self, u: np.ndarray, du: np.ndarray) -> float: ...  # noqa: E704
    def step_measures(self) -> dict: ...  # noqa: E704  ({"creep_increment", "creep_error", "creep_error_order"})
    def commit(self) -> None: ...  # noqa: E704


class StepController:
    """The step size. Takes the [solver] settings (dt_initial, dt_min, dt_max, growth,
    easy_iterations, hard_iterations, max_creep_increment, creep_tolerance, max_cutbacks).

    Creep error control: the local error of a step grows as dt^p (p = 2 for backward Euler, 3
    for BDF2: the `creep_error_order` of the step's measures), so a step whose error estimate is
    err (relative to creep_tolerance) is redone, and the next one taken, at dt 0.9 err^(-1/p),
    within [0.2 dt, the other rules].

    That rests on the error falling as dt^p. Where it does not (a packing below jamming settling
    under a stack pressure: each step moves the particles by what the proximal regularisation
    lets through, whatever dt, so the creep rates jump from step to step), cutting the step buys
    no accuracy and only exhausts the cut-backs. So a step redone for its creep error whose error
    then fell as dt^q with q < MIN_OBSERVED_ORDER over that cut-back is accepted as it is
    (`error_falls_with_step`), and the stepper counts and logs it."""

    #: the slowest fall of the creep error with the step (err ~ dt^q) that still counts as control
    MIN_OBSERVED_ORDER = 1.0

    def __init__(self, settings):
        self.s = settings
        self.dt = settings.dt_initial
        self.cuts = 0  # consecutive cut-backs of the current step
        self.bound = "step size"  # what set the last proposed step (for the stall message)
        self.why = "dt_initial"  # what set the step size: dt_initial, growth, hard, cut-back, creep_tolerance
        self.err_prev = None  # (dt, creep error) of the current step's last creep-error rejection
        self.observed_order = math.nan  # q of the last error_falls_with_step that had a previous rejection

    def propose(self, t: float, t_end: float, limit: float = math.inf, limit_name: str = "limit") -> float:
        """The next step from time t: at most the current step size, dt_max, `limit` (e.g. from
        the lithiation rate, named `limit_name`) and what is left of the segment; a remainder
        shorter than 1e-6 of the step is absorbed into it."""
        cands = [(self.dt, self.why), (self.s.dt_max, "dt_max"), (t_end - t, "segment end"), (limit, limit_name)]
        dt, self.bound = min(cands, key=lambda c: c[0])
        if t_end - (t + dt) < 1e-6 * dt:
            dt, self.bound = t_end - t, "segment end"
        return dt

    def can_reject(self, dt: float) -> bool:
        """Whether a converged step of size dt may still be refused for its creep increment."""
        return dt > self.s.dt_min * 1.0001

    def error_falls_with_step(self, dt: float, creep_error: float) -> bool:
        """Whether the creep error of this (shortened) step fell with the step since the step's
        last creep-error rejection, as dt^q with q >= MIN_OBSERVED_ORDER; True without one."""
        if self.err_prev is None:
            return True
        dt0, e0 = self.err_prev
        if not (0 < dt < dt0 and creep_error > 0):
            return True
        self.observed_order = math.log(e0 / creep_error) / math.log(dt0 / dt)
        return self.observed_order >= self.MIN_OBSERVED_ORDER

    def error_factor(self, creep_error: float, order: int = 2) -> float:
        """dt_new / dt that brings a step's creep error estimate (local error ~ dt^order) to 0.9^order
        of the tolerance (>= 0.2)."""
        tol = self.s.creep_tolerance
        r = creep_error / tol if tol > 0 else 0.0
        if r <= 0:
            return math.inf
        return max(0.2, 0.9 / math.sqrt(r) if order == 2 else 0.9 * r ** (-1.0 / order))

    def reject(self, dt: float, creep_increment: float = 0.0, creep_error: float = 0.0, order: int = 2) -> bool:
        """Shorten after a rejected step of size dt: by half (Newton failure), to 0.8 of the step
        whose creep increment would have met the bound, or by the error factor. Returns False when
        the cut-backs are exhausted."""
        s = self.s
        self.cuts += 1
        if self.cuts > s.max_cutbacks or dt <= s.dt_min * 1.0001:
            return False
        fac = 0.5
        if creep_increment > s.max_creep_increment:
            fac = min(0.5, 0.8 * s.max_creep_increment / creep_increment)
        erred = 0 < s.creep_tolerance < creep_error
        if erred:
            fac = min(fac if creep_increment > s.max_creep_increment else 1.0, self.error_factor(creep_error, order))
            self.err_prev = (dt, creep_error)
        self.dt = max(dt * fac, s.dt_min)
        self.why = "creep_tolerance" if erred else "cut-back"
        return True

    def accept(self, dt: float, iterations: int, creep_increment: float, creep_error: float = 0.0,
               order: int = 2) -> None:
        """After an accepted step of size dt: grow after an easy step (few Newton iterations and
        half the creep bound at most), shrink after a hard one, unless the step was shortened
        (by a protocol boundary or a limit), which says nothing about the step size; never beyond
        the step that the creep error estimate allows."""
        s = self.s
        self.cuts = 0
        self.err_prev = None
        if dt >= 0.999 * min(self.dt, s.dt_max):
            easy = iterations <= s.easy_iterations and creep_increment < 0.5 * s.max_creep_increment
            hard = iterations > s.hard_iterations
            self.dt = min(dt * s.growth, s.dt_max) if easy else (max(0.7 * dt, s.dt_min) if hard else dt)
            self.why = "growth" if easy else ("hard" if hard else self.why)
        limit = dt * self.error_factor(creep_error, order)
        if limit < self.dt:
            self.dt, self.why = max(limit, s.dt_min), "creep_tolerance"

    def state_dict(self) -> dict:
        return {"dt": self.dt, "why": self.why}

    def load_state_dict(self, d: dict) -> None:
        self.dt, self.why = d["dt"], d.get("why", "dt_initial")


class Stepper:
    """Takes the problem, the solve callable (-> StepInfo), the lithiation provider
    (creep_cathode.lithiation), the [solver] settings, post-solve hooks (callables
    hook(problem, solve, seg) -> Newton iterations spent, `seg` the protocol segment; a hook that
    solves the same step again may call solve(reuse_factorisation=True)) and a log callable.

    `run_segment(seg, on_step, on_end)` advances through one protocol segment; counters:
    t, steps, newton_total, rejected (by cause)."""

    def __init__(self, problem: SteppableProblem, solve: Callable[[], StepInfo], lithiation, settings,
                 hooks=(), log=print):
        self.problem, self.solve, self.lithiation, self.s = problem, solve, lithiation, settings
        self.hooks = list(hooks)
        self.log = log
        self.controller = StepController(settings)
        self.t = 0.0
        self.steps = 0
        self.newton_total = 0
        self.rejected = {"newton": 0, "creep_increment": 0, "creep_error": 0}  # steps redone shorter, by cause
        self.error_not_falling = 0  # steps accepted above creep_tolerance: the error did not fall with the step
        self.recent_dt: list[float] = []  # accepted steps of the current protocol step (stall check)
        self.recent_bound: list[str] = []  # what set each of those steps
        self.recent_cuts = 0  # rejected steps since the current protocol step began
        self.du_prev, self.dt_prev = None, 1.0
        self.theta = lithiation.theta_at(None, 0.0)

    @property
    def dt(self) -> float:
        return self.controller.dt

    # ------------------------------------------------------------------ one step's parts
    def _predict(self, u_old, dt):
        """Linear extrapolation of the last increment, capped by collision detection; kept only
        when its incremental energy is finite (no inverted element). With solver.proximal_anchor =
        "extrapolated" the problem's proximal anchor moves to its `extrapolated_anchor(u_old, d)`
        (optional: the uncapped extrapolation less each body's rigid part); otherwise, and on the
        first step of a protocol step, it stays at the last converged step."""
        if self.du_prev is None or not self.s.predictor:
            return
        pb = self.problem
        d = self.du_prev * (dt / self.dt_prev)
        if getattr(self.s, "proximal_anchor", "last_step") == "extrapolated" and hasattr(pb, "extrapolated_anchor"):
            pb.set_anchor(pb.extrapolated_anchor(u_old, d))  # resist only the departure from the extrapolation
        a = pb.max_step(u_old, d)
        a = 1.0 if a >= 1.0 else 0.9 * a
        if a <= 0:
            return
        trial = u_old + a * d
        pb.set_u(trial if math.isfinite(pb.energy(trial)) else u_old)

    def _solve_with_continuations(self, dt) -> StepInfo:
        """Newton, continued from its last iterate up to newton_continuations times when it only ran
        out of iterations; the StepInfo counts the iterations of all these solves."""
        info = self.solve()
        its = info.iterations
        for _ in range(self.s.newton_continuations):
            # an iteration limit is not a divergence: the minimiser only ever lowers the energy,
            # so go on from where it stopped (same dt) before cutting the step
            if info.converged or not info.reason.startswith("no convergence"):
                break
            if self.s.log_newton:
                self.log(f"  continuing the minimisation (dt = {dt:.3g} s): {info.reason}")
            info = self.solve()
            its += info.iterations
        self.newton_total += its
        return StepInfo(info.converged, its, info.reason, info.history)

    def _check_stall(self, seg, dt: float) -> None:
        """A contact state the mechanics cannot get past shows as ever smaller steps that still
        converge; end it as a failure instead of crawling on for days. The message names what kept
        the steps short. Steps that the creep error control keeps short (fast relaxation) are what
        accuracy asks for, not a stall."""
        s = self.s
        recent = self.recent_dt = (self.recent_dt + [dt])[-s.stall_steps:]
        self.recent_bound = (self.recent_bound + [self.controller.bound])[-s.stall_steps:]
        accuracy = self.recent_bound.count("creep_tolerance") > len(self.recent_bound) // 2
        if (s.stall_fraction > 0 and len(recent) == s.stall_steps and seg.t1 > seg.t0 and not accuracy
                and sum(recent) < s.stall_fraction * (seg.t1 - seg.t0)):
            raise SolverFailure(f"stalled at t = {self.t + dt:.6g} s (cycle {seg.cycle}, '{seg.step.text}', "
                                f"theta = {seg.theta(self.t + dt):.4f}): the last {s.stall_steps} steps covered "
                                f"{sum(recent):.3g} s, less than {s.stall_fraction:g} of the step's "
                                f"{seg.t1 - seg.t0:.3g} s; {self._stall_cause()}")

    def _stall_cause(self) -> str:
        s = self.s
        bound = max(dict.fromkeys(self.recent_bound), key=self.recent_bound.count)
        if bound == "max_theta_increment":
            return (f"the steps are limited by solver.max_theta_increment = {s.max_theta_increment:g} "
                    f"(theta may change by at most that per step)")
        if bound == "dt_max":
            return f"the steps are limited by solver.dt_max = {s.dt_max:g} s"
        if self.recent_cuts and bound in ("cut-back", "hard"):
            return (f"{self.recent_cuts} steps were rejected and cut back (Newton failures or creep increments: "
                    f"a contact state the mechanics cannot get past?)")
        if bound == "hard":
            return (f"the steps kept shrinking by 0.7 after hard steps (more than solver.hard_iterations = "
                    f"{s.hard_iterations} Newton iterations each); where Newton's work does not fall with the step "
                    f"(many contacts settling at once, e.g. on a large RVE) raise solver.hard_iterations and "
                    f"solver.easy_iterations (e.g. 200 and 60; README, Performance)")
        return (f"the step size stays small without rejections (solver.dt_initial = {s.dt_initial:g} s, "
                f"growth x{s.growth:g} only after steps of <= {s.easy_iterations} Newton iterations)")

    # ------------------------------------------------------------------ a segment
    def run_segment(self, seg, on_step=None, on_end=None):
        """Advance through protocol segment `seg`; on_step(seg, info) after each accepted step,
        on_end(seg) at its end. Raises SolverFailure when a step fails after all cut-backs."""
        s, pb, ctl = self.s, self.problem, self.controller
        eps_t = 1e-12 * max(1.0, seg.t1)  # round-off of the accumulated time, not a share of the run
        ctl.cuts, ctl.err_prev = 0, None
        if self.t <= seg.t0 + eps_t:
            self.du_prev = None  # no predictor across a protocol boundary
            self.recent_dt, self.recent_bound, self.recent_cuts = [], [], 0
        while self.t < seg.t1 - eps_t:
            dt = ctl.propose(self.t, seg.t1, self.lithiation.dt_limit(seg, s.max_theta_increment), "max_theta_increment")
            t_new = self.t + dt
            theta = self.lithiation.theta_at(seg, t_new)
            pb.set_state(theta, dt)
            u_old = pb.get_u().copy()
            self._predict(u_old, dt)
            info = self._solve_with_continuations(dt)
            ok, reason, cause = info.converged, info.reason, "newton"
            meas = pb.step_measures() if ok else {}
            dmax, err = meas.get("creep_increment", 0.0), meas.get("creep_error", 0.0)
            order = meas.get("creep_error_order", 2)
            if ok and ctl.can_reject(dt):
                if dmax > s.max_creep_increment:
                    ok, reason, cause = False, f"creep increment {dmax:.3g} > max_creep_increment", "creep_increment"
                elif 0 < s.creep_tolerance < err:
                    if ctl.error_falls_with_step(dt, err):
                        ok, reason, cause = False, f"creep error {err:.3g} > creep_tolerance", "creep_error"
                    else:
                        self.error_not_falling += 1
                        self.log(f"  step accepted with creep error {err:.3g} > creep_tolerance at dt = {dt:.3g} s "
                                 f"(t = {self.t:.6g} s): the error fell only as dt^{ctl.observed_order:.2f} over "
                                 f"the last cut-back, so a shorter step would not control it")
            if not ok:
                pb.set_u(u_old)
                self.rejected[cause] += 1
                self.recent_cuts += 1
                if s.log_newton:
                    self.log(f"  step rejected (dt = {dt:.3g} s): {reason}")
                if not ctl.reject(dt, dmax, err, order):
                    raise SolverFailure(f"step at t = {self.t:.6g} s (cycle {seg.cycle}, '{seg.step.text}') failed "
                                        f"after {ctl.cuts - 1} cut-backs (dt = {dt:.3g} s): {reason}")
                continue
            for hook in self.hooks:
                self.newton_total += hook(pb, self.solve, seg)
            self.du_prev, self.dt_prev = pb.get_u() - u_old, dt
            self._check_stall(seg, dt)
            pb.commit()
            self.t, self.theta = t_new, theta
            self.steps += 1
            ctl.accept(dt, info.iterations, dmax, err, order)
            if on_step:
                on_step(seg, info)
        if on_end:
            on_end(seg)

    # ------------------------------------------------------------------ restart
    def state_dict(self) -> tuple[dict, dict]:
        """(scalars, arrays) to restore this stepper exactly: time, counters, step size, the
        stall window and the predictor's last increment (an array of the problem's unknowns)."""
        scalars = {"t": self.t, "steps": self.steps, "newton_total": self.newton_total,
                   "rejected": dict(self.rejected), "error_not_falling": self.error_not_falling,
                   "recent_dt": list(self.recent_dt), "dt_prev": self.dt_prev,
                   "recent_bound": list(self.recent_bound), "recent_cuts": self.recent_cuts,
                   "has_prev": self.du_prev is not None, "theta": self.theta, **self.controller.state_dict()}
        return scalars, ({"du_prev": self.du_prev} if self.du_prev is not None else {})

    def load_state_dict(self, scalars: dict, arrays: dict) -> None:
        """Restore what state_dict returned."""
        self.t, self.steps, self.newton_total = scalars["t"], scalars["steps"], scalars["newton_total"]
        self.rejected.update(scalars.get("rejected", {}))
        self.error_not_falling = int(scalars.get("error_not_falling", 0))
        self.recent_dt = list(scalars.get("recent_dt", []))
        self.recent_bound = list(scalars.get("recent_bound", []))
        self.recent_cuts = int(scalars.get("recent_cuts", 0))
        self.controller.load_state_dict(scalars)
        self.theta = scalars["theta"]
        if scalars.get("has_prev"):
            self.du_prev, self.dt_prev = arrays["du_prev"], scalars["dt_prev"]
