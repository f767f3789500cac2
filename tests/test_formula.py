"""moetheory.formula: a formula ``"y ~ experts' terms | gate's terms"`` becomes y, one covariate
table x and the names of the columns each part uses. The columns are checked against columns
built by hand from the data, not against formulaic's output."""
import numpy as np
import pandas as pd
import pytest

from moetheory.formula import ModelFrame, parse

RNG = np.random.default_rng(3)
N = 12
DATA = pd.DataFrame({
    "y": RNG.normal(size=N),
    "x1": RNG.uniform(-2, 2, N),
    "x2": RNG.uniform(-2, 2, N),
    "z": RNG.uniform(-2, 2, N),
    "group": ["a", "b", "c"] * (N // 3),
    "label": [f"s{i}" for i in range(N)],
})


def _assert_columns(frame: ModelFrame, expected: dict, data=DATA):
    """x has exactly the hand-built columns, in this order, on the data's index."""
    assert list(frame.x.columns) == list(expected)
    for name, values in expected.items():
        np.testing.assert_allclose(frame.x[name].to_numpy(), np.asarray(values, dtype=float),
                                   err_msg=name)
    assert (frame.x.dtypes == "float64").all()
    np.testing.assert_array_equal(frame.x.index, data.index)


def test_parts_split_and_squared_term():
    frame = parse("y ~ x1 + I(x1**2) | z + x2", DATA)
    square = [name for name in frame.expert_covariates if name != "x1"]
    assert len(frame.expert_covariates) == 2 and len(square) == 1
    assert frame.gate_covariates == ("z", "x2")
    _assert_columns(frame, {"x1": DATA.x1, square[0]: DATA.x1 ** 2, "z": DATA.z, "x2": DATA.x2})
    np.testing.assert_array_equal(frame.y, DATA.y.to_numpy())
    assert frame.y.dtype == np.float64 and frame.y.shape == (N,)
    assert frame.response == "y" and frame.n_dropped == 0
    assert frame.formula == "y ~ x1 + I(x1**2) | z + x2"


def test_no_bar_gate_uses_the_experts_covariates():
    frame = parse("y ~ x1 + x2", DATA)
    assert frame.expert_covariates == frame.gate_covariates == ("x1", "x2")
    _assert_columns(frame, {"x1": DATA.x1, "x2": DATA.x2})


def test_gate_without_covariates():
    frame = parse("y ~ x1 | 1", DATA)
    assert frame.expert_covariates == ("x1",) and frame.gate_covariates == ()
    _assert_columns(frame, {"x1": DATA.x1})


def test_experts_with_intercept_only():
    frame = parse("y ~ 1 | z", DATA)
    assert frame.expert_covariates == () and frame.gate_covariates == ("z",)
    _assert_columns(frame, {"z": DATA.z})


def test_column_in_both_parts_appears_once():
    frame = parse("y ~ x1 + x2 | z + x1", DATA)
    assert frame.expert_covariates == ("x1", "x2") and frame.gate_covariates == ("z", "x1")
    _assert_columns(frame, {"x1": DATA.x1, "x2": DATA.x2, "z": DATA.z})


def test_categorical_treatment_coding_without_intercept_column():
    frame = parse("y ~ group | x1", DATA)
    # levels a, b, c: a is the base (absorbed by the model's intercept), one 0/1 column per other
    assert len(frame.expert_covariates) == 2
    level_b, level_c = frame.expert_covariates
    _assert_columns(frame, {level_b: DATA.group == "b", level_c: DATA.group == "c",
                            "x1": DATA.x1})
    assert "Intercept" not in frame.x.columns


def test_missing_rows_dropped_from_x_and_y_and_counted():
    data = DATA.copy()
    data.loc[2, "y"] = np.nan      # the response
    data.loc[5, "x1"] = np.nan     # an expert covariate
    data.loc[9, "z"] = np.nan      # a gate covariate only
    data.loc[7, "x2"] = np.nan     # not in the formula: the row stays
    frame = parse("y ~ x1 | z", data)
    kept = data.drop(index=[2, 5, 9])
    assert frame.n_dropped == 3
    np.testing.assert_array_equal(frame.y, kept.y.to_numpy())
    _assert_columns(frame, {"x1": kept.x1, "z": kept.z}, data=kept)


def test_transform_rebuilds_the_columns_on_new_data():
    frame = parse("y ~ x1 + I(x1**2) + group | z", DATA)
    new = pd.DataFrame({"x1": [0.5, -3.0], "z": [1.0, 2.0], "group": ["c", "a"]}, index=[40, 41])
    out = frame.transform(new)
    assert list(out.columns) == list(frame.x.columns)
    np.testing.assert_array_equal(out.index, [40, 41])
    square, level_b, level_c = frame.expert_covariates[1:]
    np.testing.assert_allclose(out["x1"], [0.5, -3.0])
    np.testing.assert_allclose(out[square], [0.25, 9.0])
    np.testing.assert_allclose(out[level_b], [0.0, 0.0])
    np.testing.assert_allclose(out[level_c], [1.0, 0.0])
    np.testing.assert_allclose(out["z"], [1.0, 2.0])
    # the training data through transform gives x back
    pd.testing.assert_frame_equal(frame.transform(DATA), frame.x)


@pytest.mark.parametrize("new,needle", [
    (pd.DataFrame({"x1": [0.5], "group": ["a"]}), "'z'"),
    (pd.DataFrame({"x1": [np.nan], "z": [1.0], "group": ["a"]}), "x1"),
    (pd.DataFrame({"x1": [0.5], "z": [1.0], "group": ["zz"]}), "zz"),
], ids=["absent-column", "missing-value", "unseen-level"])
def test_transform_errors_name_the_cause(new, needle):
    frame = parse("y ~ x1 + group | z", DATA)
    with pytest.raises(ValueError) as info:
        frame.transform(new)
    message = str(info.value)
    assert "\n" not in message and needle in message, message


@pytest.mark.parametrize("formula,data,needle", [
    ("y x1", DATA, "'~'"),
    ("~ x1", DATA, "response"),
    ("y ~ x1 | z | x2", DATA, "more than one '|'"),
    ("y ~ x1 |", DATA, "'| 1'"),
    ("y ~ x1 - 1 | z", DATA, "intercept"),
    ("y ~ x1 | z + 0", DATA, "intercept"),
    ("y ~ 0 + x1", DATA, "intercept"),
    ("y ~ x1 + nosuch | z", DATA, "'nosuch'"),
    ("y ~ x1 | I(nosuch**2)", DATA, "'nosuch'"),
    ("y ~ poly(nosuch, 2)", DATA, "nosuch"),
    ("nosuch ~ x1", DATA, "'nosuch'"),
    ("label ~ x1", DATA, "not numeric"),
    ("y + x2 ~ x1", DATA, "one response"),
    ("y ~ x1 + y", DATA, "response"),
    ("y ~ (x1 | z)", DATA, "|"),
    ("y ~ x1", DATA.iloc[:0], "no rows"),
    ("y ~ x1", DATA.assign(x1=np.nan), "missing value"),
], ids=["no-tilde", "no-response", "two-bars", "empty-gate", "minus-one", "plus-zero",
        "zero-plus", "unknown", "unknown-in-I", "unknown-in-poly", "unknown-response",
        "string-response", "two-responses", "response-on-right", "bar-in-parentheses",
        "empty-data", "all-rows-missing"])
def test_errors_are_one_line_and_name_the_formula(formula, data, needle):
    with pytest.raises(ValueError) as info:
        parse(formula, data)
    message = str(info.value)
    assert "\n" not in message, message
    assert repr(formula) in message and needle in message, message


def test_model_frame_is_frozen():
    frame = parse("y ~ x1", DATA)
    with pytest.raises(AttributeError):
        frame.n_dropped = 5
    with pytest.raises(ValueError):
        frame.y[0] = 1.0
