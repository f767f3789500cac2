"""``moetheory study ...`` and ``moetheory reproduce ...`` (registered by :mod:`moetheory.cli`).

::

    moetheory study list
    moetheory study run NAME [--preset quick|full] [--workers N | --scheduler ADDR] [--cache DIR] [--quiet]
    moetheory study status NAME [--preset quick|full] [--cache DIR]
    moetheory study rescore NAME [--preset quick|full] [--cache DIR] [--from-version V]
    moetheory study run my_study.toml          # NAME may also be a .toml/.json declaration file
    moetheory reproduce NAME [--preset quick|full] [--out DIR] [--cache DIR] [--quiet] [--fit LABEL] [--pinned]

``reproduce`` writes its figures to ``./results/figures`` unless ``--out`` says otherwise (the
documentation's figures are redrawn only on request: ``--out docs/figures``). Ctrl-C stops a run
between cells with one line (``interrupted; N cells kept, rerun to resume``) and exit status 130.

Unknown study names and presets raise ``ValueError`` listing the valid choices (``main`` prints
them as one ``moetheory: error: ...`` line, exit code 2).
"""
from __future__ import annotations

import argparse
import sys

from moetheory.study.registry import DEFAULT_FIGURES


def _directory(value: str) -> str:
    """argparse type of --cache and --out: a folder, or a path where one can be made."""
    from pathlib import Path

    if Path(value).exists() and not Path(value).is_dir():
        raise argparse.ArgumentTypeError(f"{value} is a file, not a directory")
    return value


def _common(p, with_exec=True):
    p.add_argument("name", help="study name (see `moetheory study list`)")
    p.add_argument("--preset", default=None,
                   help="quick (minutes on a laptop, the default) or full (the paper's grid); "
                        "registered studies only")
    p.add_argument("--cache", default=None, type=_directory,
                   help="cache directory (default $MOETHEORY_CACHE or ./.moetheory-cache)")
    if with_exec:
        g = p.add_mutually_exclusive_group()
        g.add_argument("--workers", type=int, default=None, help="run cells on a local Dask cluster of N workers")
        g.add_argument("--scheduler", default=None, help="run cells on the Dask scheduler at ADDRESS")
        p.add_argument("--quiet", action="store_true", help="no progress output")
        p.add_argument("--fit", action="append", default=None, metavar="LABEL",
                       help="only this fitted model (repeatable), e.g. --fit k2")
        p.add_argument("--pinned", action="store_true",
                       help="also print the official code's pinned-gate Voronoi loss rates "
                            "(they explode for over-fitted models)")


def register(subparsers) -> None:
    """Add the ``study`` and ``reproduce`` subcommands to the ``moetheory`` parser.

    Parameters
    ----------
    subparsers : argparse subparsers action
        From ``parser.add_subparsers(...)``; each subcommand sets ``handler`` (args -> exit code).

    Examples
    --------
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="moetheory")
    >>> register(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["study", "run", "softmax", "--preset", "full", "--workers", "4"])
    >>> args.name, args.preset, args.workers, args.quiet
    ('softmax', 'full', 4, False)
    """
    study = subparsers.add_parser("study", help="declare, run and inspect Monte Carlo studies")
    ssub = study.add_subparsers(dest="study_command", metavar="ACTION")
    study.set_defaults(handler=lambda args: (study.print_help(), 0)[1])

    p = ssub.add_parser("list", help="list the registered studies")
    p.set_defaults(handler=_list)

    p = ssub.add_parser("run", help="run a study (cached cells are skipped; resumable)")
    _common(p)
    p.set_defaults(handler=_run)

    p = ssub.add_parser("status", help="which cells of a study are cached")
    _common(p, with_exec=False)
    p.set_defaults(handler=_status)

    p = ssub.add_parser("rescore", help="recompute the losses of cells cached under an earlier "
                                        "metrics version from their stored fits (no refitting)")
    _common(p, with_exec=False)
    p.add_argument("--from-version", type=int, default=None, metavar="V",
                   help="the metrics version the cells were written under (default: the "
                        "previous one)")
    p.set_defaults(handler=_rescore)

    p = subparsers.add_parser("reproduce", help="run what is missing of a study, then draw its figure")
    _common(p)
    p.add_argument("--out", default=DEFAULT_FIGURES, type=_directory,
                   help=f"figure directory (default {DEFAULT_FIGURES}; `--out docs/figures` "
                        "redraws the documentation's figures)")
    p.set_defaults(handler=_reproduce)


def _file_study(args):
    """A StudySpec when NAME is a .toml/.json declaration file, else None."""
    from pathlib import Path

    name = args.name
    if Path(name).suffix in (".toml", ".json"):
        from moetheory.study.spec import StudySpec

        if not Path(name).is_file():
            raise FileNotFoundError(f"study declaration file not found: {name}")
        if args.preset is not None:
            raise ValueError(f"--preset applies to registered studies; the declaration {name} "
                             "sets its own sizes and replicates")
        return StudySpec.load(name)
    return None


def _check(args):
    from moetheory.study import registry

    registry.entry(args.name)
    if args.preset is None:
        args.preset = "quick"
    registry.check_preset(args.preset)
    if getattr(args, "workers", None) is not None and args.workers < 1:
        raise ValueError(f"--workers must be >= 1; got {args.workers}")
    return registry


