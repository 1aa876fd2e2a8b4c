"""Ensemble statistics on synthetic inputs (issue 14): known means and 95 % intervals."""

import math

import pytest

from creep_cathode.ensemble import mean_ci, plot_bands, summarise, t_quantile


def test_t_quantiles_are_students():
    # tabulated two-sided 95 % values of Student's t
    for n, t in ((2, 12.7062), (3, 4.3027), (5, 2.7764), (10, 2.2622), (31, 2.0423)):
        assert t_quantile(n) == pytest.approx(t, abs=1e-4)
    assert math.isnan(t_quantile(1))


def test_mean_and_interval_of_known_samples():
    m, h, n = mean_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    s = math.sqrt(2.5)  # sample standard deviation of 1..5
    assert (m, n) == (3.0, 5) and h == pytest.approx(2.7764 * s / math.sqrt(5), rel=1e-4)
    m, h, n = mean_ci([2.0, 2.0, 2.0])
    assert (m, h, n) == (2.0, 0.0, 3)
    m, h, n = mean_ci([7.0, float("nan"), "x"])
    assert (m, n) == (7.0, 1) and math.isnan(h)


def test_summarise_per_cycle_and_state(tmp_path):
    """Three packings; the third stopped after cycle 1: cycle 2 has n = 2."""
    def rows(a, b):
        return [{"cycle": 1, "state": "lithiated", "contact_Se_Se": a, "vm_mean_Se_Pa": 1e8},
                {"cycle": 1, "state": "delithiated", "contact_Se_Se": a / 2, "vm_mean_Se_Pa": 2e7},
                {"cycle": 2, "state": "lithiated", "contact_Se_Se": b, "vm_mean_Se_Pa": 9e7}]
    runs = [rows(0.5, 0.6), rows(0.6, 0.8), rows(0.7, 0.7)[:2]]
    out = summarise(runs)
    assert [(r["cycle"], r["state"]) for r in out] == [(1, "lithiated"), (1, "delithiated"), (2, "lithiated")]
    assert out[0]["contact_Se_Se_mean"] == pytest.approx(0.6) and out[0]["contact_Se_Se_n"] == 3
    assert out[0]["contact_Se_Se_ci95"] == pytest.approx(4.3027 * 0.1 / math.sqrt(3), rel=1e-4)
    assert out[2]["contact_Se_Se_n"] == 2 and out[2]["contact_Se_Se_mean"] == pytest.approx(0.7)
    assert out[2]["contact_Se_Se_ci95"] == pytest.approx(12.7062 * math.sqrt(0.02) / math.sqrt(2), rel=1e-4)
    assert out[1]["vm_mean_Se_Pa_ci95"] == 0.0
    files = plot_bands(out, tmp_path)
    assert [f.name for f in files] == ["ensemble_contact.png", "ensemble_stress.png"]


def test_criterion_of_issue_14():
    """<= 3 points for contact ratios, <= 5 % of the mean for mean stresses."""
    from creep_cathode.ensemble import criterion

    row = {"contact_Se_Se_mean": 0.6, "contact_Se_Se_ci95": 0.029, "contact_MSe_Se_mean": 0.7,
           "contact_MSe_Se_ci95": 0.031, "vm_mean_Se_Pa_mean": 1e8, "vm_mean_Se_Pa_ci95": 4.9e6,
           "vm_mean_MSe_Pa_mean": 1.5e8, "vm_mean_MSe_Pa_ci95": 7.6e6, "porosity_mean": 0.2, "porosity_ci95": 0.5}
    c = criterion(row)
    assert {k: v[2] for k, v in c.items()} == {"contact_Se_Se": True, "contact_MSe_Se": False,
                                               "vm_mean_Se_Pa": True, "vm_mean_MSe_Pa": False}
    assert c["vm_mean_MSe_Pa"][1] == pytest.approx(7.5e6)


def test_ensemble_files_from_run_folders(tmp_path):
    """write_summary reads each folder's cycles.csv (a folder without one is left out) and writes
    ensemble.csv, ensemble.md (mean ± half-width next to the paper) and the band plots."""
    from creep_cathode.ensemble import write_summary
    from creep_cathode.output import CSVTable

    for k, (a, b) in enumerate(((0.6, 0.80), (0.7, 0.85), (0.8, 0.90))):
        f = tmp_path / f"00{k}_seed={k + 1}"
        f.mkdir()
        CSVTable(f / "cycles.csv", [
            {"cycle": c, "state": s, "contact_Se_Se": v if s == "lithiated" else 0.0, "vm_mean_Se_Pa": 1e8}
            for c, v in ((1, a), (20, b)) for s in ("lithiated", "delithiated")]).flush()
    (tmp_path / "003_seed=4").mkdir()  # failed before its first cycle
    res = write_summary(tmp_path, sorted(p for p in tmp_path.iterdir() if p.is_dir()))
    assert res["runs"] == ["000_seed=1", "001_seed=2", "002_seed=3"]
    rows = CSVTable.read(tmp_path / "ensemble.csv")
    lit20 = next(r for r in rows if r["cycle"] == 20 and r["state"] == "lithiated")
    assert lit20["contact_Se_Se_mean"] == pytest.approx(0.85)
    assert lit20["contact_Se_Se_ci95"] == pytest.approx(4.3027 * 0.05 / math.sqrt(3), rel=1e-4)
    md = (tmp_path / "ensemble.md").read_text()
    assert "n = 3 packings" in md
    # cycle 1: 70.0 ± 24.8 (4.3027 * 0.1 / sqrt 3 = 0.2484), paper 70.5 and 84.4
    assert "| contact_Se_Se [%] | 70.0 ± 24.8 | 85.0 ± 12.4 | 70.5, 84.4 |" in md
    assert (tmp_path / "plots" / "ensemble_contact.png").exists()


