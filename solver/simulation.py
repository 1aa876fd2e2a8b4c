"""One run: config -> domain -> mechanics -> time stepping -> run folder (DESIGN section 5).

    sim = Simulation(cfg, "runs/se_mse")
    sim.initialise()
    summary = sim.run()          # status "completed" | "failed"

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
from .output import CSVTable, atomic_write, provenance, write_json
from .problem import Mechanics, SolverFailure, StepInfo, Stepper


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


class Simulation:
    def __init__(self, cfg: cfgmod.Config, outdir, comm=MPI.COMM_WORLD):
        self.cfg, self.outdir, self.comm = cfg, Path(outdir), comm
        self.rank0 = comm.rank == 0
        self.mech = None
        self.contact = None

    # ------------------------------------------------------------------------------------
    def initialise(self, resume: bool = False):
        from . import domain
        from .newton import minimise

        cfg = self.cfg
        self.t_start = time.monotonic()
        self.wall_before, self.resumes = 0.0, 0  # earlier runs of this folder (--resume)
        self.wall_partial = False
        self.dom = domain.build(cfg.rve, self.comm)
        self.mech = mech = Mechanics(cfg, self.dom, self.comm)
        if cfg.rve.kind != "block" and len(self.dom.bodies) > 1:
            self._setup_contact()
        mech.k_prox.value = 0.0
        if self.contact is not None:
            mech.k_prox.value = self.k_prox
        self._minimise = minimise
        ph = mech.phases
        self.contact_cols = [f"contact_{a}_{b}" for a in ph for b in ph] + [f"contact_{a}_any" for a in ph]
        self.ts = CSVTable(self.outdir / "timeseries.csv")
        self.cyc = CSVTable(self.outdir / "cycles.csv")
        self.fields = None
        if cfg.output.fields != "none":
            from .fields import FieldWriter

            self.fields = FieldWriter(mech, self.outdir / "fields", keep_existing=resume)
        self.newton_total = 0
        return self

    def _setup_contact(self):
        from .contact import BarrierContact

        cfg, mech, dom = self.cfg, self.mech, self.dom
        radii = [c.r for c in dom.circles] or [min(dom.width, dom.height) / 4]
        r_mean = float(np.mean(radii)) / mech.L0
        gap = cfg.rve.min_gap / mech.L0
        # default d̂: the boundary resolution near gaps (mesh_size/8), below half the smallest initial gap
        h_gap = cfg.rve.mesh_size / 8 / mech.L0
        dhat = cfg.contact.dhat / mech.L0 if cfg.contact.dhat else min(0.5 * gap if gap > 0 else 1e9, h_gap)
        self.dhat = dhat
        self.tol = cfg.contact.tolerance / mech.L0 if cfg.contact.tolerance else 0.5 * dhat
        walls = {s: cfg.boundary.kind(s) == "roller" for s in ("left", "right", "bottom", "top")}
        self.contact = BarrierContact(mech.V, dom.facet_tags, width=mech.W, height=mech.H, walls=walls,
                                      dhat=dhat, kappa=cfg.contact.stiffness * mech.E_min / mech.S0,
                                      comm=self.comm, bcs=mech.bcs)
        mech.contact = self.contact
        self.contact.project_vv = cfg.contact.project_vv
        mech.set_hessian_projection(False)
        self.k_prox = cfg.contact.proximal / r_mean**2

    # ------------------------------------------------------------------------------------
    def _solve(self) -> StepInfo:
        s = self.cfg.solver
        r = self._minimise(self.mech, self.mech.u, atol=s.atol, rtol=s.rtol, dx_tol=1e-10 * max(self.mech.W, 1),
                           max_it=s.max_iterations, log=_log if s.log_newton and self.rank0 else None,
                           linear=s.linear_solver, indefinite=s.indefinite, ccd_fraction=s.ccd_fraction)
        return StepInfo(r.converged, r.iterations, r.reason, tuple(r.history), r)

    def _row(self, seg, info) -> dict:
        mech = self.mech
        row = {"time_s": self.stepper.t, "cycle": seg.cycle, "step": self.stepper.steps}
        for p in mech.phases:
            m = self.cfg.materials[p]
            row[f"theta_{p}"] = mech.theta if m.active else 0.0
        row.update(self._contact_metrics())
        met = mech.metrics()
        for p in mech.phases:
            for k in ("vm_mean_{}_Pa", "vm_max_{}_Pa", "creep_eq_mean_{}"):
                row[k.format(p)] = met[k.format(p)]
        row["porosity"] = met["porosity"]
        row["newton_iterations"] = info.iterations if info else 0
        row["dt_s"] = mech.dt
        row["proximal_energy_ratio"] = mech.last_proximal_ratio if info else 0.0
        for k in ("solid_area_ratio", "width_change", "height_change"):
            row[k] = met[k]
        for p in mech.phases:
            row[f"s33_mean_{p}_Pa"] = met[f"s33_mean_{p}_Pa"]
            row[f"pressure_mean_{p}_Pa"] = met[f"pressure_mean_{p}_Pa"]
        return row

    def _contact_metrics(self) -> dict:
        ph = self.mech.phases
        out = {c: 0.0 for c in self.contact_cols}
        if self.contact is None:
            return out
        lengths, totals = self.contact.contact_lengths(self.mech.u.x.array, self.tol, self.mech.tag2phase)
        for a in ph:
            tot = totals.get(a, 0.0)
            if tot <= 0:
                continue
            for b in ph:
                out[f"contact_{a}_{b}"] = lengths.get((a, b), 0.0) / tot
            out[f"contact_{a}_any"] = lengths.get((a, "any"), 0.0) / tot
        return out

    def _on_step(self, seg, info):
        _maybe_inject_failure(self.comm.rank, self.stepper.steps)
        if self.stepper.profile and self.stepper.record is not None and self.rank0:
            import json

            rec = dict(self.stepper.record, step=self.stepper.steps)
            with open(self.outdir / "profile.jsonl", "a") as f:
                f.write(json.dumps(rec, default=float) + "\n")
        row = self._row(seg, info)
        self.last_row = row
        if self.rank0:
            self.ts.append(row)
        self.progress.update(seg.cycle, self.stepper.steps, self.stepper.t, self.mech.theta, self.mech.dt,
                             info.iterations)
        if self.fields is not None and self.cfg.output.fields == "every_step":
            self.fields.write(self.stepper.t)
        self._step_checkpoint()

    def _on_segment_end(self, seg):
        kind = seg.step.kind
        if kind == "rest":
            return
        row = dict(self.last_row) if self.last_row else self._row(seg, None)
        row = {"cycle": seg.cycle, "state": "lithiated" if kind == "lithiate" else "delithiated", **row}
        self.cycle_rows.append(row)
        if self.rank0:
            self.cyc.append(row, flush_every_s=0.0)
            self.ts.flush()
        if self.fields is not None and self.cfg.output.fields == "cycle_ends":
            self.fields.write(self.stepper.t)
        if self.cfg.output.fields != "none":  # deformed RVE for the maps and pores.csv
            from .fields import snapshot

            snapshot(self.mech, self.outdir / "fields" / f"snapshot_cycle{seg.cycle:03d}_{row['state']}.npz", self.comm)

    # ------------------------------------------------------------------------------------
    def run(self, resume: bool = False) -> dict:
        cfg = self.cfg
        self.stepper = st = Stepper(cfg, self.mech, self._solve, self._on_step)
        st.profile = bool(os.environ.get("CREEP_CATHODE_PROFILE"))  # per-step Newton profile -> profile.jsonl
        snap = os.environ.get("CREEP_CATHODE_SNAPSHOTS")  # serial: state before every step -> DIR/stepNNNNN.npz
        if snap:
            Path(snap).mkdir(parents=True, exist_ok=True)
            st.snapshot_dir = snap
        total = st.segments[-1].t1 if st.segments else 0.0
        self.progress = Progress(cfg.output.progress and self.rank0, total, cfg.cycling.cycles)
        self.cycle_rows, self.last_row = [], None
        start = 0
        if resume:
            start = self._resume()
        else:
            self.mech.set_state(cfg.cycling.initial_theta, 0.0)
            self.mech.commit()
            self.last_row = self._row(st.segments[0], None)
            if self.rank0:
                self.ts.append(self.last_row)
            if cfg.output.fields != "none":
                from .fields import snapshot

                snapshot(self.mech, self.outdir / "fields" / "snapshot_cycle000_initial.npz", self.comm)
        status, reason, seg = "completed", None, None
        try:
            for i in range(start, len(st.segments)):
                seg = st.segments[i]
                self._seg_index = i
                st.run_segment(seg, on_end=self._on_segment_end)
                if i + 1 == len(st.segments) or st.segments[i + 1].cycle != seg.cycle:
                    self._checkpoint(i + 1)
        except SolverFailure as e:
            status, reason = "failed", str(e)
        self.progress.close()
        return self.finish(status, reason, seg)

    # ------------------------------------------------------------------------------------
    def _checkpoint(self, next_segment: int):
        from . import checkpoint

        st = self.stepper
        if self.rank0:
            self.ts.flush()
            self.cyc.flush()
        meta = {"t": st.t, "dt": st.dt, "steps": st.steps, "newton_total": st.newton_total,
                "segment": next_segment, "theta": self.mech.theta, "config_hash": cfgmod.physics_hash(self.cfg),
                "ts_rows": len(self.ts.rows), "cyc_rows": len(self.cyc.rows), "last_row": self.last_row,
                "cycle_rows": self.cycle_rows, "dt_prev": st.dt_prev, "has_prev": st.du_prev is not None,
                "rejected": dict(st.rejected), "recent_dt": list(st.recent_dt),
                "wall_s": self.wall_before + time.monotonic() - self.t_start, "resumes": self.resumes}
        t0 = time.perf_counter()
        checkpoint.save(self.outdir, self.mech, meta, self.comm, du_prev=st.du_prev)
        self.mech.timers["checkpoint"] = self.mech.timers.get("checkpoint", 0.0) + time.perf_counter() - t0

    def _step_checkpoint(self):
        every = self.cfg.solver.checkpoint_every
        st = self.stepper
        if every and st.steps % every == 0:
            # mid-segment: resume re-enters the same segment at t
            self._checkpoint(self._seg_index)

    def _resume(self) -> int:
        from . import checkpoint

        meta = checkpoint.load_meta(self.outdir, self.comm)
        if meta is None:
            raise cfgmod.ConfigError(f"--resume: no checkpoint in {self.outdir}")
        h = cfgmod.physics_hash(self.cfg)
        if meta["config_hash"] != h:
            raise cfgmod.ConfigError(f"--resume refused: the physics part of the config changed since the "
                                     f"checkpoint (hash {meta['config_hash']} != {h})")
        meta = checkpoint.restore(self.outdir, self.mech, self.comm)
        st = self.stepper
        if meta.get("has_prev"):
            from dolfinx import fem

            f = fem.Function(self.mech.V)
            f.x.array[:] = meta["du_prev"]
            f.x.scatter_forward()
            st.du_prev, st.dt_prev = f.x.array.copy(), meta["dt_prev"]
        st.t, st.dt, st.steps, st.newton_total = meta["t"], meta["dt"], meta["steps"], meta["newton_total"]
        st.rejected.update(meta.get("rejected", {}))  # absent in checkpoints written before they were saved
        st.recent_dt = list(meta.get("recent_dt", []))
        # wall time up to the checkpoint (the work after it, redone now, is not counted twice);
        # unknown in checkpoints written before it was saved: then only this run's is reported
        self.wall_before = float(meta.get("wall_s", 0.0))
        self.wall_partial = "wall_s" not in meta
        self.resumes = int(meta.get("resumes", 0)) + 1
        self.last_row, self.cycle_rows = meta["last_row"], meta["cycle_rows"]
        self.mech.set_state(meta["theta"], 0.0)
        self.mech.refresh()
        if self.rank0:
            self.ts.rows = CSVTable.read(self.ts.path)[: meta["ts_rows"]]
            self.cyc.rows = CSVTable.read(self.cyc.path)[: meta["cyc_rows"]]
        return meta["segment"]

    def finish(self, status, reason, seg) -> dict:
        mech, cfg = self.mech, self.cfg
        if self.fields is not None:
            self.fields.close()
        wall = time.monotonic() - self.t_start
        summary = {
            "status": status,
            "reason": reason,
            "wall_time_s": self.wall_before + wall,  # all runs of the folder
            "wall_time_this_run_s": wall,
            "resumes": self.resumes,
            "wall_time_partial": self.wall_partial,
            "simulated_time_s": self.stepper.t,
            "cycles_completed": max([r["cycle"] for r in self.cycle_rows if r["state"] == "delithiated"] or [0]),
            "cycle_reached": seg.cycle if seg is not None else 0,
            "steps": self.stepper.steps,
            "newton_iterations_total": self.stepper.newton_total,
            "rejected_steps": dict(self.stepper.rejected),
            "dofs": mech.dofs(),
            "cells": self.comm.allreduce(mech.nc, op=MPI.SUM),
            "ranks": self.comm.size,
            "element_degree": mech.deg,
            "quadrature_degree": mech.q,
            "config_hash": cfgmod.physics_hash(cfg),
            "timings_s": {k: self.comm.allreduce(v, op=MPI.MAX) for k, v in mech.timers.items()},
            "final": self.last_row,
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


def prepare_outdir(outdir, cfg, comm=MPI.COMM_WORLD, resume=False):
    """Decide on rank 0 whether the folder is usable, broadcast, and write config.toml."""
    err = None
    if comm.rank == 0:
        p = Path(outdir)
        try:
            if p.exists() and not p.is_dir():
                err = f"output folder {outdir} exists and is not a folder"
            else:
                p.mkdir(parents=True, exist_ok=True)
                atomic_write(p / "config.toml", cfgmod.to_toml(cfg))
                write_json(p / "summary.json", {"status": "running", "config_hash": cfgmod.physics_hash(cfg)})
        except OSError as e:
            err = f"cannot write output folder {outdir}: {e.strerror or e}"
    err = comm.bcast(err, root=0)
    if err:
        raise OSError(err)


def _log(msg):
    print(msg, file=sys.stderr, flush=True)


def _maybe_inject_failure(rank: int, step: int):
    """Test hook: CREEP_CATHODE_INJECT_FAILURE="RANK:STEP" raises on that rank at that step."""
    spec = os.environ.get("CREEP_CATHODE_INJECT_FAILURE")
    if spec:
        r, s = (int(x) for x in spec.split(":"))
        if rank == r and step >= s:
            raise RuntimeError(f"injected failure on rank {rank} at step {step}")
