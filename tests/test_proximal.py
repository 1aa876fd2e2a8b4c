"""The proximal relaxation hook (creep_cathode.contact.proximal) on a closed-form floating body: a
body under a load f, pinned by the proximal term k/2 (x - anchor)^2, floats towards a wall at x_w.
Each solve anchored at a is the minimiser of k/2 (x - a)^2 - f x with x <= x_w, i.e.
x = min(a + f/k, x_w): a floating chain moves by at most f/k per re-solve (docs/experiments.md,
FeS-MSe at 10 MPa), so it needs (x_w - x0) k / f re-solves to settle."""

from types import SimpleNamespace

import pytest

from creep_cathode.contact.proximal import ProximalRelaxation

K, F, X_WALL, W = 10.0, 1.0, 2.0, 1.0  # f/k = 0.1: 20 solves from 0 to the wall; stored energy W


class _Value(float):
    """A state value with the .copy() the hook calls."""

    def copy(self):
        return _Value(self)


class FloatingBody:
    """The problem interface the hook uses, for one floating body."""

    def __init__(self):
        self.x, self.a = 0.0, 0.0

    def solve(self, reuse_factorisation=False):
        self.x = min(self.a + F / K, X_WALL)
        return SimpleNamespace(converged=True, iterations=1)

    def proximal_ratio(self, x):
        return 0.5 * K * (float(x) - self.a) ** 2 / W

    def get_u(self):
        return _Value(self.x)

    def set_u(self, x):
        self.x = float(x)

    def anchor(self):
        return _Value(self.a)

    def set_anchor(self, x):
        self.a = float(x)


def _step(hook, kind):
    pb = FloatingBody()
    pb.solve()  # the step itself: one move of f/k
    its = hook(pb, pb.solve, SimpleNamespace(step=SimpleNamespace(kind=kind)))
    return pb, its


def test_a_step_relaxes_at_most_proximal_relaxations_times():
    pb, its = _step(ProximalRelaxation(3, 1e-3, settle=100), "lithiate")
    assert its == 3 and pb.x == pytest.approx(0.4)
    assert pb.proximal_ratio(pb.x) == pytest.approx(0.5 * K * (F / K) ** 2 / W)  # still floating


def test_a_rest_settles_the_floating_body_onto_the_wall():
    """With settle re-solves a rest goes on until the body rests on the wall, with momentum: re-solve
    j is anchored at the last solution plus beta_j = (j - 1) / (j + 2) of the last move, so under the
    constant load the moves are d_1 = f/k, d_j = f/k + beta_j d_(j-1) (0.1, 0.125, 0.15, ...) instead
    of f/k each time. The re-solve that reaches the wall was anchored beyond it, so its imbalance
    has grown (the anchor pulls into the wall): the next one restarts without momentum and finds the
    body still on the wall (proximal energy 0 <= tolerance): 11 re-solves instead of the 20 that
    moves of f/k take (19 and one that finds it still)."""
    hook = ProximalRelaxation(3, 1e-3, settle=100)
    pb = FloatingBody()
    pb.solve()
    seen = []

    def solve(reuse_factorisation=False):
        info = pb.solve()
        seen.append(pb.x)
        return info

    its = hook(pb, solve, SimpleNamespace(step=SimpleNamespace(kind="rest")))
    x, d, expect = F / K, 0.0, []
    for j in range(1, 100):
        d = F / K + (j - 1) / (j + 2) * d
        x = min(x + d, X_WALL)
        expect.append(x)
        if x == X_WALL:
            break
    expect.append(X_WALL)  # the plain re-solve after the restart
    assert seen == pytest.approx(expect) and its == len(expect) == 11
    assert pb.x == pytest.approx(X_WALL) and hook.last_ratio == pytest.approx(0.0, abs=1e-12)


def test_a_settle_solve_that_fails_with_momentum_goes_on_without_it():
    """A re-solve whose extrapolated anchor is too far (here: more than 0.12 ahead) fails; the hook
    keeps the last converged state and goes on with plain re-solves, so the body still settles."""
    hook = ProximalRelaxation(3, 1e-3, settle=100)
    pb = FloatingBody()
    pb.solve()

    def solve(reuse_factorisation=False):
        if pb.a - pb.x > 0.12:
            pb.x = 99.0  # a failed Newton leaves garbage
            return SimpleNamespace(converged=False, iterations=5)
        return pb.solve()

    hook(pb, solve, SimpleNamespace(step=SimpleNamespace(kind="rest")))
    assert pb.x == pytest.approx(X_WALL) and hook.last_ratio == pytest.approx(0.0, abs=1e-12)


def test_without_settle_a_rest_relaxes_as_any_step():
    pb, its = _step(ProximalRelaxation(3, 1e-3), "rest")
    assert its == 3 and pb.x == pytest.approx(0.4)
