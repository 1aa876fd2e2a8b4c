"""Material descriptors of a run: homologous temperature and configurational entropy. No DOLFINx.

Homologous temperature T_H = T / T_m at the run temperature (Xiong 2024, Fig. 2a: T_H > 0.3
creeps, T_H < 0.3 is brittle). Where the library gives T_m only as a lower bound, T_H is an
upper bound and is reported as such.

Configurational entropy from composition (Zhou et al., Energy Environ. Sci. 18 (2025),
doi:10.1039/d4ee03708a, section 2), in units of R:
  eq. 1  dS = -R sum_i x_i ln x_i                        (one mixing site; eq. 2: R ln M if equimolar)
  eq. 3  dS = -R [(sum x ln x)_cation + (sum x ln x)_anion]   (one cation and one anion sublattice)
  eq. 4  dS = -R [x (sum x_a ln x_a)_A + y (sum y_b ln y_b)_B + z (sum z_o ln z_o)_O]
                                                           (A_x B_y O_z: each sublattice weighted by its
                                                            number of sites per formula unit)
Classes (same section, after Carroll et al. 2015): low < 1R <= medium < 1.5R <= high.

A library composition lists sublattices with the amount of each species per formula unit,
e.g. NCM811: { Li = { Li = 1 }, TM = { Ni = 0.8, Co = 0.1, Mn = 0.1 }, O = { O = 2 } }. Site
fractions are amount / (sum on the sublattice) and the sublattice weight of eq. 4 is that sum,
so the reported value is eq. 4 per formula unit (it reduces to eq. 1 and eq. 3 for single sites
of weight 1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["ideal_mixing_entropy", "sublattice_entropy", "composition_entropy", "entropy_class",
           "homologous_temperature", "material_descriptors", "descriptors_for_config"]

LOW_MEDIUM_R = 1.0
MEDIUM_HIGH_R = 1.5


def ideal_mixing_entropy(amounts: Mapping[str, float] | list[float]) -> float:
    """Eq. 1: -sum x_i ln x_i [R] with x_i = amount_i / sum (0 ln 0 = 0)."""
    a = list(amounts.values()) if isinstance(amounts, Mapping) else list(amounts)
    if any(v < 0 or not math.isfinite(v) for v in a):
        raise ValueError("amounts must be finite and >= 0")
    total = sum(a)
    if total <= 0:
        raise ValueError("amounts sum to zero")
    return -sum(v / total * math.log(v / total) for v in a if v > 0) + 0.0


def sublattice_entropy(sites: Mapping[str, Mapping[str, float]], weights: Mapping[str, float] | None = None) -> float:
    """Sum over sublattices of weight x eq. 1 [R]: eq. 3 with unit weights, eq. 4 with the
    numbers of sites per formula unit (the default: the sum of the amounts on each sublattice)."""
    total = 0.0
    for name, occ in sites.items():
        w = sum(occ.values()) if weights is None else weights[name]
        total += w * ideal_mixing_entropy(occ)
    return total


def entropy_class(s_R: float) -> str:
    """'low' (< 1R), 'medium' (1R to < 1.5R) or 'high' (>= 1.5R), as the review."""
    return "low" if s_R < LOW_MEDIUM_R else ("medium" if s_R < MEDIUM_HIGH_R else "high")


def composition_entropy(composition: Mapping) -> dict:
    """Entropy of a library composition table: eq. 4 per formula unit, its class, and each sublattice's
    eq. 1 value (per site)."""
    sites = composition["sites"]
    per_site = {name: round(ideal_mixing_entropy(occ), 6) for name, occ in sites.items()}
    s = sublattice_entropy(sites)
    return {"formula": composition.get("formula"), "S_conf_R": round(s, 6), "class": entropy_class(s),
            "S_conf_per_site_R": per_site}


def homologous_temperature(T: float, T_m: float) -> float:
    if not (T > 0 and T_m > 0):
        raise ValueError("temperatures must be > 0 K")
    return T / T_m


def _tm(entry_table: Mapping, T: float) -> dict:
    mp = entry_table.get("melting_point")
    if not mp:
        return {"melting_point_K": None, "homologous_temperature": None}
    out = {"melting_point_K": mp["value"], "homologous_temperature": round(homologous_temperature(T, mp["value"]), 4)}
    if mp.get("bound") == "lower":
        out["homologous_temperature_bound"] = "upper"  # T_m >= value -> T_H <= reported
    elif mp.get("bound") == "upper":
        out["homologous_temperature_bound"] = "lower"
    return out


def material_descriptors(entry, temperature: float) -> dict:
    """Descriptors of one library entry (solver.library.Entry) at `temperature` [K]."""
    d = entry.data
    out = {"library": entry.name, **_tm(d, temperature),
           "strength_Pa": (d.get("strength") or {}).get("value")}
    if d.get("composition"):
        c = composition_entropy(d["composition"])
        out.update(configurational_entropy_R=c["S_conf_R"], entropy_class=c["class"],
                   entropy_per_site_R=c["S_conf_per_site_R"])
    lit = d.get("lithiated")
    if lit:
        lo = {"name": lit.get("name"), **_tm(lit, temperature), "strength_Pa": (lit.get("strength") or {}).get("value")}
        if lit.get("composition"):
            c = composition_entropy(lit["composition"])
            lo.update(configurational_entropy_R=c["S_conf_R"], entropy_class=c["class"])
        out["lithiated"] = lo
    return out


def descriptors_for_config(cfg, library_directory=None) -> dict:
    """Descriptors of every solid phase of a validated config, for summary.json.

    A phase is matched to its library entry through its `source` ("library <name>: ...", written when
    the config says `use = ...`) or, failing that, by its name or an alias (MSe -> Mo6Se8, LCO -> LiCoO2).
    Phases without an entry get {"library": null}. Also reports each phase's volume change and whether it
    creeps, from the config itself.
    """
    from .library import entry_for_material

    T = cfg.cycling.temperature
    phases = {}
    for phase, mat in cfg.used_materials().items():
        entry = entry_for_material(phase, mat, library_directory)
        d = material_descriptors(entry, T) if entry is not None else {
            "library": None, "note": "no library entry (name one with use = \"...\" to get T_H and entropy)"}
        if getattr(mat, "strength", None) is not None:  # the fracture-risk metric uses it at every theta
            d["strength_config_Pa"] = mat.strength
        d["volume_change"] = round(mat.volume_ratio_lithiated - 1.0, 6) if mat.active else 0.0
        d["creeps"] = bool(mat.creep is not None and mat.creep.A > 0) or bool(
            mat.lithiated is not None and mat.lithiated.creep is not None and mat.lithiated.creep.A > 0)
        if mat.creep is not None:  # creep rate at T over that at T_ref (exp(-Q/R (1/T - 1/T_ref)); 1 when Q = 0)
            from .materials import arrhenius

            d["creep_arrhenius_factor"] = arrhenius(mat.creep.Q, T, mat.creep.T_ref)
            d["creep_Q_J_per_mol"] = mat.creep.Q
        phases[phase] = d
    return {"temperature_K": T, "phases": phases,
            "entropy_classes_R": {"low": f"< {LOW_MEDIUM_R}", "medium": f"{LOW_MEDIUM_R} to < {MEDIUM_HIGH_R}",
                                  "high": f">= {MEDIUM_HIGH_R}"}}
