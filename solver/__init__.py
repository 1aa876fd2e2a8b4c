"""creep-cathode: chemo-mechanical finite-element simulator for creep-type all-solid-state cathodes.

Python API (PyBaMM-style):

    import creep_cathode as cc
    cfg = cc.load_config("configs/baseline.toml", ["cycling.cycles=1"])   # or cc.validate(dict)
    res = cc.Simulation(cfg, "runs/baseline").solve()
    res.timeseries["contact_Se_Se"], res.cycles, res.summary, res.plot()

`Simulation` and `Results` import DOLFINx on first use; the config layer does not.
"""

from .config import Config, ConfigError, load_config, validate

__all__ = ["Config", "ConfigError", "load_config", "validate", "Simulation", "Results"]


def __getattr__(name):
    if name in ("Simulation", "Results"):
        from . import simulation

        return getattr(simulation, name)
    raise AttributeError(f"module 'creep_cathode' has no attribute {name!r}")
