"""Material properties as functions of the state of lithiation theta (no DOLFINx).

Between the delithiated (theta = 0) and lithiated (theta = 1) values (e.g. Se -> Li2Se):
  E, nu, n                 linear in theta;
  A, sigma_ref             log-linear in theta (they span decades);
  J_l(theta) = 1 + (J_l,max - 1) theta   (DESIGN section 2; the paper's "1 + Omega C").
Lamé constants follow from E and nu (plane strain uses the 3D constants: F33 = 1 is kinematic).
An Arrhenius factor exp(-Q/R (1/T - 1/T_ref)) scales A when Q > 0.

theta is a float (uniform in a phase) or an array over the phase's points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

R_GAS = 8.314462618  # J/(mol K)


@dataclass(frozen=True)
class Elastic:
    """Elastic and swelling properties of one phase at one theta (SI)."""

    E: float
    nu: float
    Jl: float

    @property
    def mu(self) -> float:
        return self.E / (2.0 * (1.0 + self.nu))

    @property
    def lam(self) -> float:
        return self.E * self.nu / ((1.0 + self.nu) * (1.0 - 2.0 * self.nu))

    @property
    def K(self) -> float:
        return self.E / (3.0 * (1.0 - 2.0 * self.nu))


@dataclass(frozen=True)
class Norton:
    """Norton creep of one phase at one theta: rate A [1/s] (Arrhenius factor included; 0 =
    elastic), exponent n, reference stress sigma_ref [Pa]."""

    A: float
    n: float
    sigma_ref: float


def arrhenius(Q: float, T: float, T_ref: float) -> float:
    """exp(-Q/R (1/T - 1/T_ref)) (1 when Q = 0)."""
    return math.exp(-Q / R_GAS * (1.0 / T - 1.0 / T_ref)) if Q else 1.0


def _lin(a, b, t):
    return a + (b - a) * t


def _loglin(a, b, t):
    if a <= 0 or b <= 0:
        return _lin(a, b, t)
    if isinstance(t, np.ndarray):
        return np.exp(_lin(math.log(a), math.log(b), t))
    return math.exp(_lin(math.log(a), math.log(b), t))


def _theta(mat, theta):
    if not mat.active:
        return 0.0
    return theta if isinstance(theta, np.ndarray) else float(theta)


def elastic(mat, theta) -> Elastic:
    """E, nu and J_l of config material `mat` (creep_cathode.config.Material) at theta."""
    th = _theta(mat, theta)
    lit = mat.lithiated
    E1 = lit.youngs_modulus if lit and lit.youngs_modulus is not None else mat.youngs_modulus
    nu1 = lit.poisson_ratio if lit and lit.poisson_ratio is not None else mat.poisson_ratio
    return Elastic(_lin(mat.youngs_modulus, E1, th), _lin(mat.poisson_ratio, nu1, th),
                   1.0 + (mat.volume_ratio_lithiated - 1.0) * th)


def norton(mat, theta, temperature: float) -> Norton:
    """Norton parameters of `mat` at theta and temperature [K]; Norton(0, 1, 1) when it does not creep."""
    th = _theta(mat, theta)
    lit = mat.lithiated
    c0 = mat.creep
    c1 = lit.creep if lit and lit.creep is not None else c0
    if c0 is None and c1 is None:
        return Norton(0.0, 1.0, 1.0)
    c0 = c0 or c1
    A = _loglin(c0.A * arrhenius(c0.Q, temperature, c0.T_ref), c1.A * arrhenius(c1.Q, temperature, c1.T_ref), th)
    return Norton(A, _lin(c0.n, c1.n, th), _loglin(c0.sigma_ref, c1.sigma_ref, th))
