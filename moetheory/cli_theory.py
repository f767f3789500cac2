"""``moetheory theory pdes --gate G`` and ``moetheory theory rbar M`` (symbolic tools, sympy)."""
from __future__ import annotations

PDE_GATES = ("all", "softmax", "topk", "temperature", "activation-identity", "activation-tanh",
             "activation-sigmoid", "activation-gelu", "activation-softplus", "activation-square",
             "sigmoid", "gaussian")


def register(sub) -> None:
    """Add ``theory pdes --gate G`` and ``theory rbar M`` to the ``moetheory`` subparsers ``sub``.

    ``pdes`` prints, for every gate (default ``--gate all``), which of the PDEs behind the slow
    rates hold and which break, with the D_2 exponents derived from them; ``--gate G`` gives one
    gate's detailed checks. ``rbar`` computes r̄(m) (see :mod:`moetheory.symbolic`).

    Parameters
    ----------
    sub : argparse._SubParsersAction
        The subparsers of the ``moetheory`` parser.

    Examples
    --------
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="moetheory")
    >>> register(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["theory", "rbar", "2"])
    >>> args.theory_command, args.m
    ('rbar', 2)
    >>> parser.parse_args(["theory", "pdes", "--gate", "temperature"]).gate
    'temperature'
    """
    p = sub.add_parser("theory", help="symbolic identifiability: PDE checks and r-bar",
                       description="Symbolic identifiability tools (sympy).")
    tsub = p.add_subparsers(dest="theory_command", metavar="TOOL")
    pdes = tsub.add_parser("pdes", help="which PDEs behind the slow rates hold / break, per gate")
    pdes.add_argument("--gate", default="all", choices=PDE_GATES,
                      help="one gate's detailed checks (default: the table for every gate)")
    pdes.set_defaults(handler=_pdes)
    rbar = tsub.add_parser("rbar", help="compute r-bar(m) by solving its polynomial system")
    rbar.add_argument("m", type=int, help="number of fitted atoms in a Voronoi cell (m >= 1)")
    rbar.set_defaults(handler=_rbar)
    p.set_defaults(handler=lambda args: p.print_help())


def _pdes(args) -> int:
    from moetheory.symbolic import cli_pdes

    print(cli_pdes(args.gate))
    return 0


def _rbar(args) -> int:
    from moetheory.symbolic import cli_rbar

    if args.m < 1:
        raise ValueError(f"m must be an integer >= 1; got {args.m}")
    print(cli_rbar(args.m))
    return 0
