"""``moetheory fit data.csv --experts K``: fit a CSV file and print the summary."""
from __future__ import annotations

import warnings


def register(sub) -> None:
    """Add the ``fit`` subcommand to the ``moetheory`` subparsers ``sub``.

    ``moetheory fit data.csv --experts K|A-B [--gate G] [--top-k K] [--select-by score|logit]
    [--activation A] [--tau fixed|estimated|NUMBER] [--tau-value T] [--topk-method gem|direct]
    [--x-cols ...] [--y-col y] [--expert-cols ...] [--gate-cols ...] [--formula F] [--equal-var]
    [--experts-family gaussian|t] [--t-df NU] [--weights COLUMN] [--n-init N] [--seed S]
    [--cov-type oim|opg|sandwich] [--json]``.

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
    p.add_argument("--gate", default="softmax",
                   help="softmax | topk | temperature | activation | sigmoid | gaussian (or a registered gate)")
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
    p.add_argument("--expert-cols", nargs="*", default=None, metavar="COLUMN",
                   help="covariate columns of the experts' regressions (default: every "
                        "covariate; none: intercepts only)")
    p.add_argument("--gate-cols", nargs="*", default=None, metavar="COLUMN",
                   help="covariate columns of the gate (default: every covariate; none: a "
                        "gate without covariates, a mixture of regressions)")
    p.add_argument("--equal-var", action="store_true",
                   help="one noise variance shared by every expert")
    p.add_argument("--experts-family", default="gaussian", metavar="gaussian|t",
                   help="the experts' noise: gaussian (default) or t (Student-t experts, robust "
                        "to outlying y; meteorits tmixreg)")
    p.add_argument("--t-df", type=float, default=None, metavar="NU",
                   help="with --experts-family t: a known degrees of freedom nu > 0 for every "
                        "expert (default: each expert's nu estimated)")
    p.add_argument("--formula", default=None,
                   help="a formula instead of the column options, e.g. 'y ~ x + I(x**2) | z' "
                        "(experts' terms | gate's terms; moetheory.formula)")
    p.add_argument("--weights", default=None, metavar="COLUMN",
                   help="column of case weights >= 0 (a row of weight w counts w times)")
    p.add_argument("--n-init", type=int, default=None, help="number of EM starts")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cov-type", default="oim", help="oim | opg | sandwich")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead")
    p.set_defaults(handler=run)


#: cells read as missing values (pandas' defaults, and R's NA)
MISSING = frozenset({"", "NA", "N/A", "n/a", "#N/A", "NaN", "nan", "-NaN", "-nan", "NULL", "null",
                     "None", "<NA>", "nil"})


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


def read_csv(path, x_cols, y_col, weights_col=None):
    """Read (x, y) and optional case weights from a CSV file; every problem is a ValueError naming the file, and the
    column and line where it is.

    The file must be UTF-8 (a byte-order mark is allowed; UTF-16 with a byte-order mark is read
    too), comma-separated, with a header line of distinct column names; every used cell must
    hold a finite number within the range :func:`moetheory.validation.scale_problem` accepts.
    Blank lines are skipped.

    Parameters
    ----------
    path : str or path
        CSV file with a header row.
    x_cols : list of str or None
        Covariate columns (None: every column except ``y_col`` and ``weights_col``).
    y_col : str
        Response column.
    weights_col : str, optional
        Column of case weights (``moetheory.fit``'s ``weights``).

    Returns
    -------
    x : ndarray (n, d), y : ndarray (n,), x_cols : list of str, weights : ndarray (n,) or None

    Examples
    --------
    >>> import os, tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "data.csv")
    ...     with open(path, "w") as fh:
    ...         _ = fh.write("x1,x2,y\\n0,1,2\\n3,4,5\\n")
    ...     x, y, cols, _ = read_csv(path, None, "y")
    ...     with open(path, "a") as fh:
    ...         _ = fh.write("6,seven,8\\n")
    ...     try:
    ...         read_csv(path, None, "y")
    ...     except ValueError as err:
    ...         print(str(err).replace(path, "data.csv"))
    column 'x2' of data.csv is not numeric: line 4 holds 'seven'
    >>> x.shape, y.tolist(), cols
    ((2, 2), [2.0, 5.0], ['x1', 'x2'])
    """
    import numpy as np
    import pandas as pd

    from moetheory.validation import X_LIMITS, Y_LIMITS, scale_problem

    table = _read_table(path)
    header = [h.strip() if isinstance(h, str) else "" for h in table.iloc[0]]
    cells = table.iloc[1:].apply(lambda col: col.str.strip())
    missing = cells.isna() | cells.isin(MISSING)
    rows = ~missing.all(axis=1)  # blank lines are skipped
    cells, missing = cells[rows], missing[rows]
    if cells.empty:
        raise ValueError(f"{path} has a header line but no data rows")
    lines = cells.index.to_numpy() + 1  # line of the file (the header is line 1)

    named = [h for h in header if h]
    if y_col not in header:
        hint = ""
        if len(header) == 1 and any(sep in header[0] for sep in ";\t|"):
            hint = " (moetheory reads comma-separated files; this one looks separated otherwise)"
        raise ValueError(f"column {y_col!r} (--y-col) not found in {path}; columns are {named}{hint}")
    if weights_col is not None and weights_col not in header:
        raise ValueError(f"column {weights_col!r} (--weights) not found in {path}; columns are {named}")
    if weights_col == y_col:
        raise ValueError(f"the response column {y_col!r} (--y-col) is also the weights (--weights)")
    if x_cols is None:  # every other column; an unnamed one only when it holds data
        empty = missing.all(axis=0).to_numpy()
        x_cols = list(dict.fromkeys(h for h, e in zip(header, empty)
                                    if h not in (y_col, weights_col) and (h or not e)))
        if not x_cols:
            raise ValueError(f"{path} has no covariate column besides {y_col!r}")
    twice = sorted({c for c in x_cols if x_cols.count(c) > 1})
    if twice:
        raise ValueError(f"--x-cols names {twice} more than once")
    missing_cols = [c for c in x_cols if c not in header]
    if missing_cols:
        raise ValueError(f"column(s) {missing_cols} (--x-cols) not found in {path}; columns are {named}")
    if y_col in x_cols:
        raise ValueError(f"the response column {y_col!r} (--y-col) is also a covariate (--x-cols)")
    if weights_col is not None and weights_col in x_cols:
        raise ValueError(f"the weights column {weights_col!r} (--weights) is also a covariate (--x-cols)")
    for c in [*x_cols, y_col] + ([] if weights_col is None else [weights_col]):
        if header.count(c) > 1:
            columns = [i + 1 for i, h in enumerate(header) if h == c]
            raise ValueError(f"{path} has {len(columns)} columns named {c!r} (columns {columns}); "
                             "rename them")
        if not c:
            raise ValueError(f"column {header.index(c) + 1} of {path} has no name in the header line")

    def column(c, limits):
        i = header.index(c)
        text, absent = cells.iloc[:, i], missing.iloc[:, i].to_numpy()
        values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            count = f" ({bad.sum()} rows like it)" if bad.sum() > 1 else ""
            raw = text.iloc[row]
            if absent[row]:
                shown = f" ({raw!r})" if isinstance(raw, str) and raw else ""  # not '' or an absent field
                why = f"has a missing value at line {lines[row]}{shown}"
            elif np.isnan(values[row]):
                why = f"is not numeric: line {lines[row]} holds {raw!r}"
            else:
                why = f"holds {raw!r} at line {lines[row]}: values must be finite numbers"
            raise ValueError(f"column {c!r} of {path} {why}{count}")
        problem = scale_problem(f"column {c!r} of {path}", values, limits,
                                where=lambda row: f"line {lines[row]}")
        if problem is not None:
            raise ValueError(problem)
        return values

    x = np.column_stack([column(c, X_LIMITS) for c in x_cols])
    weights = None if weights_col is None else column(weights_col, Y_LIMITS)
    return x, column(y_col, Y_LIMITS), x_cols, weights


def _read_table(path):
    """Every cell of a CSV file as a string (NaN for a field a short line lacks); row 0 is the
    header and row i is line i + 1 of the file. Errors name the file."""
    import codecs
    import io
    from pathlib import Path

    import pandas as pd

    data = Path(path).read_bytes()  # a missing or unreadable file: an OSError naming it
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    elif b"\x00" in data:
        raise ValueError(f"{path} is not a text file (it holds NUL bytes); expected comma-separated text")
    else:
        encoding = "utf-8-sig"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise ValueError(f"{path} is not UTF-8 text (byte {data[err.start]:#04x} on line {line}); "
                         "save it as UTF-8 (in a spreadsheet: CSV UTF-8)") from None
    if not text.strip():
        raise ValueError(f"{path} is empty; expected a header line and rows of numbers")
    try:
        return pd.read_csv(io.StringIO(text), header=None, dtype=str, keep_default_na=False,
                           skip_blank_lines=False)
    except pd.errors.ParserError as err:
        reason = str(err).strip().split("C error: ")[-1]
        raise ValueError(f"{path} is not a well-formed CSV file: {reason}") from None


#: fit's arguments and the options of ``moetheory fit`` that set them
OPTIONS = {"n_experts": "--experts", "gate": "--gate", "top_k": "--top-k", "select_by": "--select-by",
           "activation": "--activation", "tau": "--tau", "tau_value": "--tau-value",
           "gate_options['method']": "--topk-method", "n_init": "--n-init", "seed": "--seed",
           "cov_type": "--cov-type", "weights": "--weights", "experts": "--experts-family",
           "t_df": "--t-df"}


def _name_the_option(message: str) -> str:
    """fit's message, its leading argument name followed by the command-line option.

    Examples
    --------
    >>> _name_the_option("n_experts must be a positive integer; got 0")
    'n_experts (--experts) must be a positive integer; got 0'
    >>> _name_the_option("x and y have n=3 rows")
    'x and y have n=3 rows'
    """
    for name, option in OPTIONS.items():
        if message.startswith(name + " "):
            return f"{name} ({option}){message[len(name):]}"
    return message


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

    data = _design(args)
    if args.topk_method is not None and not _gate_accepts(args.gate, "method"):
        raise ValueError(f"--topk-method applies to --gate topk only; got --gate {args.gate}")
    with warnings.catch_warnings():
        if args.json:
            warnings.simplefilter("ignore")
        tau = args.tau
        if tau not in ("fixed", "estimated"):
            try:
                tau = float(tau)
            except ValueError:
                tau = None
            if tau is None or not 0 < tau < float("inf"):
                raise ValueError(f"--tau must be 'fixed', 'estimated' or a finite number > 0; got {args.tau!r}")
        gate_options = None if args.topk_method is None else {"method": args.topk_method}
        options = dict(gate=args.gate, top_k=args.top_k, select_by=args.select_by,
                       activation=args.activation, tau=tau, tau_value=args.tau_value,
                       n_init=args.n_init, seed=args.seed, cov_type=args.cov_type,
                       gate_options=gate_options, equal_var=args.equal_var,
                       experts=args.experts_family, t_df=args.t_df, **data["options"])
        x, y = data["x"], data["y"]
        if isinstance(args.experts, range):  # --experts A-B: the table over k
            try:
                sel = mt.select_k(x, y, k=args.experts, **options)
            except (ValueError, TypeError) as err:
                raise type(err)(_name_the_option(str(err))) from None
            if args.json:
                print_json(sel.to_dict())
            else:
                print(sel.summary())
            return 0
        try:
            res = mt.fit(x, y, n_experts=args.experts, **options)
        except (ValueError, TypeError) as err:
            raise type(err)(_name_the_option(str(err))) from None
        if args.json:
            print_json(res.to_dict())
        else:
            print(res.summary())
    return 0


def _design(args) -> dict:
    """x, y and fit()'s covariate options from the CSV and ``--x-cols``/``--y-col``/
    ``--expert-cols``/``--gate-cols``, or ``--formula`` (whose variables are read and checked as
    the column options' are)."""
    if args.formula is None:
        x_cols = args.x_cols
        if x_cols is None and args.expert_cols is not None and args.gate_cols is not None:
            x_cols = list(dict.fromkeys(args.expert_cols + args.gate_cols))
        x, y, x_cols, weights = read_csv(args.csv, x_cols, args.y_col, args.weights)
        for flag, cols in (("--expert-cols", args.expert_cols), ("--gate-cols", args.gate_cols)):
            unknown = [c for c in cols or () if c not in x_cols]
            if unknown:
                raise ValueError(f"{flag}: {unknown} not among the covariates {x_cols}")
        return {"x": x, "y": y, "options": dict(x_names=x_cols, weights=weights,
                                                 expert_covariates=args.expert_cols,
                                                 gate_covariates=args.gate_cols)}
    clash = [flag for flag, v in (("--x-cols", args.x_cols), ("--expert-cols", args.expert_cols),
                                  ("--gate-cols", args.gate_cols)) if v is not None]
    if clash or args.y_col != "y":
        raise ValueError(f"--formula names the columns itself; drop {clash or ['--y-col']}")
    import pandas as pd

    from moetheory.formula import parse, variables

    response, covariates = variables(args.formula)
    if len(response) != 1:
        raise ValueError(f"--formula {args.formula!r}: the response must use one column; got {response}")
    try:
        x, y, cols, weights = read_csv(args.csv, covariates, response[0], args.weights)
    except ValueError as err:  # the columns come from the formula, not from --x-cols/--y-col
        raise ValueError(str(err).replace("(--x-cols)", "(in --formula)")
                         .replace("(--y-col)", "(in --formula)")) from None
    frame = parse(args.formula, pd.DataFrame(dict(zip(cols, x.T)) | {response[0]: y}))
    return {"x": frame.x, "y": frame.y,
            "options": dict(weights=weights, expert_covariates=list(frame.expert_covariates),
                            gate_covariates=list(frame.gate_covariates))}


def _gate_accepts(gate: str, option: str) -> bool:
    """Whether the gate named ``gate`` has the gate-step option ``option`` (False if unknown)."""
    from moetheory.gates import GATES

    entry = GATES.get(gate)
    return entry is not None and option in entry.step_options
