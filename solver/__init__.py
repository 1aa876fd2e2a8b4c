"""creep-cathode: chemo-mechanical finite-element simulator for creep-type all-solid-state cathodes.

Python API (PyBaMM-style):

    import creep_cathode as cc
    cfg = cc.load_config("configs/baseline.toml", ["cycling.cycles=1"])   # or cc.validate(dict)
    res = cc.Simulation(cfg, "runs/baseline").solve()
    res.timeseries["contact_Se_Se"], res.cycles, res.summary, res.plot()

Every name is imported on first use: `Simulation` and `Results` bring DOLFINx, the config layer
does not.
"""

__all__ = ["Config", "ConfigError", "load_config", "validate", "Simulation", "Results"]
_WHERE = {"Config": "config", "ConfigError": "config", "load_config": "config", "validate": "config",
          "Simulation": "simulation", "Results": "simulation"}


def __getattr__(name):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'creep_cathode' has no attribute {name!r}")
