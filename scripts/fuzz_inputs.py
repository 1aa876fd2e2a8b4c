"""Fuzz the input layer of creep-cathode with a corpus of bad and hostile inputs.

Every config key (of three bases: a random RVE, explicit particles, a tiny block), every protocol
form, hostile files (FIFO, /dev/zero, deep nesting, huge integers, non-UTF-8, 17 MB), hostile
`--set` arguments and hostile sweep files each go through `creep-cathode check` (or `sweep
--slurm`) as a subprocess with a timeout. Each input carries a label: `bad` (certainly wrong: must
be refused), `good` (must be accepted, and its normalised TOML must load again to the same
config) or `?` (either is fine). Optionally (`--runs N`) up to N accepted inputs of the tiny block
base also go through `creep-cathode run` (one cheap cycle).

Reported: tracebacks, hangs, exit-1s, other odd exit codes, errors that are not one short line,
accepted-bad inputs, refused-good inputs, normalised TOML that does not load again, and for the
runs the same plus their exit codes. Exit status 1 when any of these counts is non-zero.

    .venv/bin/python scripts/fuzz_inputs.py [--jobs 2] [--runs 10] [--sample 1.0] [--report fuzz.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from creep_cathode.config import _dump_toml, load_toml, to_dict, validate

ROOT = Path(__file__).resolve().parents[1]
EXE = [sys.executable, "-m", "creep_cathode.cli"]
MAX_LINE = 500  # an error line longer than this counts as not short
sys.set_int_max_str_digits(0)  # to write integers of any length into the corpus

BLOCK_SET = {"rve": {"kind": "block", "phase": "Se", "width": 4e-6, "height": 4e-6, "mesh_size": 1e-6},
             "boundary": {"right": "free", "top": "free"},
             "cycling": {"cycles": 1, "protocol": ["Lithiate at 2C to 0.1"]},
             "output": {"plots": False, "fields": "none", "progress": False}}

BIG = 10**4000  # within Python's int-string limit but beyond every bound
HUGE = 10**5000  # beyond the 4300-digit limit of int()
LONG = "x" * 1_000_000
NUM_BAD = [True, "1", [], {}, math.nan, math.inf, -math.inf, 1e300, -1e300, BIG, HUGE, LONG]
NUM_MAYBE = [0, -1, 1e-300, 2**63]
BOOL_BAD = [1, 0, "true", "yes", [], LONG]
ENUM_BAD = ["", "x", 1, True, "Random", "roller ", LONG, [], {}]
PHASE_BAD = ["", "$x", "a\nb", "\U0001F600", "x" * 1000, 1, True, "1abc", "a b", "../x"]
TEXT_GOOD = ["S\u00e9 \U0001F600", "\x00\x01\x7f", "x" * 100_000, '"', "\\", "line\nbreak", "\u202e rtl", ""]
LIST_BAD = [1, "x", [], [1], [True], [[]], [{}], [LONG], {}]
CENTER_BAD = [[1e-6], [1e-6, 2e-6, 3e-6], ["a", "b"], [math.nan, 0.0], [True, False], 1, [BIG, 0]]
ENUM_KEYS = {"kind", "fields", "left", "right", "bottom", "top"}
PHASE_KEYS = {"phase"}
TEXT_KEYS = {"source"}
OPTIONAL = [  # keys a base may lack: (path, value of its kind)
    (("contact", "dhat"), 1e-8), (("contact", "tolerance"), 1e-8), (("solver", "quadrature_degree"), 2),
    (("materials", "Se", "lithiated", "creep"), {"A": 1e-8, "n": 5.0, "sigma_ref": 1e8}),
    (("materials", "Se", "creep", "Q"), 1e5),
    (("materials", "Se", "creep", "T_ref"), 300.0), (("cycling", "initial_theta"), 0.1),
    (("rve", "packing_iterations"), 10000),
]


# ------------------------------------------------------------------------------------------ corpus
def _bases(tmp: Path) -> dict[str, dict]:
    se = to_dict(validate(load_toml(ROOT / "configs" / "se_mse.toml")))
    parts = to_dict(validate(load_toml(ROOT / "configs" / "baseline.toml")))
    block = copy.deepcopy(se)
    for sec, vals in BLOCK_SET.items():
        block.setdefault(sec, {}).update(vals)
    for k in ("fractions", "size", "particles", "seed", "packing_iterations"):
        block["rve"].pop(k, None)
    block = to_dict(validate(block))
    return {"random": se, "particles": parts, "block": block}


def _leaves(d, prefix=()):
    for k, v in d.items():
        p = prefix + (k,)
        if isinstance(v, dict) and v:
            yield p, v, True
            yield from _leaves(v, p)
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            yield p, v, False
            for i, x in enumerate(v[:1]):
                yield from _leaves(x, p + (i,))
        else:
            yield p, v, False


def _which_base(path) -> str:
    if path[0] == "rve" and len(path) > 1 and path[1] in ("fractions", "size", "seed", "packing_iterations",
                                                          "min_gap"):
        return "random"
    if path[0] == "rve" and len(path) > 1 and path[1] == "particles":
        return "particles"
    return "block"


def _put(data, path, value, action="set"):
    d = copy.deepcopy(data)
    node = d
    for k in path[:-1]:
        node = node[k] if isinstance(k, int) else node.setdefault(k, {})
    if action == "delete":
        node.pop(path[-1], None)
    elif action == "unknown":
        node["unknown_key_x"] = 1
    else:
        node[path[-1]] = value
    return d


def _values(path, value, is_table):
    """(value, label) pairs for one key, from the kind of its current value."""
    name = path[-1]
    if is_table:
        return [(1, "bad"), ([], "bad"), ("x", "bad")]
    if isinstance(value, bool):
        return [(v, "bad") for v in BOOL_BAD] + [(not value, "?")]
    if isinstance(value, (int, float)):
        return [(v, "bad") for v in NUM_BAD] + [(v, "?") for v in NUM_MAYBE]
    if isinstance(value, str) and name in ENUM_KEYS:
        return [(v, "bad") for v in ENUM_BAD] + ([({"pressure": 1e6}, "?")] if name in ("top", "right") else [])
    if isinstance(value, str) and name in PHASE_KEYS:
        return [(v, "bad") for v in PHASE_BAD]
    if isinstance(value, str) and name in TEXT_KEYS:
        return [(v, "good") for v in TEXT_GOOD] + [(1, "bad"), (True, "bad")]
    if isinstance(value, list) and name == "center":
        return [(v, "bad") for v in CENTER_BAD]
    if isinstance(value, list):
        return [(v, "bad") for v in LIST_BAD]
    if isinstance(value, dict):  # pressure side
        return [({"pressure": v}, "bad") for v in NUM_BAD[:8]]
    return [(1, "?")]


_GRAMMAR_NUM = re.compile(r"^(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$")
STEP_NUMS = ["0.1", "2", "1000", "1e-5", "1e400", "1e13", "1e-13", "0", "-1", "nan", "inf", "1e-400", "0x10",
             "1_000", "\u0661", "\uff11", "1.", ".5", "5e", "1e999999999", "9" * 5000, "", "1000.01", "9e-6"]
UNITS = {"s": 1.0, "min": 60.0, "hr": 3600.0, "hours": 3600.0}


def _num(s):
    return float(s) if _GRAMMAR_NUM.match(s) else None


def _protocol_cases():
    """(step string, label) by an oracle independent of solver/protocol.py: the documented bounds."""
    out = []
    for kind in ("Lithiate", "Delithiate"):
        for n in STEP_NUMS:
            c = _num(n)
            ok = c is not None and 1e-5 <= c <= 1000 and len(n) < 150  # a step is at most 200 characters
            out.append((f"{kind} at {n}C", "good" if ok else "bad"))
            for m in ("0.3", "1.5", "1e400", "1e-400"):
                t = _num(m)
                okm = ok and t is not None and 0 <= t <= 1
                out.append((f"{kind} at {n}C to {m}", "good" if okm else "bad"))
    for n in STEP_NUMS:
        for u, f in UNITS.items():
            d = _num(n)
            ok = d is not None and 0 < d * f <= 1e9 and len(n) < 150
            out.append((f"Rest for {n} {u}", "good" if ok else "bad"))
    out += [("lithiate   AT 1c", "good"), ("REST FOR 2 HOURS", "good"), ("Lithiate at 1C\nRest for 2 h", "bad"),
            ("Lithiate at 1C" + " " * 100000 + "x", "bad"), ("Lithiate at 1C\x00", "bad"), ("\u00a0Rest for 1 s", "?"),
            ("Rest for 1 fortnight", "bad"), ("Charge at 1C", "bad"), ("Lithiate at 1 C to 0.5", "good"),
            ("x" * 1_000_000, "bad")]
    return out


def _files(tmp: Path, base_text: str):
    """(path, label, note): hostile files as configs."""
    out = []

    def w(name, data, label, note):
        p = tmp / name
        (p.write_bytes if isinstance(data, bytes) else p.write_text)(data)
        out.append((str(p), label, note))

    w("deep.toml", "a = " + "[" * 100000 + "]" * 100000, "bad", "deeply nested arrays (RecursionError)")
    w("deep_tables.toml", "a = " + "{b = " * 2000 + "1" + "}" * 2000, "bad", "deeply nested inline tables")
    w("nest40.toml", "x = " + "[" * 40 + "1" + "]" * 40, "bad", "nesting 40")
    w("digits.toml", base_text.replace("seed = 1", "seed = 1" + "0" * 5000), "bad", "5001-digit integer")
    w("digits4000.toml", base_text.replace("seed = 1", "seed = 1" + "0" * 3999), "bad", "4000-digit integer")
    w("latin1.toml", base_text.replace("Se =", "S\xe9 =").encode("latin-1", "replace"), "bad", "not UTF-8")
    w("binary.toml", bytes(random.Random(1).randrange(256) for _ in range(4096)), "bad", "random bytes")
    w("empty.toml", "", "bad", "empty file")
    w("bom.toml", "\ufeff" + base_text, "?", "UTF-8 BOM")
    w("big.toml", base_text + "\n# " + "x" * (17 * 2**20), "bad", "17 MB")
    w("dupkey.toml", base_text + "\n[rve]\nseed = 2\n", "bad", "duplicate table")
    w("newline_key.toml", base_text.replace("[rve]", '[rve]\n"a\\nb" = 1', 1), "bad", "key with a newline")
    w("long_key.toml", base_text.replace("[rve]", f'[rve]\n"{"k" * 1_000_000}" = 1', 1), "bad", "1 MB key")
    w("long_value.toml", base_text.replace('kind = "random"', f'kind = "{"r" * 1_000_000}"', 1), "bad", "1 MB value")
    w("nul.toml", base_text.replace("[rve]", "[rve]\x00", 1), "bad", "NUL byte")
    fifo = tmp / "fifo.toml"
    os.mkfifo(fifo)
    out.append((str(fifo), "bad", "FIFO"))
    out += [("/dev/zero", "bad", "/dev/zero"), ("/dev/null", "bad", "/dev/null"), (str(tmp), "bad", "a directory"),
            (str(tmp / "missing.toml"), "bad", "missing file"), ("x" * 5000, "bad", "5000-character path"),
            ("/proc/self/mem", "bad", "/proc/self/mem")]
    return out


SET_CASES = [("noequals", "bad"), ("=1", "bad"), ("rve..seed=1", "bad"), ("rve.seed.x=1", "bad"), ("rve=1", "bad"),
             ("rve.seed=1" + "0" * 5000, "bad"), ("rve.kind=" + "k" * 100000, "bad"),
             ("cycling.protocol=" + "[" * 5000, "bad"), ("rve.seed=" + "[" * 100000, "bad"),
             ("materials.Se.source=S\udce9", "bad"), ("rve.seed=3", "good"), (" rve.seed = 3 ", "good"),
             ("materials.Se.youngs_modulus=1_0e9", "good"), ("materials.Se.source=bare words", "good")]

SWEEPS = [  # (sweep file body, label): run as `sweep SW -o DIR --slurm`
    ('base = "base.toml"\naxis = 1', "bad"), ('base = 3\n[[axis]]\nkey = "rve.seed"\nvalues = [1]', "bad"),
    ('base = "base.toml"\n[[axis]]\nkey = 7\nvalues = [1]', "bad"),
    ('base = "base.toml"\n[[axis]]\nkey = "rve.seed"\nvalues = [1]\nlabels = [{a = 1}]', "bad"),
    ('base = "base.toml"\nset = "x"\n[[axis]]\nkey = "rve.seed"\nvalues = [1]', "bad"),
    ('base = "base.toml"\n[[axis]]\nkey = "rve.seed.x"\nvalues = [1]', "bad"),
    ('base = "/dev/zero"\n[[axis]]\nkey = "rve.seed"\nvalues = [1]', "bad"),
    ('base = "../../../../../../etc/passwd"\n[[axis]]\nkey = "rve.seed"\nvalues = [1]', "bad"),
    ('base = "base.toml"\n[[axis]]\nkey = "rve.seed"\nvalues = []', "bad"),
    ('base = "base.toml"\n[[axis]]\nkey = "rve.seed"\nvalues = [true]', "bad"),
    ('base = "base.toml"\n[[axis]]\nkey = "rve.seed"\nvalues = [1, 2]\nlabels = ["a"]', "bad"),
    ('base = "base.toml"\nmode = "zip"\n[[axis]]\nkey = "rve.seed"\nvalues = [1, 2]\n[[axis]]\nkey = "rve.seed"\n'
     'values = [1]', "bad"),
    ('base = "base.toml"\n[[axis]]\nkey = "rve.seed"\nname = "/../../../../tmp/x"\nvalues = [1, 2]\n'
     'labels = ["/../../../../tmp/y", "$(touch PWNED)"]', "good"),
    ('base = "base.toml"\n[[axis]]\nkey = "rve.seed"\nvalues = [1]\n' + "x" * 100 + " = 1", "bad"),
]


# ------------------------------------------------------------------------------------------ running
def _classify(rc, err, label, timed_out):
    """The problems of one result (empty: fine)."""
    probs = []
    if timed_out:
        return ["hang"]
    if "Traceback" in err:
        probs.append("traceback")
    if rc == 1:
        probs.append("exit-1")
    elif rc not in (0, 2, 4):
        probs.append(f"exit-{rc}")
    if rc != 0:
        lines = err.strip().splitlines()
        if len(lines) != 1 or len(lines[0]) > MAX_LINE:
            probs.append("not-one-short-line")
    if rc == 0 and label == "bad":
        probs.append("accepted-bad")
    if rc != 0 and label == "good":
        probs.append("refused-good")
    return probs


def _check(case, timeout):
    cmd = EXE + case["args"]
    t0 = time.monotonic()
    try:
        r = subprocess.run(cmd, capture_output=True, timeout=timeout, cwd=case.get("cwd"))
        rc, out, err, timed_out = r.returncode, r.stdout.decode("utf-8", "replace"), \
            r.stderr.decode("utf-8", "replace"), False
    except subprocess.TimeoutExpired:
        rc, out, err, timed_out = None, "", "", True
    probs = _classify(rc, err, case["label"], timed_out)
    if rc == 0 and case["args"][0] == "check":
        try:
            again = validate(tomllib.loads(out))
            text = out
            if _dump_toml(to_dict(again)) != text:
                probs.append("roundtrip-changed")
        except Exception as e:  # noqa: BLE001 - any failure to load again is the finding
            probs.append(f"roundtrip-broken ({type(e).__name__})")
    return dict(case, rc=rc, problems=probs, seconds=round(time.monotonic() - t0, 2),
                stderr=err.strip()[:300], args=[a[:120] for a in case["args"]])


def build_corpus(tmp: Path) -> list[dict]:
    bases = _bases(tmp)
    files = {}
    for name, data in bases.items():
        p = tmp / f"base_{name}.toml"
        p.write_text(_dump_toml(data))
        files[name] = data
    cases = []

    def add_config(data, label, note, base):
        i = len(cases)
        p = tmp / f"c{i:05d}.toml"
        try:
            p.write_text(_dump_toml(data), encoding="utf-8", errors="surrogatepass")
        except (ValueError, TypeError) as e:
            print(f"skipped (cannot write): {note}: {e}", file=sys.stderr)
            return
        cases.append({"args": ["check", str(p)], "label": label, "note": note, "base": base, "file": str(p)})

    for base_name, data in bases.items():
        for path, value, is_table in _leaves(data):
            if _which_base(path) != base_name:
                continue
            key = ".".join(map(str, path))
            for v, label in _values(path, value, is_table):
                add_config(_put(data, path, v), label, f"{key} = {repr(v)[:60]}", base_name)
            add_config(_put(data, path, None, "delete"), "?", f"{key} deleted", base_name)
            if is_table:
                add_config(_put(data, path + ("x",), None, "unknown"), "bad", f"{key}: unknown key", base_name)
    for path, v in OPTIONAL:
        base_name = _which_base(path)
        data = bases[base_name] if path[0] != "materials" or "Se" in bases[base_name]["materials"] else bases["random"]
        for val, label in [(v, "good")] + [(x, "bad") for x in NUM_BAD]:
            add_config(_put(data, path, val), label, f"{'.'.join(path)} = {repr(val)[:60]}", base_name)
    for step, label in _protocol_cases():
        add_config(_put(bases["block"], ("cycling", "protocol"), [step]), label, f"protocol step {step[:60]!r}",
                   "block")
    base_text = (ROOT / "configs" / "se_mse.toml").read_text()
    for path, label, note in _files(tmp, base_text):
        cases.append({"args": ["check", path], "label": label, "note": note, "base": "file"})
    for ov, label in SET_CASES:
        cases.append({"args": ["check", str(tmp / "base_block.toml"), "--set", ov], "label": label,
                      "note": f"--set {ov[:60]!r}", "base": "set"})
    (tmp / "base.toml").write_text(base_text)
    for i, (body, label) in enumerate(SWEEPS):
        p = tmp / f"sweep{i:02d}.toml"
        p.write_text(body)
        cases.append({"args": ["sweep", str(p), "-o", str(tmp / f"sweep_out{i:02d}"), "--slurm"], "label": label,
                      "note": f"sweep file {body[:60]!r}", "base": "sweep"})
    cases.append({"args": ["sweep", str(tmp / "sweep00.toml"), "-o", str(tmp / "o $(touch PWNED)"), "--slurm",
                           "--jobs", "x"], "label": "bad", "note": "bad --jobs", "base": "sweep"})
    return cases


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2, help="checks at a time")
    ap.add_argument("--runs", type=int, default=0, help="also `run` up to N accepted inputs of the tiny block base")
    ap.add_argument("--sample", type=float, default=1.0, help="fraction of the corpus to check (1 = all)")
    ap.add_argument("--seed", type=int, default=1, help="seed of --sample and of the runs' choice")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds before a check counts as a hang")
    ap.add_argument("--report", default=None, help="write every result as JSON here")
    a = ap.parse_args(argv)
    rng = random.Random(a.seed)
    with tempfile.TemporaryDirectory(prefix="fuzz_inputs_") as td:
        tmp = Path(td)
        cases = build_corpus(tmp)
        if a.sample < 1.0:
            cases = [c for c in cases if rng.random() < a.sample]
        t0 = time.monotonic()
        print(f"corpus: {len(cases)} inputs; checking with {a.jobs} jobs ...", flush=True)
        results = []
        with ThreadPoolExecutor(max_workers=max(1, a.jobs)) as ex:
            for r in ex.map(lambda c: _check(c, a.timeout), cases):
                results.append(r)
                if r["problems"]:
                    print(f"  ! {r['problems']} rc={r['rc']} {r['note'][:80]!r}: {r['stderr'][:160]!r}", flush=True)
                if len(results) % 200 == 0:
                    print(f"{len(results)} checked ({time.monotonic() - t0:.0f} s)", flush=True)
        runs = []
        if a.runs > 0:
            ok = [r for r in results if r["rc"] == 0 and r["base"] == "block"]
            rng.shuffle(ok)
            for r in ok[:a.runs]:
                out = tmp / f"run{len(runs):03d}"
                case = {"args": ["run", r["file"], "-o", str(out), "--set", "output.progress=false"],
                        "label": "?", "note": r["note"], "base": "run"}
                res = _check(case, 600)
                if res["rc"] == 3:  # a solver failure is an honest end for a strange input
                    res["problems"] = [p for p in res["problems"] if p != "exit-3"]
                runs.append(res)
                print(f"run: rc {res['rc']} {res['problems'] or ''} {r['note'][:70]}", flush=True)
    wall = time.monotonic() - t0
    kinds = ["traceback", "hang", "exit-1", "not-one-short-line", "accepted-bad", "refused-good",
             "roundtrip-broken", "roundtrip-changed"]

    def count(rs, k):
        return sum(1 for r in rs if any(p == k or p.startswith(k + " ") for p in r["problems"]))

    other = sum(1 for r in results + runs if any(p.startswith("exit-") and p != "exit-1" for p in r["problems"]))
    labels = {lab: sum(1 for r in results if r["label"] == lab) for lab in ("bad", "good", "?")}
    refused = sum(1 for r in results if r["rc"] not in (0, None))
    print(f"\nchecked {len(results)} inputs in {wall:.0f} s ({labels['bad']} bad, {labels['good']} good, "
          f"{labels['?']} either; {refused} refused, {len(results) - refused} accepted); runs: {len(runs)}")
    for k in kinds:
        print(f"  {k:20s} {count(results, k):5d}" + (f"   (runs: {count(runs, k)})" if runs else ""))
    print(f"  {'other exit codes':20s} {other:5d}")
    if runs:
        print("  run exit codes: " + ", ".join(f"{rc}: {sum(1 for r in runs if r['rc'] == rc)}"
                                               for rc in sorted({r['rc'] for r in runs}, key=str)))
    bad = [r for r in results + runs if r["problems"]]
    for r in bad[:40]:
        print(f"  ! {r['problems']} rc={r['rc']} {r['note'][:80]!r}: {r['stderr'][:160]!r}")
    if a.report:
        Path(a.report).write_text(json.dumps({"results": results, "runs": runs}, indent=1, default=str))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
