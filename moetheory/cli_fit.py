"""``moetheory fit data.csv --experts K``: fit a CSV file and print the summary."""
from __future__ import annotations

import warnings


def register(sub) -> None:
    """Add the ``fit`` subcommand to the ``moetheory`` subparsers ``sub``.

    ``moetheory fit data.csv --experts K|A-B [--gate G] [--top-k K] [--select-by score|logit]
    [--activation A] [--tau fixed|estimated|NUMBER] [--tau-value T] [--topk-method gem|direct]
    [--x-cols ...] [--y-col y] [--n-init N] [--seed S] [--cov-type oim|opg|sandwich] [--json]``.

    Parameters
    ----------
    sub : argparse._SubParsersAction
        The subparsers of the ``moetheory`` parser.

    Examples
    --------
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="moetheory")
    >>> register(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["fit", "data.csv", "--experts", "2", "--gate", "topk", "--top-k", "1"])
    >>> args.csv, args.experts, args.gate, args.top_k, args.handler is run
    ('data.csv', 2, 'topk', 1, True)
    """
    p = sub.add_parser("fit", help="fit a Gaussian MoE to a CSV file and print the summary",
                       description="Fit a Gaussian mixture of linear experts to the columns of a CSV file.")
    p.add_argument("csv", help="CSV file with a header row")
    p.add_argument("--experts", "-k", type=experts_arg, required=True,
                   help="number of experts K, or a range A-B: fit each and print the table of "
                        "log-likelihood, AIC, BIC, ICL with the k chosen by BIC")
    p.add_argument("--gate", default="softmax", help="softmax | topk | temperature | activation")
    p.add_argument("--top-k", type=int, default=None, help="K for --gate topk")
    p.add_argument("--select-by", default="score", help="top-K selection rule: score | logit")
    p.add_argument("--activation", default=None, help="activation for --gate activation")
    p.add_argument("--tau", default="fixed",
                   help="fixed | estimated | a number > 0 (the known tau) (temperature/activation gates)")
    p.add_argument("--tau-value", type=float, default=None,
                   help="the known temperature tau > 0 with --tau fixed (default: 1 for data-driven starts)")
    p.add_argument("--topk-method", default=None,
                   help="top-K gate step: gem (generalised EM on held active sets, default) | direct")
    p.add_argument("--x-cols", nargs="+", default=None,
                   help="covariate columns (default: every column except the response)")
    p.add_argument("--y-col", default="y", help="response column (default: y)")
    p.add_argument("--n-init", type=int, default=None, help="number of EM starts")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cov-type", default="oim", help="oim | opg | sandwich")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead")
    p.set_defaults(handler=run)


def experts_arg(text):
    """``--experts``: an integer K >= 1, or a range ``A-B`` (1 <= A < B) as ``range(A, B + 1)``.

    Examples
    --------
    >>> experts_arg("3"), experts_arg("1-4")
    (3, range(1, 5))
    """
    import argparse

    lo, sep, hi = text.partition("-")
    try:
        values = [int(lo)] + ([int(hi)] if sep else [])
    except ValueError:
        values = []
    if not values or min(values) < 1 or (sep and values[0] >= values[1]):
        raise argparse.ArgumentTypeError(
            f"expected a number of experts K >= 1 or a range A-B with 1 <= A < B; got {text!r}")
    return range(values[0], values[1] + 1) if sep else values[0]


def read_csv(path, x_cols, y_col):
    """Read (x, y) from a CSV; a missing column is named in the error.

    Parameters
    ----------
    path : str or path
        CSV file with a header row.
    x_cols : list of str or None
        Covariate columns (None: every column except ``y_col``).
    y_col : str
        Response column.

    Returns
    -------
    x : ndarray (n, d), y : ndarray (n,), x_cols : list of str

    Examples
    --------
    >>> import os, tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "data.csv")
    ...     with open(path, "w") as fh:
    ...         _ = fh.write("x1,x2,y\\n0,1,2\\n3,4,5\\n")
    ...     x, y, cols = read_csv(path, None, "y")
    >>> x.shape, y.tolist(), cols
    ((2, 2), [2.0, 5.0], ['x1', 'x2'])
    """
    import numpy as np
    import pandas as pd

    df = pd.read_csv(path)
    columns = list(df.columns)
    if y_col not in columns:
        raise ValueError(f"column {y_col!r} (--y-col) not found in {path}; columns are {columns}")
    if x_cols is None:
        x_cols = [c for c in columns if c != y_col]
        if not x_cols:
            raise ValueError(f"{path} has no covariate column besides {y_col!r}")
    missing = [c for c in x_cols if c not in columns]
    if missing:
        raise ValueError(f"column(s) {missing} (--x-cols) not found in {path}; columns are {columns}")
    if y_col in x_cols:
        raise ValueError(f"the response column {y_col!r} (--y-col) is also a covariate (--x-cols)")
    for c in [*x_cols, y_col]:
        values = pd.to_numeric(df[c], errors="coerce")
        bad = values.isna() & df[c].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(f"column {c!r} of {path} is not numeric: row {row} holds "
                             f"{df[c].iloc[row]!r}")
    return df[x_cols].to_numpy(dtype=float), df[y_col].to_numpy(dtype=float), x_cols


def run(args) -> int:
    """Handler of ``moetheory fit``: fit the CSV and print ``summary()`` (or JSON with ``--json``);
    with ``--experts A-B`` fit each k and print :func:`moetheory.select_k`'s table.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed options of :func:`register`'s parser.

    Returns
    -------
    int
        Exit status 0 (bad input raises ``ValueError``, which :func:`moetheory.cli.main` turns
        into status 2).

    Examples
    --------
    The CSV (columns ``x1 .. xd`` and ``y``) is read into x (n, d) and y (n,) and fitted:

    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="moetheory")
    >>> register(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["fit", "data.csv", "--experts", "2", "--json"])
    >>> args.handler(args)  # doctest: +SKIP
    0
    """
    import moetheory as mt
    from moetheory.cli import print_json

    x, y, x_cols = read_csv(args.csv, args.x_cols, args.y_col)
    if args.topk_method is not None and args.gate != "topk":
        raise ValueError(f"--topk-method applies to --gate topk only; got --gate {args.gate}")
    with warnings.catch_warnings():
        if args.json:
            warnings.simplefilter("ignore")
        tau = args.tau
        if tau not in ("fixed", "estimated"):
            try:
                tau = float(tau)
            except ValueError:
                raise ValueError(f"--tau must be 'fixed', 'estimated' or a number > 0; got {args.tau!r}") from None
        gate_options = None if args.topk_method is None else {"method": args.topk_method}
        options = dict(gate=args.gate, top_k=args.top_k, select_by=args.select_by,
                       activation=args.activation, tau=tau, tau_value=args.tau_value,
                       n_init=args.n_init, seed=args.seed, cov_type=args.cov_type,
                       gate_options=gate_options, x_names=x_cols)
        if isinstance(args.experts, range):  # --experts A-B: the table over k
            sel = mt.select_k(x, y, k=args.experts, **options)
            if args.json:
                print_json(sel.to_dict())
            else:
                print(sel.summary())
            return 0
        res = mt.fit(x, y, n_experts=args.experts, **options)
        if args.json:
            print_json(res.to_dict())
        else:
            print(res.summary())
    return 0
