"""Every failure of the ``moetheory`` command is one line naming the file, row or argument, with
exit status 2 and never a traceback (issue 18).

``CASES`` is the systematic list of bad inputs: the file (missing, a folder, empty, not UTF-8,
binary, malformed CSV), its cells (text, missing values, NaN/inf, numbers beyond float64's range,
complex numbers, booleans), its columns (missing, duplicated, no covariate), every option of
``moetheory fit`` (wrong type, out of range, not for this gate), ``theory`` and ``study`` /
``reproduce`` (unknown names, bad presets, malformed declaration files, a cache or output path
that is a file, an unreachable scheduler). Each runs through :func:`moetheory.cli.main` in-process;
two run as real processes. The failures are checked before any EM runs, so the whole list takes
seconds.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from moetheory.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _csv(x, y, header="x1,y"):
    return header + "\n" + "".join(f"{a!r},{b!r}\n" for a, b in zip(x, y))


def _with_cell(text, line, col, value):
    """``text`` with the cell at 1-based ``line`` and 0-based column ``col`` replaced."""
    lines = text.splitlines()
    fields = lines[line - 1].split(",")
    fields[col] = value
    lines[line - 1] = ",".join(fields)
    return "\n".join(lines) + "\n"


def _files() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, 200).tolist()
    y = (np.abs(x) + 0.2 * rng.standard_normal(200)).tolist()
    good = _csv(x, y)
    study = ('spec_version = 3\nname = "demo"\nreplicates = 2\n\n[truth]\nn_experts = 2\ndim = 1\n\n'
             '[truth.params]\nbeta0 = [-8.0, 0.0]\nbeta1 = [[25.0], [0.0]]\na = [[-20.0], [20.0]]\n'
             'b = [15.0, -5.0]\nvar = [0.09, 0.16]\n\n[[fits]]\nlabel = "k2"\nsizes = [100, 200]\n\n'
             '[fits.spec]\nn_experts = 2\ndim = 1\n')
    text = {
        "good.csv": good,
        "empty.csv": "",
        "header.csv": "x1,y\n\n",
        "ragged.csv": good + "1,2,3\n",
        "quote.csv": _with_cell(good, 6, 1, '"0.5'),
        "text_y.csv": _with_cell(good, 5, 1, "abc"),
        "text_x.csv": _with_cell(good, 5, 0, "abc"),
        "nan_x.csv": _with_cell(good, 5, 0, "nan"),
        "na_y.csv": _with_cell(good, 7, 1, "NA"),
        "blank_x.csv": _with_cell(good, 5, 0, ""),
        "short_row.csv": good + "0.5\n",
        "inf_y.csv": _with_cell(good, 5, 1, "-inf"),
        "overflow.csv": _with_cell(good, 5, 1, "1e400"),
        "huge_y.csv": _csv(x, [v * 1e300 for v in y]),
        "huge_x.csv": _csv([v * 1e200 for v in x], y),
        "tiny_x.csv": _csv([v * 1e-200 for v in x], y),
        "tiny_y.csv": _csv(x, [v * 1e-200 for v in y]),
        "complex.csv": _with_cell(good, 5, 0, "1+2j"),
        "bool.csv": _csv([v > 0 for v in x], y),
        "const_y.csv": _csv(x, [1.5] * 200),
        "few.csv": "x1,y\n0.1,1\n0.2,3\n0.3,2\n",
        "onecol.csv": "y\n" + "".join(f"{v!r}\n" for v in y),
        "dupcols.csv": "x1,x1,y\n" + "".join(f"{a!r},{a!r},{b!r}\n" for a, b in zip(x, y)),
        "noname.csv": ",y\n" + "".join(f"{a!r},{b!r}\n" for a, b in zip(x, y)),
        "semicolon.csv": good.replace(",", ";"),
        "cachefile": "not a folder",
        "bad.toml": "this is = not toml [\n",
        "empty.toml": "",
        "keys.toml": 'name = "s"\nfoo = 1\n',
        "bad.json": "{not json",
        "list.json": "[1, 2]",
        "reps.toml": study.replace("replicates = 2", "replicates = -1"),
        "var.toml": study.replace("var = [0.09, 0.16]", "var = [0.09, -0.16]"),
        "sizes.toml": study.replace("sizes = [100, 200]", 'sizes = ["a"]'),
        "ragged.toml": study.replace("a = [[-20.0], [20.0]]", "a = [[-20.0, 1.0], [20.0]]"),
        "good.toml": study,
    }
    files = {name: t.encode("utf-8") for name, t in text.items()}
    files["latin1.csv"] = ("âge,y\n" + good.split("\n", 1)[1]).encode("latin-1")
    files["binary.csv"] = bytes(range(256)) * 4
    files["latin1.toml"] = study.replace('"demo"', '"démo"').encode("latin-1")
    return files


def fit(path, *options):
    return ["fit", path, "--experts", "2", "--n-init", "2", *options]


def temp(*options):
    return fit("good.csv", "--gate", "temperature", *options)


def topk(*options):
    return fit("good.csv", "--gate", "topk", *options)


#: (argv, text the one line must contain); the id says what is wrong
CASES = {
    # the file
    "missing file": (fit("nope.csv"), ["nope.csv: No such file or directory"]),
    "a folder": (fit("."), [".: Is a directory"]),
    "empty file": (fit("empty.csv"), ["empty.csv is empty"]),
    "header only": (fit("header.csv"), ["header.csv has a header line but no data rows"]),
    "latin-1 encoding": (fit("latin1.csv"), ["latin1.csv is not UTF-8 text", "line 1", "save it as UTF-8"]),
    "binary file": (fit("binary.csv"), ["binary.csv is not a text file"]),
    "row with an extra field": (fit("ragged.csv"), ["ragged.csv is not a well-formed CSV file",
                                                     "Expected 2 fields in line 202, saw 3"]),
    "unclosed quote": (fit("quote.csv"), ["quote.csv is not a well-formed CSV file", "EOF inside string"]),
    "semicolon-separated": (fit("semicolon.csv"), ["column 'y' (--y-col) not found in semicolon.csv",
                                                    "looks separated otherwise"]),
    # its cells
    "text in y": (fit("text_y.csv"), ["column 'y' of text_y.csv is not numeric: line 5 holds 'abc'"]),
    "text in x": (fit("text_x.csv"), ["column 'x1' of text_x.csv is not numeric: line 5 holds 'abc'"]),
    "NaN in x": (fit("nan_x.csv"), ["column 'x1' of nan_x.csv has a missing value at line 5 ('nan')"]),
    "NA in y": (fit("na_y.csv"), ["column 'y' of na_y.csv has a missing value at line 7 ('NA')"]),
    "empty cell": (fit("blank_x.csv"), ["column 'x1' of blank_x.csv has a missing value at line 5"]),
    "short row": (fit("short_row.csv"), ["column 'y' of short_row.csv has a missing value at line 202\n"]),
    "-inf in y": (fit("inf_y.csv"), ["column 'y' of inf_y.csv holds '-inf' at line 5",
                                     "values must be finite"]),
    "1e400 (overflows)": (fit("overflow.csv"), ["column 'y' of overflow.csv holds '1e400' at line 5"]),
    "y ~ 1e300": (fit("huge_y.csv"), ["column 'y' of huge_y.csv holds", "(line 2)", "magnitudes above 1e+75",
                                      "divide it by 1e+"]),
    "x ~ 1e200": (fit("huge_x.csv"), ["column 'x1' of huge_x.csv holds", "(line 2)",
                                      "magnitudes above 1e+150"]),
    "x ~ 1e-200": (fit("tiny_x.csv"), ["column 'x1' of tiny_x.csv varies by only", "below 1e-140",
                                       "multiply it by 1e+200"]),
    "y ~ 1e-200": (fit("tiny_y.csv"), ["column 'y' of tiny_y.csv varies by only", "below 1e-70"]),
    "complex number": (fit("complex.csv"), ["column 'x1' of complex.csv is not numeric: line 5 holds '1+2j'"]),
    "True/False": (fit("bool.csv"), ["column 'x1' of bool.csv is not numeric: line 2 holds", "rows like it"]),
    "constant y": (fit("const_y.csv"), ["y is constant (every value is 1.5)"]),
    "too few rows": (fit("few.csv"), ["n=3 rows", "8 free parameters"]),
    # its columns
    "no covariate": (fit("onecol.csv"), ["onecol.csv has no covariate column besides 'y'"]),
    "duplicate column names": (fit("dupcols.csv"), ["dupcols.csv has 2 columns named 'x1' (columns [1, 2])"]),
    "unnamed column": (fit("noname.csv"), ["column 1 of noname.csv has no name in the header line"]),
    "--y-col not in file": (fit("good.csv", "--y-col", "resp"), ["column 'resp' (--y-col) not found in good.csv"]),
    "--x-cols not in file": (fit("good.csv", "--x-cols", "x9"), ["column(s) ['x9'] (--x-cols) not found"]),
    "--x-cols holds --y-col": (fit("good.csv", "--x-cols", "x1", "y"), ["'y' (--y-col) is also a covariate"]),
    "--x-cols repeats": (fit("good.csv", "--x-cols", "x1", "x1"), ["--x-cols names ['x1'] more than once"]),
    # the options of `moetheory fit`
    "no CSV argument": (["fit", "--experts", "2"], ["moetheory fit: error:", "required: csv"]),
    "no --experts": (["fit", "good.csv"], ["required: --experts"]),
    "--experts abc": (fit("good.csv", "--experts", "abc"),
                      ["argument --experts/-k: expected a number of experts K >= 1 or a range A-B",
                       "got 'abc'"]),
    "--experts 0": (["fit", "good.csv", "--experts", "0"], ["argument --experts/-k", "got '0'"]),
    "--experts -1": (["fit", "good.csv", "--experts", "-1"], ["argument --experts/-k", "got '-1'"]),
    "--gate unknown": (fit("good.csv", "--gate", "sofmax"), ["gate (--gate) must be one of", "'sofmax'"]),
    "--top-k without topk": (fit("good.csv", "--top-k", "1"), ["top_k (--top-k) is only used by gate='topk'"]),
    "topk without --top-k": (topk(), ["top_k (--top-k) is required for gate='topk'"]),
    "--top-k 0": (topk("--top-k", "0"), ["top_k (--top-k) must be an integer >= 1; got 0"]),
    "--top-k > experts": (topk("--top-k", "5"), ["top_k (--top-k) must be in 1..n_experts=2; got top_k=5"]),
    "--select-by unknown": (topk("--top-k", "1", "--select-by", "foo"), ["select_by (--select-by) must be one of"]),
    "--activation unknown": (fit("good.csv", "--gate", "activation", "--activation", "relux"),
                             ["activation (--activation) must be one of", "'relux'"]),
    "--activation with softmax": (fit("good.csv", "--activation", "tanh"),
                                  ["activation (--activation) is only used by gate='activation'"]),
    "activation gate without --activation": (fit("good.csv", "--gate", "activation"),
                                             ["activation (--activation) is required"]),
    "--tau word": (temp("--tau", "hot"), ["--tau must be 'fixed', 'estimated' or a finite number > 0; got 'hot'"]),
    "--tau -1": (temp("--tau", "-1"), ["--tau must be", "got '-1'"]),
    "--tau nan": (temp("--tau", "nan"), ["--tau must be", "got 'nan'"]),
    "--tau inf": (temp("--tau", "inf"), ["--tau must be", "got 'inf'"]),
    "--tau with softmax": (fit("good.csv", "--tau", "2"), ["needs gate 'temperature' or 'activation'"]),
    "--tau-value -1": (temp("--tau-value", "-1"), ["tau_value (--tau-value) (the known temperature τ) must be"]),
    "--tau-value abc": (temp("--tau-value", "abc"), ["argument --tau-value: invalid float value: 'abc'"]),
    "--tau-value with --tau estimated": (temp("--tau", "estimated", "--tau-value", "2"),
                                         ["tau_value=2.0 is the known temperature of tau='fixed'"]),
    "--topk-method unknown": (topk("--top-k", "1", "--topk-method", "foo"),
                              ["gate_options['method'] (--topk-method) must be one of ('gem', 'direct')"]),
    "--topk-method without topk": (fit("good.csv", "--topk-method", "gem"),
                                   ["--topk-method applies to --gate topk only"]),
    "--n-init 0": (fit("good.csv", "--n-init", "0"), ["n_init (--n-init) must be a positive integer; got 0"]),
    "--n-init 1.5": (fit("good.csv", "--n-init", "1.5"), ["argument --n-init: invalid int value: '1.5'"]),
    "--seed 2**70": (fit("good.csv", "--seed", str(2**70)), ["seed (--seed) must fit in a signed 64-bit integer"]),
    "--cov-type unknown": (fit("good.csv", "--cov-type", "hessian"), ["cov_type (--cov-type) must be one of"]),
    "unknown option": (fit("good.csv", "--bogus"), ["unrecognized arguments: --bogus"]),
    "unknown command": (["fitt"], ["argument COMMAND: invalid choice: 'fitt'"]),
    # theory
    "theory rbar 0": (["theory", "rbar", "0"], ["m must be an integer >= 1; got 0"]),
    "theory rbar abc": (["theory", "rbar", "abc"], ["argument m: invalid int value: 'abc'"]),
    "theory pdes unknown gate": (["theory", "pdes", "--gate", "foo"], ["argument --gate: invalid choice: 'foo'"]),
    # study and reproduce
    "unknown study": (["study", "run", "nosuch"], ["unknown study 'nosuch'; choose one of"]),
    "status of an unknown study": (["study", "status", "nosuch"], ["unknown study 'nosuch'"]),
    "reproduce an unknown study": (["reproduce", "nosuch"], ["unknown study 'nosuch'"]),
    "unknown preset": (["study", "run", "softmax", "--preset", "huge"], ["unknown preset 'huge'"]),
    "--workers 0": (["study", "run", "softmax", "--workers", "0"], ["--workers must be >= 1; got 0"]),
    "--workers with --scheduler": (["study", "run", "softmax", "--workers", "1", "--scheduler", "x:1"],
                                   ["argument --scheduler: not allowed with argument --workers"]),
    "unknown --fit": (["study", "run", "softmax", "--fit", "k99", "--cache", "c1"],
                      ["unknown fitted model(s) ['k99'] for study 'softmax'"]),
    "--cache is a file": (["study", "run", "softmax", "--cache", "cachefile"],
                          ["argument --cache: cachefile is a file, not a directory"]),
    "status: --cache is a file": (["study", "status", "softmax", "--cache", "cachefile"],
                                  ["argument --cache: cachefile is a file"]),
    "--out is a file": (["reproduce", "softmax", "--out", "cachefile"], ["argument --out: cachefile is a file"]),
    "declaration not found": (["study", "run", "missing.toml"], ["study declaration file not found: missing.toml"]),
    "malformed TOML": (["study", "run", "bad.toml"], ["bad.toml: not valid TOML", "line 1, column 6"]),
    "empty TOML": (["study", "run", "empty.toml"], ["empty.toml: study declaration is missing 'name'"]),
    "unknown field": (["study", "run", "keys.toml"], ["keys.toml: unknown study field(s) ['foo']"]),
    "malformed JSON": (["study", "status", "bad.json"], ["bad.json: not valid JSON"]),
    "JSON list": (["study", "status", "list.json"], ["list.json: a study declaration must be a table", "got a list"]),
    "declaration not UTF-8": (["study", "status", "latin1.toml"], ["latin1.toml: not UTF-8 text"]),
    "declaration with --preset": (["study", "run", "keys.toml", "--preset", "quick"],
                                  ["--preset applies to registered studies"]),
    "replicates -1": (["study", "status", "reps.toml"], ["reps.toml: replicates must be an integer >= 1; got -1"]),
    "negative variance": (["study", "status", "var.toml"], ["var.toml: var must be finite and > 0"]),
    "text sample size": (["study", "status", "sizes.toml"], ["sizes.toml: sizes entry must be an integer"]),
    "ragged parameter": (["study", "status", "ragged.toml"], ["ragged.toml: a must be a numeric array"]),
}


@pytest.fixture(scope="module")
def files_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_inputs")
    for name, data in _files().items():
        (folder / name).write_bytes(data)
    return folder


def run_main(argv, capsys):
    """(exit status, stdout, stderr) of ``moetheory argv`` run in-process."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's errors and --help
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, out, err, needles, status=2):
    assert code == status, (code, err)
    assert "Traceback" not in err and out == "", (out, err)
    assert err.endswith("\n") and err.count("\n") == 1, f"not one line:\n{err}"
    assert err.startswith("moetheory") and ": error: " in err, err
    for needle in needles:
        assert needle in err, (needle, err)


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line(case, files_dir, monkeypatch, capsys):
    argv, needles = CASES[case]
    monkeypatch.chdir(files_dir)
    assert_one_line_error(*run_main(argv, capsys), needles)