def _list(args) -> int:
    from moetheory.study import registry

    for name in registry.names():
        try:
            e = registry.entry(name)
        except ValueError as err:  # registered, but its module cannot be imported here
            print(f"{name:<12} (not available: {err})")
            continue
        print(f"{name:<12} {e.description}")
        if not e.external:
            for preset in registry.presets(name):
                for spec in registry.studies(name, preset):
                    cells = len(spec.cells())
                    fits = ", ".join(f"{f.label}({len(f.sizes)} sizes x {spec.replicates_of(f.label)})"
                                     for f in spec.fits)
                    print(f"  {preset:<6} {spec.name:<26} {cells:>4} cells: {fits}")
    return 0


def interruptible(run) -> int:
    """``run()`` (returning an exit code); Ctrl-C instead prints one line and returns 130.

    Cells finish atomically and the partial cell is discarded, so a rerun resumes where this one
    stopped with the same numbers as an uninterrupted run.

    Examples
    --------
    >>> def stopped():
    ...     raise KeyboardInterrupt
    >>> interruptible(stopped)   # the line goes to stderr
    130
    >>> interruptible(lambda: 0)
    0
    """
    import warnings

    from moetheory.study.store import CELLS_WRITTEN, DamagedCellWarning

    before = CELLS_WRITTEN[0]
    shown = warnings.showwarning

    def one_line(message, category, *args, **kw):  # a damaged cell: one line, no source echo
        if issubclass(category, DamagedCellWarning):
            print(f"moetheory: warning: {message}", file=sys.stderr, flush=True)
        else:
            shown(message, category, *args, **kw)

    warnings.showwarning = one_line
    try:
        return run()
    except KeyboardInterrupt:
        kept = CELLS_WRITTEN[0] - before
        print(f"interrupted; {kept} cell{'' if kept == 1 else 's'} kept, rerun to resume",
              file=sys.stderr, flush=True)
        return 130
    finally:
        warnings.showwarning = shown


def _run(args) -> int:
    return interruptible(lambda: _run_study(args))


def _run_study(args) -> int:
    spec = _file_study(args)
    if spec is not None:
        from moetheory.study.runner import run_study, summarize

        df = run_study(spec, args.cache, progress=not args.quiet, scheduler=args.scheduler,
                       workers=args.workers, fits=args.fit)
        if not args.quiet:
            print(summarize(df, f"loss_{spec.losses[0]}").to_string(index=False))
        return 0
    registry = _check(args)
    registry.run(args.name, args.preset, args.cache, progress=not args.quiet,
                 scheduler=args.scheduler, workers=args.workers, fits=args.fit)
    if not args.quiet:
        registry.print_rates(args.name, args.preset, args.cache, pinned=args.pinned)
    return 0


def _rescore(args) -> int:
    from moetheory.study.runner import rescore_study

    spec = _file_study(args)
    specs = (spec,) if spec is not None else _check(args).studies(args.name,
                                                                   args.preset or "quick")
    written = sum(len(rescore_study(s, args.cache, args.from_version)) for s in specs)
    print(f"rescored {written} cell{'' if written == 1 else 's'}")
    return 0


def _status(args) -> int:
    spec = _file_study(args)
    if spec is not None:
        from moetheory.study.cache import StudyCache

        st = {spec.name: StudyCache(args.cache).status(spec)}
    else:
        registry = _check(args)
        st = registry.status(args.name, args.preset, args.cache)
    n_missing = n_damaged = 0
    for spec_name, fits in st.items():
        for label, s in fits.items():
            done, missing, damaged = len(s["done"]), len(s["missing"]), len(s["damaged"])
            n_missing += missing
            n_damaged += damaged
            what = "n = " if label != "cells" else ""
            print(f"{spec_name:<26} {label:<12} {done}/{done + missing + damaged} cells cached"
                  + (f"; missing {what}{_some(s['missing'])}" if missing else "")
                  + (f"; DAMAGED {what}{_some(s['damaged'])}" if damaged else ""))
    if n_damaged:
        one = n_damaged == 1
        print(f"damaged: {n_damaged} cell{'' if one else 's'} failed the checksum or cannot be "
              f"read; the next run sets {'it' if one else 'them'} aside and recomputes "
              f"{'it' if one else 'them'}")
    elif n_missing:
        print("incomplete")
    else:
        print("complete")
    return 0


def _some(items, shown=6) -> str:
    return f"{list(items[:shown])}{' ...' if len(items) > shown else ''}"


def _reproduce(args) -> int:
    return interruptible(lambda: _reproduce_study(args))


def _reproduce_study(args) -> int:
    registry = _check(args)
    registry.run(args.name, args.preset, args.cache, progress=not args.quiet,
                 scheduler=args.scheduler, workers=args.workers, fits=args.fit)
    paths = registry.draw(args.name, args.preset, args.cache, args.out)
    if not registry.entry(args.name).external:
        registry.print_rates(args.name, args.preset, args.cache, pinned=args.pinned)
    for p in paths:
        print(f"wrote {p}", file=sys.stdout)
    return 0
