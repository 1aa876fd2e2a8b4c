"""Cycling protocol: PyBaMM-style step strings -> a piecewise-linear schedule theta(t).

Step grammar (case-insensitive, SI output):

    "Lithiate at 0.1C"               theta -> 1 at 0.1 C (a full 0 -> 1 step takes 1/0.1 h)
    "Lithiate at 2C to 0.5"          theta -> 0.5
    "Delithiate at 0.1C"             theta -> 0
    "Delithiate at 0.1C to 0.22"     theta -> 0.22
    "Rest for 2 hours"               theta constant for 7200 s  (s, sec, seconds, min, minutes, h, hours)

Bounds (a value beyond them is certainly a mistake, and refused): C-rate in [MIN_C_RATE, MAX_C_RATE]
= [1e-5, 1000] C (a full step in 11 years .. 3.6 s; the fastest cells are tested at ~100 C); a rest
of at most MAX_REST_S = 1e9 s (32 years); at most MAX_STEPS = 1000 steps per cycle, each at most
MAX_STEP_CHARS = 200 characters long.

theta is the state of lithiation of every active phase (uniform, DESIGN section 2). It moves
linearly in time at the C-rate: |d theta / dt| = c / 3600 1/s. A step whose target is already
reached has zero length and is kept in the schedule (its end is still a protocol boundary).
This module imports nothing heavy: the config validator uses it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .text import short

__all__ = ["Step", "Segment", "ProtocolError", "parse_step", "parse_protocol", "schedule", "MIN_C_RATE",
           "MAX_C_RATE", "MAX_REST_S", "MAX_STEPS"]

MIN_C_RATE = 1e-5  # 1/h: a full 0 -> 1 step in 11 years
MAX_C_RATE = 1000.0  # 1/h: a full step in 3.6 s
MAX_REST_S = 1e9  # s: 32 years
MAX_STEPS = 1000  # steps per cycle
MAX_STEP_CHARS = 200  # characters of one step (after collapsing white space)


class ProtocolError(ValueError):
    """A step string that does not follow the grammar above."""


@dataclass(frozen=True)
class Step:
    """One protocol step: kind, its text, C-rate [1/h] and target theta (charge steps) or duration [s] (rest)."""

    kind: str  # "lithiate" | "delithiate" | "rest"
    text: str
    c_rate: float = 0.0  # 1/h
    target: float | None = None  # theta at the end (charge steps)
    duration_s: float | None = None  # rest steps


@dataclass(frozen=True)
class Segment:
    """One step of one cycle on the time axis: theta goes linearly from theta0 to theta1."""

    cycle: int  # 1-based
    index: int  # step index within the cycle, 0-based
    step: Step
    t0: float
    t1: float
    theta0: float
    theta1: float

    def theta(self, t: float) -> float:
        if self.t1 <= self.t0:
            return self.theta1
        s = min(max((t - self.t0) / (self.t1 - self.t0), 0.0), 1.0)
        return self.theta0 + s * (self.theta1 - self.theta0)


# digits, digits.digits or .digits, optional exponent; written so that a failing match backtracks in
# linear time (the equivalent [0-9]*\.?[0-9]+ takes quadratic time on a long run of digits)
_NUM = r"((?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)"
_CHARGE = re.compile(rf"^(lithiate|delithiate)\s+at\s+{_NUM}\s*c(?:\s+to\s+{_NUM})?$", re.I)
_REST = re.compile(rf"^rest\s+for\s+{_NUM}\s*(s|sec|secs|seconds?|min|mins|minutes?|h|hr|hrs|hours?)$", re.I)
_UNIT_S = {"s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0, "min": 60.0, "mins": 60.0,
           "minute": 60.0, "minutes": 60.0, "h": 3600.0, "hr": 3600.0, "hrs": 3600.0, "hour": 3600.0,
           "hours": 3600.0}


def parse_step(text: str) -> Step:
    """One step string -> Step; ProtocolError (one line) when it does not follow the grammar or its bounds."""
    if not isinstance(text, str):
        raise ProtocolError(f"step {short(text)} is not a string")
    s = " ".join(text.strip().split())
    if len(s) > MAX_STEP_CHARS:
        raise ProtocolError(f"step {short(text)} is too long (at most {MAX_STEP_CHARS} characters)")
    m = _CHARGE.match(s)
    if m:
        kind = m.group(1).lower()
        c = float(m.group(2))
        if not MIN_C_RATE <= c <= MAX_C_RATE:
            raise ProtocolError(f"step {short(text)}: C-rate must be in [{MIN_C_RATE:g}, {MAX_C_RATE:g}] C "
                                f"(got {c:g})")
        target = float(m.group(3)) if m.group(3) is not None else (1.0 if kind == "lithiate" else 0.0)
        if not 0.0 <= target <= 1.0:
            raise ProtocolError(f"step {short(text)}: target state of lithiation must be in [0, 1]")
        return Step(kind, text, c_rate=c, target=target)
    m = _REST.match(s)
    if m:
        d = float(m.group(1)) * _UNIT_S[m.group(2).lower()]
        if not d > 0:
            raise ProtocolError(f"step {short(text)}: duration must be > 0")
        if not (math.isfinite(d) and d <= MAX_REST_S):
            raise ProtocolError(f"step {short(text)}: duration must be at most {MAX_REST_S:g} s (got {d:g} s)")
        return Step("rest", text, duration_s=d)
    raise ProtocolError(
        f"step {short(text)} not understood (expected e.g. 'Lithiate at 0.1C', "
        "'Delithiate at 0.1C to 0.22', 'Rest for 2 hours')"
    )


def parse_protocol(steps: list[str]) -> list[Step]:
    """The steps of one cycle -> [Step]; ProtocolError for an empty or bad protocol."""
    if not steps:
        raise ProtocolError("protocol is empty")
    if len(steps) > MAX_STEPS:
        raise ProtocolError(f"protocol has {len(steps)} steps (at most {MAX_STEPS} per cycle)")
    return [parse_step(s) for s in steps]


def schedule(steps: list[Step], cycles: int, theta0: float = 0.0) -> list[Segment]:
    """Lay `cycles` repetitions of `steps` on the time axis."""
    segs: list[Segment] = []
    t, theta = 0.0, theta0
    for cyc in range(1, cycles + 1):
        for i, st in enumerate(steps):
            if st.kind == "rest":
                t1, th1 = t + st.duration_s, theta
            else:
                th1 = theta
                if st.kind == "lithiate" and st.target > theta:
                    th1 = st.target
                elif st.kind == "delithiate" and st.target < theta:
                    th1 = st.target
                t1 = t + abs(th1 - theta) / st.c_rate * 3600.0
            segs.append(Segment(cyc, i, st, t, t1, theta, th1))
            t, theta = t1, th1
    return segs