def test_cases_cover_the_issue():
    """The list has at least the 51 categories the issue counted."""
    assert len(CASES) >= 51


def test_unreachable_scheduler_is_one_line(files_dir, monkeypatch, capsys):
    dask = pytest.importorskip("dask", reason="the dask extra is not installed")
    pytest.importorskip("distributed", reason="the dask extra is not installed")
    monkeypatch.chdir(files_dir)
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):  # the default waits 30 s
        code, out, err = run_main(["study", "run", "good.toml", "--scheduler", "tcp://127.0.0.1:9",
                                   "--cache", "c2", "--quiet"], capsys)
    assert_one_line_error(code, out, err, ["tcp://127.0.0.1:9"])


def test_utf16_and_bom_files_are_read(files_dir, tmp_path):
    from moetheory.cli_fit import read_csv

    good = (files_dir / "good.csv").read_text(encoding="utf-8")
    x, y, _, _ = read_csv(files_dir / "good.csv", None, "y")
    for encoding in ("utf-16", "utf-8-sig"):  # spreadsheets write byte-order marks
        path = tmp_path / f"{encoding}.csv"
        path.write_text(good, encoding=encoding)
        x2, y2, cols, _ = read_csv(path, None, "y")
        assert cols == ["x1"] and np.array_equal(x, x2) and np.array_equal(y, y2)


