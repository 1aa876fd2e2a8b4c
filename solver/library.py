"""Cited materials library (configs/materials/*.toml) and its config hook. Imports no DOLFINx.

One TOML file per material (PyBaMM's cited parameter sets are the model); the citations live in
configs/materials/_references.toml, keyed. Every number is a table

    youngs_modulus = { value = 10e9, kind = "measured", ref = "elastic_elements", note = "..." }

  kind   measured | estimated | DFT | assumed | calibrated
         (estimated: derived by a stated rule from measured numbers of another quantity or material)
  ref    a key (or list of keys) of _references.toml: the full citation with its DOI or address
  note   what the value rests on; required for `assumed` (the reason), `estimated` (the rule and the
         numbers it starts from) and `calibrated` (naming the script or record that produced it:
         scripts/..., docs/calibration/...)
  bound  optional, "lower" or "upper": the value is a bound, not an estimate

Keys that map onto a config material (solver/config.py, class Material), SI units:
  active (plain boolean), youngs_modulus [Pa], poisson_ratio, volume_ratio_lithiated,
  creep.{A [1/s], n, sigma_ref [Pa], Q [J/mol], T_ref [K]},
  lithiated.{youngs_modulus, poisson_ratio, creep.*}.
Descriptive keys (not part of a config): melting_point [K], strength [Pa] (fracture strength, the
threshold of the fracture-risk indicator), composition (sublattices for the configurational
entropy, solver/descriptors.py), lithiated.{name, formula, melting_point, strength, composition,
products}, and name, formula, role, aliases, description, summary.

A config names an entry, `[materials.Se]` with `use = "Se"` (any key beside `use` overrides that
value, nested tables merge), or the short form `materials.Se = "Se"`. `resolve_materials` turns it
into explicit values before validation, so the normalised config (`creep-cathode check`) and the
physics hash are those of the explicit values; the resolved `source` reads "library <name>: ...".
"""

from __future__ import annotations

import copy
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .config import ConfigError

__all__ = ["KINDS", "Entry", "UnknownMaterial", "library_dir", "load_library", "get_entry", "check_entry", "resolve_materials",
           "expand_short_forms", "entry_for_material", "format_table", "format_entry"]

KINDS = ("measured", "estimated", "DFT", "assumed", "calibrated")
REFERENCES_FILE = "_references.toml"
SOURCE_PREFIX = "library "

_CREEP_KEYS = ("A", "n", "sigma_ref", "Q", "T_ref")
_VALUE_KEYS = {"value", "kind", "ref", "note", "bound"}
_TOP_KEYS = {"name", "formula", "role", "aliases", "description", "summary", "active", "youngs_modulus",
             "poisson_ratio", "volume_ratio_lithiated", "creep", "lithiated", "melting_point", "strength",
             "composition"}
_LITHIATED_KEYS = {"name", "formula", "youngs_modulus", "poisson_ratio", "creep", "melting_point", "strength",
                   "composition", "products", "note"}
_COMPOSITION_KEYS = {"formula", "ref", "note", "sites"}
_ROLES = ("active", "framework", "electrolyte", "anode")


class UnknownMaterial(ConfigError):
    """No library entry of that name or alias."""


def library_dir() -> Path:
    """$CREEP_CATHODE_MATERIALS, else the installed library (configs/materials/ of the source
    tree, installed as the data package creep_cathode.materials_library)."""
    env = os.environ.get("CREEP_CATHODE_MATERIALS")
    if env:
        return Path(env)
    from importlib.resources import files

    return Path(str(files("creep_cathode.materials_library")))


