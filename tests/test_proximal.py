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
    """With settle re-solves a rest goes on until the body rests on the wall: 19 moves of f/k after
    the step's own, and one more that finds it still (proximal energy 0 <= tolerance)."""
    hook = ProximalRelaxation(3, 1e-3, settle=100)
    pb, its = _step(hook, "rest")
    assert pb.x == pytest.approx(X_WALL) and its == 20
    assert hook.last_ratio == pytest.approx(0.0, abs=1e-12)


def test_without_settle_a_rest_relaxes_as_any_step():
    pb, its = _step(ProximalRelaxation(3, 1e-3), "rest")
    assert its == 3 and pb.x == pytest.approx(0.4)