def test_ensemble_refuses_fixed_particles(tmp_path, capsys):
    """An ensemble over seeds of a config whose particles are placed by hand would repeat one RVE."""
    from pathlib import Path

    from creep_cathode.cli import main

    cfg = Path(__file__).resolve().parent.parent / "configs" / "baseline.toml"
    assert main(["ensemble", str(cfg), "-o", str(tmp_path / "e"), "--seeds", "2"]) == 2
    assert "rve.kind: an ensemble needs random packings" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()


def test_rve_size_study_picks_the_smallest_box_meeting_the_criterion():
    """Synthetic ensembles whose half-widths shrink with the box: the 32 µm box is the first whose
    contact half-widths are <= 3 points and stress half-widths <= 5 % of the mean."""
    from creep_cathode.ensemble import size_md, size_rows, smallest_rve

    def ens(hw_contact, hw_stress_rel, n=5, cycles=(1, 20)):
        return [{"cycle": c, "state": s, "contact_Se_Se_mean": 0.6, "contact_Se_Se_ci95": hw_contact,
                 "contact_Se_Se_n": n, "vm_mean_Se_Pa_mean": 1e8, "vm_mean_Se_Pa_ci95": hw_stress_rel * 1e8,
                 "vm_mean_Se_Pa_n": n} for c in cycles for s in ("lithiated", "delithiated")]

    ensembles = {16e-6: ens(0.08, 0.04), 24e-6: ens(0.04, 0.02), 32e-6: ens(0.025, 0.049, cycles=(1, 20, 21)),
                 48e-6: ens(0.01, 0.01)}
    rows = size_rows(ensembles)
    assert [r["size"] for r in rows] == [16e-6, 24e-6, 32e-6, 48e-6]
    assert {r["cycle"] for r in rows} == {20}  # the last cycle every size reached
    assert [r["ok"] for r in rows] == [False, False, True, True]
    assert rows[0]["columns"]["vm_mean_Se_Pa"][3] and not rows[0]["columns"]["contact_Se_Se"][3]
    assert smallest_rve(rows) == 32e-6
    md = size_md(rows)
    assert "| 24 µm | 5 | 60.0 ± 4.0 (no) | 100.0 ± 2.0 (yes) | no |" in md
    assert "smallest box meeting every criterion: 32 µm" in md
    # judged on a chosen column only: the 16 µm box meets the stress criterion
    only = size_rows(ensembles, columns=["vm_mean_Se_Pa"])
    assert list(only[0]["columns"]) == ["vm_mean_Se_Pa"] and smallest_rve(only) == 16e-6
    # one packing gives no interval: never "met"
    one = size_rows({16e-6: ens(float("nan"), float("nan"), n=1)}, cycle=1)
    assert not one[0]["ok"] and smallest_rve(one) is None and "(n < 2)" in size_md(one)


def _fake_sweep(out, unpackable_seeds, calls):
    """A stand-in for sweep.run_sweep that "runs" each case not already final: a seed in
    `unpackable_seeds` fails as the packer does (PackingError), any other completes with one cycle."""
    import json

    from creep_cathode.config import physics_hash
    from creep_cathode.output import CSVTable
    from creep_cathode.sweep import _done, case_folder, load_sweep, unpackable

    def run(args):
        code = 0
        for c in load_sweep(args.sweep)["cases"]:
            f, cfg = case_folder(out, c), c["config"]
            if _done(f, cfg) or unpackable(f, cfg):
                code = code or (3 if unpackable(f, cfg) else 0)
                continue
            seed = cfg.rve.seed
            calls.append(seed)
            f.mkdir(parents=True, exist_ok=True)
            if seed in unpackable_seeds:
                s = {"status": "failed", "reason": "PackingError: could not pack the particles", "config_hash": physics_hash(cfg)}
                code = 3
            else:
                CSVTable(f / "cycles.csv", [{"cycle": 1, "state": "lithiated", "contact_Se_Se": 0.5 + 0.01 * seed}]).flush()
                s = {"status": "completed", "config_hash": physics_hash(cfg)}
            (f / "summary.json").write_text(json.dumps(s))
        return code
    return run