@dataclass
class Entry:
    """One library file: its raw TOML table and the shared references."""

    name: str
    path: Path
    data: dict
    references: dict = field(default_factory=dict)

    def value(self, *keys: str) -> float | None:
        d = self.data
        for k in keys:
            if not isinstance(d, dict) or k not in d:
                return None
            d = d[k]
        return d.get("value") if isinstance(d, dict) else None

    def values(self):
        """(dotted key, value table) for every number of the entry."""
        yield from _walk_values(self.data, "")

    def config_table(self) -> dict:
        """The entry as a config [materials.X] table (explicit values, with `source`)."""
        d = self.data
        t: dict = {"active": bool(d.get("active", False))}
        for k in ("youngs_modulus", "poisson_ratio", "volume_ratio_lithiated"):
            if k in d:
                t[k] = d[k]["value"]
        if "creep" in d:
            t["creep"] = {k: d["creep"][k]["value"] for k in _CREEP_KEYS if k in d["creep"]}
        lit = d.get("lithiated", {})
        lt = {k: lit[k]["value"] for k in ("youngs_modulus", "poisson_ratio") if k in lit}
        if "creep" in lit:
            lt["creep"] = {k: lit["creep"][k]["value"] for k in _CREEP_KEYS if k in lit["creep"]}
        if lt:
            t["lithiated"] = lt
        t["source"] = f"{SOURCE_PREFIX}{self.name}: {d.get('summary', '')}".rstrip(": ")
        return t


def _walk_values(d: dict, prefix: str):
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict) and "value" in v:
            yield key, v
        elif isinstance(v, dict) and k not in ("sites",):
            yield from _walk_values(v, key)


# -- loading -----------------------------------------------------------------------------------
_CACHE: dict = {}


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read library file ({e.__class__.__name__})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path.name}: not valid TOML ({e})") from None


def load_library(directory: str | Path | None = None) -> dict[str, Entry]:
    """Every entry of the library folder by name (not yet checked; `get_entry` checks)."""
    folder = Path(directory) if directory is not None else library_dir()
    files = sorted(folder.glob("*.toml")) if folder.is_dir() else []
    stamp = (str(folder), tuple((f.name, f.stat().st_mtime_ns) for f in files))
    if _CACHE.get("stamp") == stamp:
        return _CACHE["entries"]
    if not files:
        raise ConfigError(f"materials library: no entries in {folder} (set CREEP_CATHODE_MATERIALS)")
    refs_path = folder / REFERENCES_FILE
    refs = _read_toml(refs_path) if refs_path.exists() else {}
    entries: dict[str, Entry] = {}
    for f in files:
        if f.name.startswith("_"):
            continue
        data = _read_toml(f)
        name = data.get("name", f.stem)
        entries[str(name)] = Entry(str(name), f, data, refs)
    _CACHE.update(stamp=stamp, entries=entries)
    return entries


def _known(entries: dict[str, Entry]) -> str:
    return ", ".join(sorted(entries))


def get_entry(name: str, directory: str | Path | None = None) -> Entry:
    """The checked entry `name` (or an alias); ConfigError naming the file and key if it is broken."""
    entries = load_library(directory)
    entry = entries.get(name)
    if entry is None:
        entry = next((e for e in entries.values() if name in (e.data.get("aliases") or [])), None)
    if entry is None:
        raise UnknownMaterial(f"materials library: unknown material {name!r} (known: {_known(entries)})")
    problems = check_entry(entry)
    if problems:
        raise ConfigError(f"{entry.path.name}: {problems[0]}")
    return entry


# -- checks --------------------------------------------------------------------------------------
def _check_value(key: str, v, refs: dict) -> list[str]:
    out = []
    if not isinstance(v, dict) or "value" not in v:
        return [f"{key}: expected a table {{ value, kind, ref, note }}"]
    extra = set(v) - _VALUE_KEYS
    if extra:
        out.append(f"{key}: unknown key {sorted(extra)[0]!r}")
    x = v["value"]
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        out.append(f"{key}.value: must be a finite number")
    kind = v.get("kind")
    if kind not in KINDS:
        out.append(f"{key}.kind: {kind!r} is not one of {', '.join(KINDS)}")
    out += _check_ref(key, v.get("ref"), refs)
    note = v.get("note", "")
    if not isinstance(note, str):
        out.append(f"{key}.note: must be a string")
    elif kind in ("assumed", "estimated", "calibrated") and not note.strip():
        out.append(f"{key}.note: an {kind} value needs a note saying what it rests on")
    elif kind == "calibrated" and "scripts/" not in note and "docs/" not in note:
        out.append(f"{key}.note: a calibrated value must name its script or record (scripts/..., docs/...)")
    if v.get("bound") not in (None, "lower", "upper"):
        out.append(f"{key}.bound: must be 'lower' or 'upper'")
    return out


