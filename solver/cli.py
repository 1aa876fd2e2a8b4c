"""Command line: creep-cathode {check, mesh, run, report, sweep, collect, materials, bench}.

Exit codes: 0 success; 2 bad config or input (one line naming the key); 3 solver failure (the
run folder says `failed` and why; for `sweep`: one or more cases did not complete, `sweep.csv`
and each case's folder say why); 4 file-system error; 1 unexpected internal error. Every error is
one line on stderr (long values abbreviated, control characters escaped).
Under mpiexec every rank parses the same config, so all ranks fail together; rank 0 prints.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

from .text import one_line, short

EXIT_OK, EXIT_INTERNAL, EXIT_CONFIG, EXIT_SOLVER, EXIT_IO = 0, 1, 2, 3, 4


def _rank() -> int:
    for k in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK"):
        if k in os.environ:
            return int(os.environ[k])
    return 0


def _say(msg: str, file=None):
    if _rank() == 0:
        print(one_line(msg), file=file or sys.stderr, flush=True)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2) instead of the usage block."""

    def error(self, message):
        _say(f"error: {message} (see {self.prog} --help)")
        sys.exit(EXIT_CONFIG)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="creep-cathode", description=__doc__.splitlines()[0])
    p.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)

    def with_config(sp):
        sp.add_argument("config", help="TOML config file")
        sp.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a config value (a TOML value; a bare word is a string)")

    c = sub.add_parser("check", help="validate a config and print it normalised")
    with_config(c)
    m = sub.add_parser("mesh", help="build the RVE: DIR/rve.msh, rve.json, rve.png")
    with_config(m)
    m.add_argument("-o", "--out", default="mesh", help="output folder")
    r = sub.add_parser("run", help="run a simulation into a run folder")
    with_config(r)
    r.add_argument("-o", "--out", required=True, help="run folder")
    r.add_argument("--resume", action="store_true", help="continue from the last checkpoint in the run folder")
    r.add_argument("--overwrite", action="store_true",
                   help="clear another run's files from the folder first (else such a folder is refused)")
    rp = sub.add_parser("report", help="(re)draw the plots of a run folder")
    rp.add_argument("dir")
    sw = sub.add_parser("sweep", help="run a parameter sweep")
    sw.add_argument("sweep")
    sw.add_argument("-o", "--out", required=True)
    sw.add_argument("--jobs", type=_positive, default=1, help="local processes at a time")
    sw.add_argument("--ranks-per-case", type=_positive, default=1, help="under mpiexec: ranks per case")
    sw.add_argument("--slurm", action="store_true", help="write DIR/sweep.sbatch (a job array) instead of running")
    sw.add_argument("--case", type=_nonnegative, default=None, help="run only case I (used by the SLURM array)")
    sw.add_argument("--progress-every", type=_nonnegative, default=60, metavar="S",
                    help="with local processes: a progress line every S seconds while cases run (0: none)")
    co = sub.add_parser("collect", help="aggregate a sweep folder into sweep.csv")
    co.add_argument("dir")
    be = sub.add_parser("bench", help="benchmark: floor-normalised cost per step, time split, DoF and rank scaling")
    be.add_argument("config", nargs="?", default=None, help="config (default: configs/se_mse.toml of this checkout)")
    be.add_argument("-o", "--out", required=True, help="output folder (bench.json, bench.md, bench.png, run folders)")
    be.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                    help="override a config value in every case")
    be.add_argument("--protocol", default="Lithiate at 0.1C", help="the main case's one protocol step")
    be.add_argument("--quick", action="store_true", help="the main case runs the short scaling protocol too")
    be.add_argument("--ranks", default="1,2", help="rank counts for the rank scaling (comma-separated)")
    be.add_argument("--mesh-scales", default="1,0.5,0.25", help="mesh_size factors for the DoF scaling")
    en = sub.add_parser("ensemble", help="run a config over N packings (rve.seed 1..N): per-cycle mean and 95 %% "
                                         "interval of every metric (ensemble.csv, ensemble.md, plots)")
    with_config(en)
    en.add_argument("-o", "--out", required=True, help="ensemble folder (one run folder per seed)")
    en.add_argument("--seeds", type=_positive, required=True,
                    help="number of packings (a seed whose packing cannot be made is replaced by the next one)")
    en.add_argument("--first-seed", type=_positive, default=1, help="first rve.seed (default 1)")
    en.add_argument("--jobs", type=_positive, default=1, help="local processes at a time")
    en.add_argument("--progress-every", type=_nonnegative, default=60, metavar="S",
                    help="a progress line every S seconds while packings run (0: none)")
    ma = sub.add_parser("materials", help="list the cited materials library (configs/materials/), or show one entry")
    ma.add_argument("name", nargs="?", help="an entry (e.g. Se): every value with its kind and citation")
    return p


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1 or v > 100000:
        raise argparse.ArgumentTypeError(f"expected an integer in [1, 100000] (got {short(text)})")
    return v


