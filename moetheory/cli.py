"""The ``moetheory`` command.

Subcommands are registered by small ``register(subparsers)`` functions so that each capability
keeps its command next to its code; heavy modules are imported only when a command runs.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys

from moetheory import __version__

#: modules whose ``register(subparsers)`` adds subcommands (imported lazily at parse time)
COMMAND_MODULES = ("moetheory.cli_fit", "moetheory.cli_theory", "moetheory.study.cli")


def build_parser() -> argparse.ArgumentParser:
    """The ``moetheory`` argument parser with every registered subcommand.

    Each module of :data:`COMMAND_MODULES` adds its subcommands through ``register(subparsers)``;
    a module that is not present is left out.

    Returns
    -------
    argparse.ArgumentParser

    Examples
    --------
    >>> parser = build_parser()
    >>> parser.prog
    'moetheory'
    """
    parser = argparse.ArgumentParser(
        prog="moetheory",
        description="Theory and simulation of parameter estimation in Gaussian mixtures of experts.")
    parser.add_argument("--version", action="version", version=f"moetheory {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv=None) -> int:
    """Run the ``moetheory`` command (the console-script entry point).

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0 on success, 2 for bad input (one ``moetheory: error: ...`` line on
        stderr instead of a traceback). Without a command the help is printed (status 0).

    Examples
    --------
    >>> main(["theory", "pdes", "--gate", "softmax"])   # doctest: +SKIP
    0
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 0
    try:
        return int(args.handler(args) or 0)
    except (ValueError, TypeError, OSError, KeyError) as err:
        # Bad input (or an unreachable file or scheduler): one clear line, no traceback from
        # deep inside the library.
        print(f"moetheory: error: {err}", file=sys.stderr)
        return 2


def print_json(obj) -> None:
    """Write ``obj`` to stdout as indented JSON (NaN and inf are refused: strict JSON).

    Examples
    --------
    >>> print_json({"converged": True})
    {
      "converged": true
    }
    """
    json.dump(obj, sys.stdout, indent=2, allow_nan=False)
    sys.stdout.write("\n")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
