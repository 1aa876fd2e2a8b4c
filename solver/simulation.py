"""One run: config -> domain -> mechanics -> time stepping -> run folder (DESIGN section 5).

From Python (a notebook):

    import creep_cathode as cc
    cfg = cc.load_config("configs/baseline.toml", ["cycling.cycles=1"])
    res = cc.Simulation(cfg, "runs/baseline").solve()     # or Simulation(cfg) for a temporary folder
    res.timeseries["vm_mean_Se_Pa"], res.cycles, res.summary["status"]; res.plot()

The CLI (`creep-cathode run`) calls `execute(cfg, folder, resume=..., overwrite=...)`: the
run-folder contract (creep_cathode.rundir: checks before writing, a final status however the run
ends), then `Simulation(cfg, folder).initialise(resume=...).run(resume=...)`.

Rank 0 alone writes files and prints; every metric is reduced over all ranks first.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

from . import dolfinx_env  # noqa: F401
from mpi4py import MPI

from . import config as cfgmod
from . import metrics
from .output import CSVTable, provenance, write_json
from .rundir import csv_digest, final_status, prepare_outdir, start_run
from .stepping import SolverFailure, StepInfo

__all__ = ["Simulation", "Results", "execute", "prepare_outdir", "SolverFailure"]


class Progress:
    """One status line on rank 0: cycle, step, simulated time, ETA."""

    def __init__(self, enabled: bool, total_time: float, cycles: int):
        self.enabled, self.total, self.cycles = enabled, total_time, cycles
        self.t0 = time.monotonic()
        self.tty = sys.stderr.isatty()
        self._last = 0.0

    def update(self, cycle, step, t, theta, dt, its, force=False):
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < (0.2 if self.tty else 10.0):
            return
        self._last = now
        el = now - self.t0
        eta = el * (self.total - t) / t if t > 0 else float("nan")
        line = (f"cycle {cycle}/{self.cycles}  step {step}  t = {t / 3600:.3f} h  theta = {theta:.3f}  "
                f"dt = {dt:.3g} s  newton {its}  elapsed {el:.0f} s  ETA {eta:.0f} s")
        if self.tty:
            sys.stderr.write("\r" + line.ljust(110))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def close(self):
        if self.enabled and self.tty:
            sys.stderr.write("\n")


class Results:
    """The tables of a finished run folder: `timeseries` and `cycles` as NumPy structured arrays
    (one field per column), `summary` (dict), `folder`; `plot()` draws plots/*.png."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.summary = _read_json(self.folder / "summary.json")
        self.timeseries = _structured(CSVTable.read(self.folder / "timeseries.csv"))
        self.cycles = _structured(CSVTable.read(self.folder / "cycles.csv"))

    def plot(self) -> list[Path]:
        """Draw the run's plots (creep_cathode.plots); returns the files."""
        from .plots import make_plots

        return make_plots(self.folder)


class Simulation:
    """A run of one config into one run folder.

    Takes the validated Config, the run folder (None: a new temporary folder), the communicator
    and the run id (written by rundir.start_run). `solve()` does everything and returns Results;
    `initialise()` + `run()` are the steps (`execute` puts them inside the run-folder contract)."""

    def __init__(self, cfg: cfgmod.Config, outdir=None, comm=MPI.COMM_WORLD, run_id: str | None = None):
        if outdir is None:
            import tempfile

            outdir = comm.bcast(tempfile.mkdtemp(prefix="creep_cathode_") if comm.rank == 0 else None, root=0)
        self.cfg, self.outdir, self.comm = cfg, Path(outdir), comm
        self.rank0 = comm.rank == 0
        self.run_id = run_id
        self.mech = None

    def solve(self, overwrite: bool = False) -> Results:
        """Run into the folder (refused when it holds another run, unless `overwrite`) and return
        the Results (also when the run failed: see `summary["status"]`)."""
        execute(self.cfg, self.outdir, self.comm, overwrite=overwrite, simulation=self)
        return Results(self.outdir)

    # ------------------------------------------------------------------------------------
    def initialise(self, resume: bool = False):
        """Build the domain, the mechanics (with contact), the stepper and the outputs."""
        from . import domain
        from .contact.params import ContactParameters
        from .contact.proximal import ProximalRelaxation
        from .lithiation import UniformLithiation
        from .mechanics import Mechanics
        from .newton import NewtonSolver, make_ksp
        from .protocol import parse_protocol, schedule
        from .stepping import Stepper
        from .units import Scaling

        cfg = self.cfg
        self.t_start = time.monotonic()
        self.timers = {"setup": 0.0, "metrics": 0.0, "output": 0.0, "checkpoint": 0.0}
        self.wall_before, self.resumes = 0.0, 0  # earlier runs of this folder (--resume)
        self.wall_partial = False
        self.scaling = scaling = Scaling.for_config(cfg)
        self.dom = dom = domain.build(cfg.rve, self.comm, scaling)
        contact = None
        if cfg.rve.kind != "block" and len(dom.bodies) > 1:
            contact = ContactParameters.from_config(cfg, [c.r for c in dom.circles], scaling)
        self.contact_params = contact
        self.tol = contact.tolerance if contact else 0.0
        self.mech = mech = Mechanics(cfg, dom, scaling, self.comm, contact)
        s = cfg.solver
        self.newton = NewtonSolver(self.comm, atol=s.atol, rtol=s.rtol, dx_tol=1e-10 * max(mech.W, 1),
                                   max_it=s.max_iterations, log=_log if s.log_newton and self.rank0 else None,
                                   ksp=make_ksp(self.comm, s.linear_solver, s.linear_rtol, symmetric=True),
                                   chord_steps=s.chord_steps)
        if s.linear_solver != "lu":
            self.newton.near_nullspace = mech.rigid_body_modes()
        segments = schedule(parse_protocol(cfg.cycling.protocol), cfg.cycling.cycles, cfg.cycling.initial_theta)
        self.segments = segments
        active = [p for p in mech.phases if cfg.materials[p].active]
        self.lithiation = UniformLithiation(segments, active, cfg.cycling.initial_theta)
        self.proximal = None
        hooks = []
        if contact is not None:
            self.proximal = ProximalRelaxation(contact.proximal_relaxations, contact.proximal_tolerance,
                                               contact.settle_relaxations)
            hooks.append(self.proximal)
        self.stepper = Stepper(mech, self._solve, self.lithiation, s, hooks=hooks)
        self.ts = CSVTable(self.outdir / "timeseries.csv")
        self.cyc = CSVTable(self.outdir / "cycles.csv")
        self.fields = None
        if cfg.output.fields != "none":
            from .fields import FieldWriter

            self.fields = FieldWriter(mech, self.outdir / "fields", keep_existing=resume)
        self.timers["setup"] = time.monotonic() - self.t_start  # packing, meshing, spaces, forms, contact
        return self

    # ------------------------------------------------------------------------------------
    def _solve(self, reuse_factorisation: bool = False) -> StepInfo:
        r = self.newton.minimise(self.mech, self.mech.u, reuse_factorisation)
        return StepInfo(r.converged, r.iterations, r.reason, tuple(r.history))

    def _row(self, seg, info) -> dict:
        st = self.stepper
        probe = metrics.Probe(self.mech, self.tol, st.t, seg.cycle, st.steps, st.theta, info, self.proximal)
        return metrics.row(probe)

    def _on_step(self, seg, info):
        _maybe_inject_failure(self.comm.rank, self.stepper.steps)
        t0 = time.perf_counter()
        row = self._row(seg, info)
        t1 = time.perf_counter()
        self.last_row = row
        if self.rank0:
            self.ts.append(row)
        theta = max(self.stepper.theta.values(), default=0.0)
        self.progress.update(seg.cycle, self.stepper.steps, self.stepper.t, theta, self.mech.dt, info.iterations)
        if self.fields is not None and self.cfg.output.fields == "every_step":
            self.fields.write(self.stepper.t)
        self.timers["metrics"] += t1 - t0
        self.timers["output"] += time.perf_counter() - t1
        self._step_checkpoint()

    def _on_segment_end(self, seg):
        kind = seg.step.kind
        if kind == "rest":
            return
        t0 = time.perf_counter()
        try:
            self._write_cycle_end(seg, kind)
        finally:
            self.timers["output"] += time.perf_counter() - t0

    def _write_cycle_end(self, seg, kind):
        row = dict(self.last_row) if self.last_row else self._row(seg, None)
        row = {"cycle": seg.cycle, "state": "lithiated" if kind == "lithiate" else "delithiated", **row}
        self.cycle_rows.append(row)
        if self.rank0:
            self.cyc.append(row, flush_every_s=0.0)
            self.ts.flush()
        if self.fields is not None and self.cfg.output.fields == "cycle_ends":
            self.fields.write(self.stepper.t)
        if self.cfg.output.fields != "none":  # deformed RVE for the maps and pores.csv
            self._snapshot(f"snapshot_cycle{seg.cycle:03d}_{row['state']}.npz")

    def _snapshot(self, name: str):
        from .fields import snapshot

        snapshot(self.mech, self.outdir / "fields" / name, self.comm)

    # ------------------------------------------------------------------------------------
    def run(self, resume: bool = False) -> dict:
        """Step through the whole protocol (from the checkpoint with `resume`); returns the
        summary dict (status "completed" or "failed")."""
        cfg, st = self.cfg, self.stepper
        segs = self.segments
        total = segs[-1].t1 if segs else 0.0
        self.progress = Progress(cfg.output.progress and self.rank0, total, cfg.cycling.cycles)
        self.cycle_rows, self.last_row = [], None
        start = 0
        if resume:
            start = self._resume()
        else:
            self.mech.set_state(st.theta, 0.0)
            self.mech.commit()
            self.last_row = self._row(segs[0], None)
            if self.rank0:
                self.ts.append(self.last_row)
            if cfg.output.fields != "none":
                self._snapshot("snapshot_cycle000_initial.npz")
        status, reason, seg = "completed", None, None
        try:
            for i in range(start, len(segs)):
                seg = segs[i]
                self._seg_index = i
                st.run_segment(seg, on_step=self._on_step, on_end=self._on_segment_end)
                if i + 1 == len(segs) or segs[i + 1].cycle != seg.cycle:
                    self._checkpoint(i + 1)
        except SolverFailure as e:
            status, reason = "failed", str(e)
        self.progress.close()
        return self.finish(status, reason, seg)

    # ------------------------------------------------------------------------------------
    def _checkpoint(self, next_segment: int):
        from . import checkpoint

        if self.rank0:
            self.ts.flush()
            self.cyc.flush()
        scalars, arrays = self.stepper.state_dict()
        meta = {"stepper": scalars, "segment": next_segment, "config_hash": cfgmod.physics_hash(self.cfg),
                "run_id": self.run_id, "finished": next_segment >= len(self.segments),
                "ts_rows": len(self.ts.rows), "cyc_rows": len(self.cyc.rows),
                "ts_digest": csv_digest(self.ts.path, len(self.ts.rows)) if self.rank0 else None,
                "last_row": self.last_row, "cycle_rows": self.cycle_rows,
                "wall_s": self.wall_before + time.monotonic() - self.t_start, "resumes": self.resumes}
        t0 = time.perf_counter()
        checkpoint.save(self.outdir, self.mech, meta, self.comm, arrays=arrays)
        self.timers["checkpoint"] += time.perf_counter() - t0

    def _step_checkpoint(self):
        every = self.cfg.solver.checkpoint_every
        if every and self.stepper.steps % every == 0:
            # mid-segment: resume re-enters the same segment at t
            self._checkpoint(self._seg_index)

    def _resume(self) -> int:
        from . import checkpoint
        from dolfinx import fem

        # (the folder, the physics hash and the whole file were checked by rundir.start_run)
        meta, arrays = checkpoint.restore(self.outdir, self.mech, self.comm)
        for k, a in arrays.items():  # ghost values of the restored nodal arrays
            f = fem.Function(self.mech.V)
            f.x.array[:] = a
            f.x.scatter_forward()
            arrays[k] = f.x.array.copy()
        self.stepper.load_state_dict(meta["stepper"], arrays)
        # wall time up to the checkpoint (the work after it, redone now, is not counted twice)
        self.wall_before = float(meta.get("wall_s", 0.0))
        self.resumes = int(meta.get("resumes", 0)) + 1
        self.last_row, self.cycle_rows = meta["last_row"], meta["cycle_rows"]
        self.mech.set_state(self.stepper.theta, 0.0)
        self.mech.refresh()
        if self.rank0:
            self.ts.rows = CSVTable.read(self.ts.path)[: meta["ts_rows"]]
            self.cyc.rows = CSVTable.read(self.cyc.path)[: meta["cyc_rows"]]
        return meta["segment"]

    def time_split(self, wall: float) -> dict:
        """Seconds of this run by part (largest over the ranks): setup (packing, meshing, forms),
        constitutive, assembly, contact, linear_solve, metrics, output, checkpoint, other (the rest
        of the wall time: Newton and line-search bookkeeping, the predictor) and total."""
        parts = {**self.mech.time_split(), **self.newton.timers, **self.timers}
        out = {k: self.comm.allreduce(v, op=MPI.MAX) for k, v in parts.items()}
        out["other"] = max(0.0, wall - sum(out.values()))
        out["total"] = wall
        return out

    def finish(self, status, reason, seg) -> dict:
        """Close the outputs, write summary.json, pores.csv and the plots; returns the summary."""
        mech, cfg, st = self.mech, self.cfg, self.stepper
        if self.fields is not None:
            self.fields.close()
        wall = time.monotonic() - self.t_start
        summary = {
            "status": status,
            "reason": reason,
            "run_id": self.run_id,
            "wall_time_s": self.wall_before + wall,  # all runs of the folder
            "wall_time_this_run_s": wall,
            "resumes": self.resumes,
            "wall_time_partial": self.wall_partial,
            "simulated_time_s": st.t,
            "cycles_completed": max([r["cycle"] for r in metrics.in_state(self.cycle_rows, "delithiated")] or [0]),
            "cycle_reached": seg.cycle if seg is not None else 0,
            "steps": st.steps,
            "newton_iterations_total": st.newton_total,
            "rejected_steps": dict(st.rejected),
            "creep_error_not_falling_steps": st.error_not_falling,
            "dofs": mech.dofs(),
            "cells": self.comm.allreduce(mech.nc, op=MPI.SUM),
            "ranks": self.comm.size,
            "element_degree": mech.deg,
            "quadrature_degree": mech.q,
            "config_hash": cfgmod.physics_hash(cfg),
            "timings_s": self.time_split(wall),
            "final": self.last_row,
            "descriptors": _descriptors(cfg),
            "provenance": provenance(self.comm.size) if self.rank0 else None,
        }
        if reason is None:
            summary.pop("reason")
        if self.rank0:
            self.ts.flush()
            self.cyc.flush()
            write_json(self.outdir / "summary.json", summary)
            try:
                from .pores import write_pores_csv

                write_pores_csv(self.outdir)
            except Exception as e:  # a post-processing product never fails a run
                print(f"warning: pores.csv not written ({e})", file=sys.stderr)
            if cfg.output.plots:
                try:
                    from .plots import make_plots

                    make_plots(self.outdir)
                except Exception as e:  # plots never fail a run
                    print(f"warning: plots not written ({e})", file=sys.stderr)
        return summary


def execute(cfg, outdir, comm=MPI.COMM_WORLD, *, resume: bool = False, overwrite: bool = False,
            simulation: Simulation | None = None) -> dict | None:
    """A run under the run-folder contract (creep_cathode.rundir): check and start the folder,
    initialise, run; any way out but a normal end leaves summary.json "failed" with the reason.
    Returns the summary, or None when `resume` finds the run completed already."""
    started = start_run(outdir, cfg, comm, resume=resume, overwrite=overwrite)
    if started is None:
        return None
    with final_status(outdir, comm) as arm:
        sim = simulation or Simulation(cfg, outdir, comm)
        sim.run_id = started["run_id"]
        sim.initialise(resume=resume)
        arm()  # after PETSc's initialisation, which installs its own SIGTERM handler
        return sim.run(resume=resume)


def _descriptors(cfg) -> dict:
    """Material descriptors of the run's phases (creep_cathode.descriptors: homologous temperature,
    configurational entropy, ...); a descriptor never fails a run."""
    try:
        from .descriptors import descriptors_for_config

        return descriptors_for_config(cfg)
    except Exception as e:  # noqa: BLE001 - a report, not the run
        return {"error": f"{e.__class__.__name__}: {e}"}


def _read_json(path: Path) -> dict:
    import json

    return json.loads(path.read_text()) if path.exists() else {}


def _structured(rows: list[dict]) -> np.ndarray:
    """CSV rows (dicts) -> a NumPy structured array (numbers as float/int, text as str)."""
    if not rows:
        return np.zeros(0)
    names = list(rows[0])
    cols = []
    for k in names:
        vals = [r.get(k) for r in rows]
        if all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
            cols.append(np.array(vals, dtype=np.int64))
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            cols.append(np.array(vals, dtype=float))
        else:
            cols.append(np.array([str(v) for v in vals]))
    return np.rec.fromarrays(cols, names=names)


def _log(msg):
    print(msg, file=sys.stderr, flush=True)


def _maybe_inject_failure(rank: int, step: int):
    """Test hook: CREEP_CATHODE_INJECT_FAILURE="RANK:STEP" raises on that rank at that step."""
    spec = os.environ.get("CREEP_CATHODE_INJECT_FAILURE")
    if spec:
        r, s = (int(x) for x in spec.split(":"))
        if rank == r and step >= s:
            raise RuntimeError(f"injected failure on rank {rank} at step {step}")