def _nonnegative(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = -1
    if v < 0 or v > 10**9:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0 (got {short(text)})")
    return v


def cmd_check(args) -> int:
    from .config import load_config, to_toml

    cfg = load_config(args.config, args.overrides)
    if _rank() == 0:
        sys.stdout.write(to_toml(cfg))
    return EXIT_OK


def cmd_mesh(args) -> int:
    from .config import load_config

    cfg = load_config(args.config, args.overrides)
    from .meshcmd import write_mesh

    write_mesh(cfg, args.out)
    return EXIT_OK


def cmd_run(args) -> int:
    from .config import ConfigError, load_config

    cfg = load_config(args.config, args.overrides)
    from mpi4py import MPI

    from .simulation import execute

    if args.resume and args.overwrite:
        raise ConfigError("--resume and --overwrite exclude each other")
    summary = execute(cfg, args.out, MPI.COMM_WORLD, resume=args.resume, overwrite=args.overwrite)
    if summary is None:
        _say(f"completed already: nothing to resume in {args.out}", file=sys.stdout)
        return EXIT_OK
    if summary["status"] != "completed":
        _say(f"error: run failed: {summary.get('reason')}")
        return EXIT_SOLVER
    _say(f"completed: {summary['steps']} steps, {summary['newton_iterations_total']} Newton iterations, "
         f"{summary['wall_time_s']:.1f} s -> {args.out}", file=sys.stdout)
    return EXIT_OK


def cmd_report(args) -> int:
    from .plots import make_plots

    from pathlib import Path

    if not (Path(args.dir) / "timeseries.csv").exists():
        raise OSError(f"{args.dir}: not a run folder (no timeseries.csv)")
    if _rank() == 0:
        files = make_plots(args.dir)
        for f in files:
            print(f)
    return EXIT_OK


def cmd_sweep(args) -> int:
    from .sweep import run_sweep

    return run_sweep(args)


def cmd_collect(args) -> int:
    from .sweep import collect

    if _rank() == 0:
        collect(args.dir)
    return EXIT_OK


def cmd_bench(args) -> int:
    from pathlib import Path

    from .bench import SHORT, run_bench

    config = args.config or str(Path(__file__).resolve().parent.parent / "configs" / "se_mse.toml")
    try:
        ranks = tuple(int(x) for x in args.ranks.split(","))
        scales = tuple(float(x) for x in args.mesh_scales.split(","))
    except ValueError:
        from .config import ConfigError

        raise ConfigError("--ranks / --mesh-scales: comma-separated numbers") from None
    if _rank() == 0:
        res = run_bench(config, args.out, main_protocol=SHORT if args.quick else args.protocol, ranks=ranks,
                        mesh_scales=scales, extra=args.overrides)
        sys.stdout.write((Path(args.out) / "bench.md").read_text())
        bad = [r.get("name") for r in [res["main"], *res["dof_scaling"], *res["rank_scaling"]] if "floor_s" not in r]
        if bad:
            _say(f"error: bench cases failed: {', '.join(map(str, bad))} (see {args.out})")
            return EXIT_SOLVER
    return EXIT_OK


def cmd_ensemble(args) -> int:
    from .ensemble import run_ensemble

    if _rank() != 0:
        return EXIT_OK
    res = run_ensemble(args.config, args.out, args.seeds, args.overrides, jobs=args.jobs, first_seed=args.first_seed,
                       progress_every=args.progress_every)
    md = [f for f in res["files"] if f.name == "ensemble.md"]
    if md:
        sys.stdout.write(md[0].read_text())
    return res["code"]


def cmd_materials(args) -> int:
    from .library import format_entry, format_table

    text = format_entry(args.name) if args.name else format_table()
    if _rank() == 0:
        sys.stdout.write(text)
    return EXIT_OK


def main(argv=None) -> int:
    """Run the command line `argv` (default sys.argv[1:]); returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except BaseException as e:
        if type(e).__name__ != "Terminated":  # creep_cathode.rundir.Terminated: SIGTERM during a run
            raise
        _say(f"error: {e}")  # (its summary.json says so)
        return 143


def _dispatch(args) -> int:
    from .config import ConfigError

    try:
        from .meshes.packing import PackingError
    except ImportError:  # pragma: no cover
        PackingError = ConfigError
    try:
        return {"check": cmd_check, "mesh": cmd_mesh, "run": cmd_run, "report": cmd_report,
                "sweep": cmd_sweep, "collect": cmd_collect, "materials": cmd_materials,
                "bench": cmd_bench, "ensemble": cmd_ensemble}[args.cmd](args)
    except ConfigError as e:
        _say(f"error: {e}")
        return EXIT_CONFIG
    except PackingError as e:
        _say(f"error: {getattr(e, 'key', None) or 'rve'}: {e}")
        return EXIT_CONFIG
    except OSError as e:
        _say(f"error: {e}")
        return EXIT_IO
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    except Exception as e:  # one rank's failure ends the whole job
        msg = f"error: internal: {e.__class__.__name__}: {e}"
        print(one_line(f"[rank {_rank()}] {msg}"), file=sys.stderr, flush=True)
        if args.debug:
            traceback.print_exc()
        _abort_others()
        return EXIT_INTERNAL


def _abort_others():
    if "mpi4py.MPI" in sys.modules:
        from mpi4py import MPI

        if MPI.COMM_WORLD.size > 1:
            import time

            time.sleep(0.5)  # let mpiexec forward the error line before the job is torn down
            MPI.COMM_WORLD.Abort(EXIT_INTERNAL)


def entry():  # pragma: no cover
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