def test_ensemble_replaces_seeds_that_cannot_be_packed(tmp_path, monkeypatch):
    """`--seeds 3` means three packings: seeds 2 and 4 cannot be packed, so seeds 4 and then 5 are
    added; each seed is tried once (a failed packing is deterministic and is not retried); the
    folders keep their names from round to round; n = 3 and the exit code is 0."""
    from pathlib import Path

    import creep_cathode.sweep as sweep
    from creep_cathode.ensemble import run_ensemble

    cfg = Path(__file__).resolve().parent.parent / "configs" / "se_mse.toml"
    out = tmp_path / "e"
    calls = []
    monkeypatch.setattr(sweep, "run_sweep", _fake_sweep(out, {2, 4}, calls))
    res = run_ensemble(cfg, out, 3)
    assert calls == [1, 2, 3, 4, 5]
    assert res["unpackable"] == [2, 4] and res["seeds"] == [1, 2, 3, 4, 5]
    assert res["runs"] == ["000_seed=1", "002_seed=3", "004_seed=5"]
    assert res["code"] == 0
    row = res["summary"][0]
    assert row["contact_Se_Se_n"] == 3 and row["contact_Se_Se_mean"] == pytest.approx(0.53)  # seeds 1, 3, 5
    md = (out / "ensemble.md").read_text()
    assert "seeds whose packing cannot be made (replaced by later seeds): 2, 4" in md
    # a second call reuses everything and runs nothing
    calls.clear()
    assert run_ensemble(cfg, out, 3)["runs"] == res["runs"] and calls == []


def test_ensemble_adds_no_seeds_when_no_seed_can_be_packed(tmp_path, monkeypatch, capsys):
    """If none of the first N seeds can be packed the request itself is too dense: nothing is added,
    the exit code says the ensemble failed and so does its last line."""
    from pathlib import Path

    import creep_cathode.sweep as sweep
    from creep_cathode.ensemble import run_ensemble

    cfg = Path(__file__).resolve().parent.parent / "configs" / "se_mse.toml"
    calls = []
    monkeypatch.setattr(sweep, "run_sweep", _fake_sweep(tmp_path / "e", {1, 2}, calls))
    res = run_ensemble(cfg, tmp_path / "e", 2)
    assert calls == [1, 2] and res["runs"] == [] and res["code"] == 3
    assert "error: 0 of 2 packings: seeds 1, 2 cannot be packed" in capsys.readouterr().err


def test_sweep_leaves_unpackable_cases_to_the_ensemble(tmp_path, capsys):
    """The sweep's "did not complete" error line names a case whose packing cannot be made, unless
    its caller (the ensemble) replaces such cases (`unpackable_replaced`); the exit code says
    "failed" either way (the ensemble decides its own)."""
    import argparse
    import json
    from pathlib import Path

    from creep_cathode.config import physics_hash
    from creep_cathode.sweep import case_folder, load_sweep, run_sweep

    base = Path(__file__).resolve().parent.parent / "configs" / "se_mse.toml"
    sweep_toml = tmp_path / "s.toml"
    sweep_toml.write_text(f'base = {json.dumps(str(base))}\n\n[[axis]]\nkey = "rve.seed"\nvalues = [8]\n')
    out = tmp_path / "out"
    c = load_sweep(sweep_toml)["cases"][0]
    f = case_folder(out, c)
    f.mkdir(parents=True)
    (f / "summary.json").write_text(json.dumps({"status": "failed", "reason": "PackingError: jammed",
                                                "config_hash": physics_hash(c["config"])}))
    args = dict(sweep=str(sweep_toml), out=str(out), jobs=1, ranks_per_case=1, slurm=False, case=None,
                progress_every=0)
    assert run_sweep(argparse.Namespace(**args)) == 3
    assert "error: 1 of 1 cases did not complete" in capsys.readouterr().err
    assert run_sweep(argparse.Namespace(**args, unpackable_replaced=True)) == 3
    assert "error" not in capsys.readouterr().err


def test_sweep_does_not_retry_a_packing_that_cannot_be_made(tmp_path, monkeypatch, capsys):
    """A case whose summary says PackingError under the same physics hash is not run again (the
    packer is deterministic for its seed); with another physics hash it is."""
    import json
    from pathlib import Path

    import creep_cathode.sweep as sweep
    from creep_cathode.config import load_config, physics_hash

    cfg = load_config(Path(__file__).resolve().parent.parent / "configs" / "se_mse.toml", [])
    case = {"name": "000_seed=8", "config": cfg}
    f = tmp_path / case["name"]
    f.mkdir()
    (f / "summary.json").write_text(json.dumps({"status": "failed", "reason": "PackingError: jammed",
                                                "config_hash": physics_hash(cfg)}))
    ran = []
    monkeypatch.setattr(sweep.subprocess, "call", lambda *a, **k: ran.append(a) or 0)
    r = sweep._run_local(case, tmp_path)
    assert r["status"] == "failed" and r["skipped"] and ran == []
    other = load_config(Path(__file__).resolve().parent.parent / "configs" / "se_mse.toml", ["rve.seed=9"])
    sweep._run_local({"name": "000_seed=8", "config": other}, tmp_path)
    assert len(ran) == 1
