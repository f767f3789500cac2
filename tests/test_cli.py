"""The ``moetheory`` command line."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import moetheory as mt
from moetheory.cli import main


@pytest.fixture(scope="module")
def k3d1_csv(flexmix_dir):
    return str(flexmix_dir / "k3d1.csv")


def test_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage: moetheory" in out and "fit" in out
    # No command: the help, exit status 0.
    assert main([]) == 0
    assert "usage: moetheory" in capsys.readouterr().out


def test_fit_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in ("--experts", "--gate", "--x-cols", "--y-col", "--json"):
        assert option in out


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"moetheory {mt.__version__}"


def test_console_script_entry_point():
    # The installed console script (next to this interpreter, or on PATH), run once.
    exe = Path(sys.executable).parent / "moetheory"
    cmd = [str(exe)] if exe.exists() else [shutil.which("moetheory") or "moetheory"]
    out = subprocess.run(cmd + ["--version"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"moetheory {mt.__version__}"


def test_fit_prints_summary(k3d1_csv, capsys):
    assert main(["fit", k3d1_csv, "--experts", "3"]) == 0
    out = capsys.readouterr().out
    assert "Gaussian Mixture-of-Experts Results" in out
    for needle in ("Log-Likelihood:", "coef", "std err", "gate2:x1", "expert3:var",
                   "No. Observations:", "2000"):
        assert needle in out, needle


def test_fit_json(k3d1_csv, capsys):
    assert main(["fit", k3d1_csv, "--experts", "3", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["n_obs"] == 2000 and d["df_model"] == 2 * 2 + 3 * 3
    assert d["spec"]["n_experts"] == 3 and d["converged"] is True
    assert "expert1:const" in d["inference"]
    assert d["aic"] == pytest.approx(-2 * d["loglik"] + 2 * d["df_model"])


def test_missing_column_is_named(k3d1_csv, capsys):
    assert main(["fit", k3d1_csv, "--experts", "2", "--y-col", "response"]) == 2
    err = capsys.readouterr().err
    assert "'response'" in err and "not found" in err and "--y-col" in err
    assert "Traceback" not in err
    assert main(["fit", k3d1_csv, "--experts", "2", "--x-cols", "x1", "x7"]) == 2
    err = capsys.readouterr().err
    assert "'x7'" in err and "--x-cols" in err


def test_column_names_and_column_errors(tmp_path, capsys):
    rng = np.random.default_rng(3)
    age = rng.uniform(-1, 1, 300)
    y = np.where(age > 0, 2 * age, -age) + 0.2 * rng.standard_normal(300)
    path = tmp_path / "named.csv"
    path.write_text("age,y\n" + "".join(f"{a:.17g},{v:.17g}\n" for a, v in zip(age, y)))
    assert main(["fit", str(path), "--experts", "2", "--n-init", "2"]) == 0
    out = capsys.readouterr().out
    assert "gate1:age" in out and "expert2:age" in out and "x1" not in out
    assert main(["fit", str(path), "--experts", "2", "--x-cols", "age", "y"]) == 2
    assert "'y' (--y-col) is also a covariate" in capsys.readouterr().err
    assert main(["fit", str(path), "--experts", "2", "--topk-method", "direct"]) == 2
    assert "--topk-method applies to --gate topk only" in capsys.readouterr().err
    bad = tmp_path / "text.csv"
    bad.write_text("age,y\n0.1,1.0\n0.2,a\n")
    assert main(["fit", str(bad), "--experts", "2"]) == 2
    err = capsys.readouterr().err
    assert "column 'y' of " in err and "text.csv is not numeric: line 3 holds 'a'" in err


def test_nonexistent_file(tmp_path, capsys):
    missing = tmp_path / "nope.csv"
    assert main(["fit", str(missing), "--experts", "2"]) == 2
    err = capsys.readouterr().err
    assert "nope.csv" in err and err.startswith("moetheory: error:")


def test_bad_arguments(k3d1_csv, capsys):
    with pytest.raises(SystemExit) as exc:  # argparse: --experts is required
        main(["fit", k3d1_csv])
    assert exc.value.code == 2
    assert "--experts" in capsys.readouterr().err
    assert main(["fit", k3d1_csv, "--experts", "2", "--gate", "sofmax"]) == 2
    assert "gate (--gate) must be one of" in capsys.readouterr().err
