"""The proximal relaxation hook (creep_cathode.contact.proximal) on a closed-form floating body: a
body under a load f, pinned by the proximal term k/2 (x - anchor)^2, floats towards a wall at x_w.
Each solve anchored at a is the minimiser of k/2 (x - a)^2 - f x with x <= x_w, i.e.
x = min(a + f/k, x_w): a floating chain moves by at most f/k per re-solve (docs/experiments.md,
FeS-MSe at 10 MPa), so it needs (x_w - x0) k / f re-solves to settle at the configured k; settling
softens k (k = s k0) so that it needs far fewer."""

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
        self.x, self.a, self.s = 0.0, 0.0, 1.0
        self.solves = []  # (scale, reuse_factorisation) of each solve

    def solve(self, reuse_factorisation=False):
        self.solves.append((self.s, reuse_factorisation))
        self.x = min(self.a + F / (self.s * K), X_WALL)
        return SimpleNamespace(converged=True, iterations=1)

    def proximal_ratio(self, x):
        return 0.5 * self.s * K * (float(x) - self.a) ** 2 / W

    def set_proximal_scale(self, s):
        self.s = s

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
    """With settle re-solves a rest goes on until the body rests on the wall, softening k while the
    imbalance (the force the proximal term carries, as energy at k0: s x ratio) stays above the
    tolerance. Closed form: the step leaves the body at f/k0 = 0.1; re-solve 1 at k0 moves it to
    0.2 (imbalance f^2 / (2 k0 W) = 0.05 > 1e-3, so k -> k0/4); re-solve 2 moves 4 f/k0 to 0.6
    (k -> k0/16); re-solve 3 would move 16 f/k0 and stops at the wall, 2.0 (anchor 0.6: imbalance
    still 0.038, k -> k0/64); re-solve 4 finds it still (imbalance 0); the last re-solve, at k0
    again, too. 5 re-solves instead of the 20 at k0 (19 moves of f/k0 and one that finds it still);
    every one after a change of k factorises afresh, and k is k0 again at the end."""
    hook = ProximalRelaxation(3, 1e-3, settle=100)
    pb = FloatingBody()
    pb.solve()
    pb.solves.clear()
    seen = []

    def solve(reuse_factorisation=False):
        info = pb.solve(reuse_factorisation)
        seen.append(pb.x)
        return info

    its = hook(pb, solve, SimpleNamespace(step=SimpleNamespace(kind="rest")))
    assert seen == pytest.approx([0.2, 0.6, X_WALL, X_WALL, X_WALL]) and its == 5
    assert pb.solves == [(1.0, True), (0.25, False), (1 / 16, False), (1 / 64, False), (1.0, False)]
    assert pb.s == 1.0 and pb.x == pytest.approx(X_WALL) and hook.last_ratio == pytest.approx(0.0, abs=1e-12)


def test_a_settle_solve_that_fails_softened_goes_on_stiffer():
    """A re-solve that would move the body more than 1.0 fails (a Newton that does not converge);
    the hook keeps the last converged state, stiffens k by 16 and goes on softening: moves of 0.1
    (k0), 0.4 (k0/4), the failure at k0/16, back at k0, and so on, three times, the third time from
    1.7 to the wall; the re-solve at k0 after the last failure finds the body still; k is k0 at the end."""
    hook = ProximalRelaxation(3, 1e-3, settle=100)
    pb = FloatingBody()
    pb.solve()

    def solve(reuse_factorisation=False):
        if F / (pb.s * K) > 1.0:
            pb.x = 99.0  # a failed Newton leaves garbage
            return SimpleNamespace(converged=False, iterations=5)
        return pb.solve(reuse_factorisation)

    seen = []

    def watched(reuse_factorisation=False):
        info = solve(reuse_factorisation)
        seen.append(pb.x if info.converged else None)
        return info

    hook(pb, watched, SimpleNamespace(step=SimpleNamespace(kind="rest")))
    assert seen == pytest.approx([0.2, 0.6, None, 0.7, 1.1, None, 1.2, 1.6, None, 1.7, X_WALL, None, X_WALL])
    assert pb.x == pytest.approx(X_WALL) and hook.last_ratio == pytest.approx(0.0, abs=1e-12) and pb.s == 1.0


def test_without_settle_a_rest_relaxes_as_any_step():
    pb, its = _step(ProximalRelaxation(3, 1e-3), "rest")
    assert its == 3 and pb.x == pytest.approx(0.4)
