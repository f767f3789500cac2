"""The ``moetheory`` command.

Subcommands are registered by small ``register(subparsers)`` functions so that each capability
keeps its command next to its code; heavy modules are imported only when a command runs.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import warnings

from moetheory import __version__

#: modules whose ``register(subparsers)`` adds subcommands (imported lazily at parse time)
COMMAND_MODULES = ("moetheory.cli_fit", "moetheory.cli_theory", "moetheory.study.cli")

#: exceptions that mean bad input (a file, an argument, the data, an unreachable scheduler):
#: one ``moetheory: error: ...`` line and exit status 2
BAD_INPUT = (ValueError, TypeError, OSError, KeyError, FloatingPointError, OverflowError)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: the message names the argument and points at ``--help``
    instead of printing the (many-line) usage. Subcommand parsers inherit the class.

    Examples
    --------
    >>> import contextlib, io
    >>> parser = ArgumentParser(prog="demo")
    >>> _ = parser.add_argument("--k", type=int)
    >>> err = io.StringIO()
    >>> with contextlib.redirect_stderr(err):
    ...     try:
    ...         parser.parse_args(["--k", "two"])
    ...     except SystemExit as exc:
    ...         print(exc.code)
    2
    >>> print(err.getvalue(), end="")
    demo: error: argument --k: invalid int value: 'two' (see: demo --help)
    """

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see: {self.prog} --help)\n")


def one_line(text) -> str:
    """``text`` with its line breaks and runs of blanks collapsed: an error is one line.

    Examples
    --------
    >>> one_line("Error tokenizing data.\\n  Expected 2 fields in line 3, saw 3\\n")
    'Error tokenizing data. Expected 2 fields in line 3, saw 3'
    """
    return " ".join(str(text).split())


def error_line(err: BaseException) -> str:
    """The message of ``err`` as one line: an OSError as ``file: reason``, a KeyError without
    quotes.

    Examples
    --------
    >>> error_line(FileNotFoundError(2, "No such file or directory", "data.csv"))
    'data.csv: No such file or directory'
    >>> error_line(KeyError("study 'x' has no fit 'k9'"))
    "study 'x' has no fit 'k9'"
    """
    if isinstance(err, OSError) and err.strerror and err.filename is not None:
        text = f"{err.filename}: {err.strerror}"
    elif isinstance(err, KeyError) and len(err.args) == 1:
        text = str(err.args[0])
    else:
        text = str(err) or type(err).__name__
    return one_line(text)


def _warning_line(message, category, filename, lineno, file=None, line=None):
    # warnings during a command: one line each, without the source line of the library
    print(f"moetheory: warning: {category.__name__}: {one_line(message)}", file=sys.stderr)


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
    parser = ArgumentParser(
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
        stderr naming the file, row or argument, never a traceback), 1 for an internal error
        (one line too; ``MOETHEORY_TRACEBACK=1`` shows its traceback). Warnings are one
        ``moetheory: warning: ...`` line each. Without a command the help is printed (status 0).

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
    with warnings.catch_warnings():
        warnings.showwarning = _warning_line
        try:
            return int(args.handler(args) or 0)
        except BAD_INPUT as err:
            print(f"moetheory: error: {error_line(err)}", file=sys.stderr)
            return 2
        except Exception as err:  # a bug, not bad input: still one line, the traceback on request
            if os.environ.get("MOETHEORY_TRACEBACK"):
                raise
            print(f"moetheory: internal error: {type(err).__name__}: {error_line(err)} (please report "
                  "it; MOETHEORY_TRACEBACK=1 shows the traceback)", file=sys.stderr)
            return 1


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