def _check_ref(key: str, ref, refs: dict) -> list[str]:
    keys = [ref] if isinstance(ref, str) else ref
    if not keys or not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
        return [f"{key}.ref: missing citation (a key of {REFERENCES_FILE})"]
    missing = [k for k in keys if not isinstance(refs.get(k), str) or not refs[k].strip()]
    return [f"{key}.ref: {missing[0]!r} is not in {REFERENCES_FILE}"] if missing else []


def _check_composition(key: str, c, refs: dict) -> list[str]:
    if not isinstance(c, dict):
        return [f"{key}: expected a table {{ formula, ref, sites }}"]
    out = [f"{key}: unknown key {k!r}" for k in sorted(set(c) - _COMPOSITION_KEYS)]
    if not isinstance(c.get("formula"), str):
        out.append(f"{key}.formula: required (a string)")
    out += _check_ref(key, c.get("ref"), refs)
    sites = c.get("sites")
    if not isinstance(sites, dict) or not sites:
        return out + [f"{key}.sites: required, e.g. {{ TM = {{ Ni = 0.8, Co = 0.1, Mn = 0.1 }} }}"]
    for s, occ in sites.items():
        if not isinstance(occ, dict) or not occ:
            out.append(f"{key}.sites.{s}: expected {{ species = amount per formula unit }}")
            continue
        for sp, a in occ.items():
            if isinstance(a, bool) or not isinstance(a, (int, float)) or not a >= 0 or not math.isfinite(a):
                out.append(f"{key}.sites.{s}.{sp}: amount must be a finite number >= 0")
        if not sum(a for a in occ.values() if isinstance(a, (int, float))) > 0:
            out.append(f"{key}.sites.{s}: amounts sum to zero")
    return out


def check_entry(entry: Entry) -> list[str]:
    """Every problem of one entry ('key: problem'); empty when it is complete and cited."""
    d, refs = entry.data, entry.references
    out = [f"{k}: unknown key" for k in sorted(set(d) - _TOP_KEYS)]
    for k in ("name", "formula", "role", "summary"):
        if not isinstance(d.get(k), str) or not d[k].strip():
            out.append(f"{k}: required (a string)")
    if d.get("role") not in _ROLES:
        out.append(f"role: {d.get('role')!r} is not one of {', '.join(_ROLES)}")
    if not isinstance(d.get("active"), bool):
        out.append("active: required (true or false)")
    if not isinstance(d.get("aliases", []), list):
        out.append("aliases: must be a list of names")
    for k in ("youngs_modulus", "poisson_ratio"):
        if k not in d:
            out.append(f"{k}: required")
    for prefix, tab in (("", d), ("lithiated.", d.get("lithiated") or {})):
        c = tab.get("creep")
        if c is not None:
            if not isinstance(c, dict):
                out.append(f"{prefix}creep: expected a table of A, n, sigma_ref (Q, T_ref)")
                continue
            out += [f"{prefix}creep.{k}: unknown key" for k in sorted(set(c) - set(_CREEP_KEYS))]
            out += [f"{prefix}creep.{k}: required" for k in ("A", "n", "sigma_ref") if k not in c]
    lit = d.get("lithiated")
    if lit is not None:
        if not isinstance(lit, dict):
            out.append("lithiated: expected a table")
            lit = {}
        out += [f"lithiated.{k}: unknown key" for k in sorted(set(lit) - _LITHIATED_KEYS)]
        if "products" in lit and not (isinstance(lit["products"], list)
                                      and all(isinstance(p, str) for p in lit["products"])):
            out.append("lithiated.products: must be a list of formulas")
    for key, v in _walk_values(d, ""):
        out += _check_value(key, v, refs)
    for key, v in (("composition", d.get("composition")), ("lithiated.composition", (lit or {}).get("composition"))):
        if v is not None:
            out += _check_composition(key, v, refs)
    # every number sits in a value table: a bare number anywhere else is uncited
    for key, x in _bare_numbers(d, ""):
        out.append(f"{key}: a bare number; write {{ value = {x!r}, kind = ..., ref = ... }}")
    if not out:
        out += _check_schema(entry)
    return out