def test_blank_lines_are_skipped_and_lines_counted(tmp_path):
    from moetheory.cli_fit import read_csv

    path = tmp_path / "gaps.csv"
    path.write_text("x1,y\n0.1,1\n\n0.2,2\n0.3,oops\n\n")
    with pytest.raises(ValueError, match=r"gaps.csv is not numeric: line 5 holds 'oops'"):
        read_csv(path, None, "y")
    path.write_text("x1,y\n0.1,1\n\n0.2,2\n\n")
    x, y, _, _ = read_csv(path, None, "y")
    assert x.ravel().tolist() == [0.1, 0.2] and y.tolist() == [1.0, 2.0]


def test_warnings_are_one_line_each(monkeypatch, capsys):
    import warnings

    import moetheory.symbolic as symbolic

    def noisy(m):
        warnings.warn("first line\n  second line", RuntimeWarning)
        return "r-bar"

    monkeypatch.setattr(symbolic, "cli_rbar", noisy)
    code, out, err = run_main(["theory", "rbar", "2"], capsys)
    assert code == 0 and out == "r-bar\n"
    assert err == "moetheory: warning: RuntimeWarning: first line second line\n"


def test_internal_error_is_one_line_with_its_traceback_on_request(monkeypatch, capsys):
    import moetheory.symbolic as symbolic

    def broken(m):
        raise RuntimeError("a bug\nover two lines")

    monkeypatch.setattr(symbolic, "cli_rbar", broken)
    code, out, err = run_main(["theory", "rbar", "2"], capsys)
    assert code == 1 and out == "" and "Traceback" not in err
    assert err == ("moetheory: internal error: RuntimeError: a bug over two lines (please report it; "
                   "MOETHEORY_TRACEBACK=1 shows the traceback)\n")
    monkeypatch.setenv("MOETHEORY_TRACEBACK", "1")
    with pytest.raises(RuntimeError, match="a bug"):
        main(["theory", "rbar", "2"])


@pytest.mark.parametrize("case", ["y ~ 1e300", "--experts abc"])
def test_bad_input_in_a_real_process(case, files_dir):
    """The console behaviour itself: exit status 2, one line on stderr, nothing on stdout."""
    argv, needles = CASES[case]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    env.pop("MOETHEORY_TRACEBACK", None)
    out = subprocess.run([sys.executable, "-m", "moetheory.cli", *argv], cwd=files_dir, capture_output=True,
                         text=True, timeout=300, env=env)
    assert_one_line_error(out.returncode, out.stdout, out.stderr, needles)
