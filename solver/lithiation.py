"""State-of-lithiation providers: where theta comes from (no DOLFINx).

The mechanics takes theta as a field: a dict {phase: value} in which a value is a float (uniform
in that phase) or an array over the phase's quadrature points; phases not named are at 0 (not
lithiated). A provider supplies it at any time of the schedule and tells the stepper the
largest step that keeps theta's change per step bounded (in the spirit of MOOSE's
`computeTimeStepLimit`).

`UniformLithiation` is the paper's assumption (DESIGN §2): uniform in each active phase, linear
in time at the C-rate of the protocol step. A diffusion-coupled provider would solve for theta
per point and plug in here, without touching the mechanics.
"""

from __future__ import annotations

import math


class UniformLithiation:
    """Takes the schedule (creep_cathode.protocol.Segment list), the active phases and the
    initial theta."""

    def __init__(self, segments, active_phases, initial_theta: float = 0.0):
        self.segments = list(segments)
        self.active = list(active_phases)
        self.initial = float(initial_theta)

    def theta_at(self, seg, t: float) -> dict:
        """{phase: theta} at time t of segment seg (seg None: the initial state)."""
        value = self.initial if seg is None else seg.theta(t)
        return {p: value for p in self.active}

    def dt_limit(self, seg, max_increment: float) -> float:
        """The largest step in seg that changes theta by at most max_increment (inf at rest)."""
        rate = abs(seg.theta1 - seg.theta0) / (seg.t1 - seg.t0) if seg.t1 > seg.t0 else 0.0
        return max_increment / rate if rate > 0 else math.inf