def _bare_numbers(d: dict, prefix: str):
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else k
        if k == "sites" or (isinstance(v, dict) and "value" in v):
            continue
        if isinstance(v, dict):
            yield from _bare_numbers(v, key)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            yield key, v


def _check_schema(entry: Entry) -> list[str]:
    """The config table the entry produces must pass the config schema."""
    from pydantic import ValidationError

    from .config import Material

    try:
        Material.model_validate(entry.config_table())
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        loc = ".".join(str(x) for x in err.get("loc", ()))
        return [f"{loc or 'entry'}: {err['msg'].removeprefix('Value error, ')} (as a config material)"]
    return []


# -- config hook ---------------------------------------------------------------------------------
def expand_short_forms(data: dict) -> dict:
    """`materials.X = "name"` -> `materials.X = { use = "name" }` (so `--set materials.X.key=...` works)."""
    mats = data.get("materials") if isinstance(data, dict) else None
    if not isinstance(mats, dict) or not any(isinstance(v, str) for v in mats.values()):
        return data
    out = dict(data)
    out["materials"] = {k: ({"use": v} if isinstance(v, str) else v) for k, v in mats.items()}
    return out


def _merge(base: dict, over: dict, prefix: str, changed: list) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v, f"{prefix}{k}.", changed)
        else:
            out[k] = copy.deepcopy(v)
            if k != "source":
                changed.append(prefix + k)
    return out


def resolve_materials(data: dict, directory: str | Path | None = None) -> dict:
    """Replace every library reference under [materials] by the entry's explicit values.

    Keys given beside `use` override the entry's (tables merge key by key). Returns a new dict;
    `data` is left alone. Raises ConfigError (one line, naming the key) for unknown entries.
    """
    data = expand_short_forms(data)
    mats = data.get("materials") if isinstance(data, dict) else None
    if not isinstance(mats, dict) or not any(isinstance(v, dict) and "use" in v for v in mats.values()):
        return data
    out = dict(data)
    out["materials"] = dict(mats)
    for phase, tab in mats.items():
        if not isinstance(tab, dict) or "use" not in tab:
            continue
        name = tab["use"]
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"materials.{phase}.use: must be the name of a library material (a string)")
        try:
            entry = get_entry(name, directory)
        except UnknownMaterial:
            raise ConfigError(f"materials.{phase}.use: unknown library material {name!r} "
                              f"(known: {_known(load_library(directory))}; see `creep-cathode materials`)") from None
        except ConfigError as e:  # a broken library file: name it
            raise ConfigError(f"materials.{phase}.use = {name!r}: {e}") from None
        changed: list[str] = []
        over = {k: v for k, v in tab.items() if k != "use"}
        resolved = _merge(entry.config_table(), over, "", changed)
        if changed and "source" not in over:
            resolved["source"] += f"; overridden in the config: {', '.join(changed)}"
        out["materials"][phase] = resolved
    return out


def entry_for_material(phase: str, material, directory: str | Path | None = None) -> Entry | None:
    """The library entry behind a validated config material: the one its `source` names
    ("library <name>: ..."), else the entry whose name or alias is the phase name; None if neither."""
    try:
        entries = load_library(directory)
    except ConfigError:
        return None
    src = getattr(material, "source", "") or ""
    names = []
    if src.startswith(SOURCE_PREFIX):
        names.append(src[len(SOURCE_PREFIX):].split(":", 1)[0].strip())
    names.append(phase)
    for n in names:
        for e in entries.values():
            if n == e.name or n in (e.data.get("aliases") or []):
                return e if not check_entry(e) else None
    return None


