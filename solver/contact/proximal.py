"""Proximal-point relaxation: a post-solve step hook for problems with floating bodies.

Particles float until contact closes, so the incremental potential carries a proximal term
1/2 k ∫ |u - u_anchor|^2 that pins them to the last converged step. Once a step has converged,
while the proximal energy is not negligible against the stored energy
(`proximal_tolerance`), the same step (same internal variables) is solved again anchored at its
own solution, at most `proximal_relaxations` times, so that the regularisation fades from the
answer (DESIGN §2: "show that its effect on the answer is negligible"; the ratio left is the
`proximal_energy_ratio` column). In a rest step `settle` re-solves are allowed instead (when it
is larger): a packing pressed by a platen is a chain of floating bodies that each re-solve moves by
at most ~ load / proximal stiffness, so it needs hundreds to settle (contact.settle_relaxations).

Settling softens the proximal term: a rest re-solve that leaves the imbalance above the tolerance
divides the proximal stiffness k by SOFTEN (down to MIN_SCALE of its configured value k0), so the
next one may move the chain SOFTEN times further; a re-solve that fails restores the last converged
state and stiffens k by BACK_OFF (a failure at k0 ends the rest's re-solves, as in any step: the
same solve from the same state would fail again). The imbalance is the force the proximal term
carries: whatever the anchor a, a re-solve's solution u balances grad E(u) = -k M (u - a), and at
k0 that force would store s x (the proximal energy at k = s k0); it is tested against the
tolerance. Once it is below, k returns to k0 and a last re-solve anchored at the settled state must
also find the ratio below the tolerance, so the stopping test and the reported ratio mean what they
mean in any step. A closed-form body under a constant load moves f/k0, 4 f/k0, 16 f/k0 ... instead
of f/k0 each time; FeS-MSe at 10 MPa, the rest after the first delithiation (docs/experiments.md
section 4): proximal / stored 2.3e-5 after 79 re-solves, where 1,000 re-solves at k0 accelerated by
Nesterov momentum (tried) left 0.14.
"""

from __future__ import annotations

SOFTEN = 4.0  # a rest re-solve that leaves the imbalance above the tolerance divides k by this
BACK_OFF = 16.0  # a failed one multiplies it by this
MIN_SCALE = 1e-4  # k stays at least this times its configured value


class ProximalRelaxation:
    """Hook for creep_cathode.stepping.Stepper. The problem provides `proximal_ratio(u)`,
    `get_u()`, `set_u(u)`, `anchor()`, `set_anchor(u)` and, for settling, `set_proximal_scale(s)`."""

    def __init__(self, relaxations: int, tolerance: float, settle: int = 0):
        self.relaxations, self.tolerance, self.settle = int(relaxations), float(tolerance), int(settle)
        self.last_ratio = 0.0

    def __call__(self, problem, solve, seg=None) -> int:
        """Relax after a converged step of protocol segment `seg`; `solve(reuse_factorisation=True)`
        -> StepInfo (the flag: the last factorised tangent is still this problem's). Returns the
        Newton iterations spent."""
        its = 0
        ratio = problem.proximal_ratio(problem.get_u())
        if seg is not None and seg.step.kind == "rest" and self.settle > self.relaxations:
            return self._settle(problem, solve, ratio)
        for _ in range(self.relaxations):
            if ratio <= self.tolerance:
                break
            u_conv, anchor = problem.get_u().copy(), problem.anchor().copy()
            problem.set_anchor(u_conv)
            # the same step and state, only the anchor moved (the proximal Hessian k M does not depend
            # on it): the tangent Newton factorised last still serves
            info = solve(reuse_factorisation=True)
            its += info.iterations
            if not info.converged:  # keep the last converged state
                problem.set_u(u_conv)
                problem.set_anchor(anchor)
                break
            ratio = problem.proximal_ratio(problem.get_u())
        self.last_ratio = ratio
        return its

    def _settle(self, problem, solve, imbalance) -> int:
        """Up to `settle` re-solves of a rest with the proximal stiffness softened while the
        imbalance stays above the tolerance (module docstring). The problem also provides
        `set_proximal_scale(s)` (k = s k0); k is k0 again on return."""
        its, s, fresh = 0, 1.0, False
        try:
            for _ in range(self.settle):
                if imbalance <= self.tolerance:
                    if s == 1.0:
                        break
                    s, fresh = 1.0, True  # the last re-solve, at k0
                    problem.set_proximal_scale(s)
                u_conv, anchor = problem.get_u().copy(), problem.anchor().copy()
                problem.set_anchor(u_conv)
                info = solve(reuse_factorisation=not fresh)  # a new k is a new tangent
                its += info.iterations
                if not info.converged:  # keep the last converged state; stiffen, or stop at k0
                    problem.set_u(u_conv)
                    problem.set_anchor(anchor)
                    if s == 1.0:
                        break
                    s, fresh = min(1.0, BACK_OFF * s), True
                    problem.set_proximal_scale(s)
                    continue
                imbalance = s * problem.proximal_ratio(problem.get_u())
                fresh = imbalance > self.tolerance and s > MIN_SCALE
                if fresh:
                    s = max(s / SOFTEN, MIN_SCALE)
                    problem.set_proximal_scale(s)
        finally:
            problem.set_proximal_scale(1.0)
        self.last_ratio = imbalance  # the force left, measured at k0 (the ratio itself if measured there)
        return its
