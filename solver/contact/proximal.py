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

Settling is accelerated (Nesterov momentum on the proximal-point iteration, with adaptive restart:
Güler 1992, O'Donoghue & Candès 2015): the anchor of re-solve j is the last solution plus
beta_j = (j - 1) / (j + 2) times the last move, and j starts again at 1 whenever the proximal ratio
grows. Whatever the anchor a, the solution u of a re-solve balances grad E(u) = -k M (u - a), so
the proximal ratio stays the measure of the imbalance that the proximal term carries, and the
stopping test (ratio <= tolerance) means equilibrium as before; only the path to it is shorter.
A closed-form body under a constant load moves f/k, 2 f/k, 3 f/k ... instead of f/k each time.
"""

from __future__ import annotations


class ProximalRelaxation:
    """Hook for creep_cathode.stepping.Stepper. The problem provides `proximal_ratio(u)`,
    `get_u()`, `set_u(u)`, `anchor()` and `set_anchor(u)`."""

    def __init__(self, relaxations: int, tolerance: float, settle: int = 0):
        self.relaxations, self.tolerance, self.settle = int(relaxations), float(tolerance), int(settle)
        self.last_ratio = 0.0

    def __call__(self, problem, solve, seg=None) -> int:
        """Relax after a converged step of protocol segment `seg`; `solve(reuse_factorisation=True)`
        -> StepInfo (the flag: the last factorised tangent is still this problem's). Returns the
        Newton iterations spent."""
        its = 0
        ratio = problem.proximal_ratio(problem.get_u())
        rest = seg is not None and seg.step.kind == "rest"
        settle = rest and self.settle > self.relaxations
        u_prev, j = None, 1  # momentum: the solution before the last one; re-solves since a restart
        for _ in range(self.settle if settle else self.relaxations):
            if ratio <= self.tolerance:
                break
            u_conv, anchor = problem.get_u().copy(), problem.anchor().copy()
            beta = (j - 1) / (j + 2) if settle and u_prev is not None else 0.0
            problem.set_anchor(u_conv + beta * (u_conv - u_prev) if beta > 0 else u_conv)
            # the same step and state, only the anchor moved (the proximal Hessian k M does not depend
            # on it): the tangent Newton factorised last still serves
            info = solve(reuse_factorisation=True)
            its += info.iterations
            if not info.converged:  # keep the last converged state
                problem.set_u(u_conv)
                problem.set_anchor(anchor)
                if beta > 0:  # the extrapolated anchor asked too much: go on without momentum
                    u_prev, j = None, 1
                    continue
                break
            new = problem.proximal_ratio(problem.get_u())
            # adaptive restart when the imbalance grows (beyond round-off: a body pushed by a constant
            # load keeps the same ratio from move to move)
            u_prev, j = u_conv, (1 if new > ratio * (1 + 1e-9) else j + 1)
            ratio = new
        self.last_ratio = ratio
        return its