# -- listing (creep-cathode materials) -----------------------------------------------------------
def _fmt(x: float | None, scale: float = 1.0, digits: int = 3) -> str:
    return "—" if x is None else f"{x / scale:.{digits}g}"


def format_table(directory: str | Path | None = None) -> str:
    """The library as a text table, then each entry's sources."""
    entries = load_library(directory)
    rows = [("name", "phase", "formula", "E [GPa]", "nu", "dV [%]", "creep", "T_m [K]", "lithiated")]
    for name in sorted(entries, key=str.lower):
        e = get_entry(name, directory)
        J = e.value("volume_ratio_lithiated")
        tm = e.value("melting_point")
        bound = (e.data.get("melting_point") or {}).get("bound")
        lit = e.data.get("lithiated") or {}
        rows.append((e.name, e.data["role"], e.data["formula"], _fmt(e.value("youngs_modulus"), 1e9),
                     _fmt(e.value("poisson_ratio")), "—" if J is None else f"{100 * (J - 1):+.3g}",
                     "yes" if "creep" in e.data else "no",
                     "—" if tm is None else (">=" if bound == "lower" else "") + f"{tm:.0f}",
                     lit.get("name") or "+".join(lit.get("products", [])) or "—"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines += ["", "Sources (`creep-cathode materials NAME` shows every value with its kind and citation):"]
    for name in sorted(entries, key=str.lower):
        lines.append(f"  {name}: {entries[name].data['summary']}")
    return "\n".join(lines) + "\n"


def format_entry(name: str, directory: str | Path | None = None) -> str:
    """One entry: every value with its kind, note and full citation."""
    e = get_entry(name, directory)
    d = e.data
    lines = [f"{e.name} ({d['formula']}): {d.get('description', '')}".rstrip(": "),
             f"role: {d['role']}; active: {str(d['active']).lower()}; file: {e.path}"]
    if d.get("aliases"):
        lines.append(f"aliases: {', '.join(d['aliases'])}")
    used: list[str] = []
    lines += ["", "value table (SI units: Pa, K, 1/s, J/mol):"]
    for key, v in e.values():
        refs = [v["ref"]] if isinstance(v["ref"], str) else v["ref"]
        used += [r for r in refs if r not in used]
        bound = f" ({v['bound']} bound)" if v.get("bound") else ""
        lines.append(f"  {key} = {v['value']:.6g}{bound}  [{v['kind']}; {', '.join(refs)}]")
        if v.get("note"):
            lines.append(f"      {v['note']}")
    for key in ("composition", "lithiated.composition"):
        c = d.get("composition") if key == "composition" else (d.get("lithiated") or {}).get("composition")
        if c:
            refs = [c["ref"]] if isinstance(c["ref"], str) else c["ref"]
            used += [r for r in refs if r not in used]
            sites = "; ".join(f"{s}: " + ", ".join(f"{sp} {a:g}" for sp, a in occ.items())
                              for s, occ in c["sites"].items())
            lines.append(f"  {key} = {c['formula']}  (sites {sites})  [{', '.join(refs)}]")
            if c.get("note"):
                lines.append(f"      {c['note']}")
    lit = d.get("lithiated") or {}
    if lit.get("products"):
        lines.append(f"  lithiated products: {' + '.join(lit['products'])}")
    if lit.get("note"):
        lines.append(f"  lithiated: {lit['note']}")
    lines += ["", "as a config table (`use = \"" + e.name + "\"`):"]
    lines += ["  " + s for s in _config_lines(e.config_table())]
    lines += ["", "references:"] + [f"  [{r}] {e.references[r]}" for r in used]
    return "\n".join(lines) + "\n"


def _config_lines(t: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in t.items():
        if isinstance(v, dict):
            out += _config_lines(v, f"{prefix}{k}.")
        else:
            out.append(f"{prefix}{k} = {v!r}" if not isinstance(v, bool) else f"{prefix}{k} = {str(v).lower()}")
    return out
