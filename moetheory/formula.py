"""Wilkinson formulas for a mixture of experts: ``"y ~ x1 + I(x1**2) | z1 + z2"``.

A mixture of experts has two linear predictors: the experts' regressions (left of ``|``) and
the gate's softmax (right of ``|``). :func:`parse` turns a formula and a DataFrame into the
response, one covariate table ``x`` and the names of the columns each part uses, which is what
``moetheory.fit(x, y, ..., expert_covariates=..., gate_covariates=...)`` takes.

The formulas are formulaic's (https://matthewwardrop.github.io/formulaic/). formulaic splits a
right-hand side at a top-level ``|`` into a structured formula: ``Formula("y ~ x | z").rhs`` is
the tuple of parts ``(1 + x, 1 + z)``, each with its own intercept, and ``model_matrix`` builds
one matrix per part in a single pass, dropping a row from every part (and from ``y``) when any
variable of the formula is missing there. A ``|`` inside parentheses is a syntax error for
formulaic; inside ``I(...)`` it is Python's bitwise or.

* Without ``|`` the gate uses the experts' covariates; ``| 1`` is a gate without covariates
  (constant mixing proportions, flexmix's default); ``1 |`` are experts with an intercept only.
* The model has its own intercepts: formulaic's ``Intercept`` column is left out of ``x``, and a
  formula that removes the intercept (``- 1``, ``+ 0``) is an error.
* Categorical variables get formulaic's default treatment coding: one 0/1 column per level
  except the first (``c[T.b]``), the first level being absorbed by the intercept.
* Transforms are formulaic's (``I(x**2)``, ``np.log(x)``, ``log(x)``, ``center(x)``,
  ``poly(x, 2)``, ``C(c)``); only the data's columns and these are in scope.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from formulaic import Formula, model_matrix
from formulaic.errors import DataMismatchWarning, FormulaicError
from formulaic.model_spec import ModelSpec, ModelSpecs

_PART_NAMES = ("experts'", "gate's")


@dataclass(frozen=True, eq=False)
class ModelFrame:
    """A formula evaluated on a DataFrame: the response, the covariates, who uses which.

    Made by :func:`parse`. ``x`` holds every distinct covariate column of either part once (the
    experts' first, then the gate's other ones), without an intercept column; the index of
    ``x`` is the data's, less the dropped rows.

    Attributes
    ----------
    formula : str
        The formula as given.
    response : str
        Name of the response (formulaic's name of the left-hand side, e.g. ``"np.log(y)"``).
    y : ndarray, shape (n,)
        The response, float64, rows with a missing value dropped.
    x : pandas.DataFrame, shape (n, q)
        The covariate columns of both parts, float64.
    expert_covariates : tuple of str
        Columns of ``x`` in the experts' regression (``()``: intercept only).
    gate_covariates : tuple of str
        Columns of ``x`` in the gate (``()``: constant mixing proportions).
    n_dropped : int
        Rows of the data left out because a variable of the formula is missing there.
    spec : formulaic.model_spec.ModelSpecs
        formulaic's model specs (``spec.lhs``, ``spec.rhs``): they rebuild the same columns,
        categorical levels included, on new data (:meth:`ModelFrame.transform`).

    Examples
    --------
    >>> import pandas as pd
    >>> frame = parse("y ~ x", pd.DataFrame({"y": [1.0, 2.0, 4.0], "x": [0.0, 1.0, 2.0]}))
    >>> frame.expert_covariates == frame.gate_covariates == ("x",)
    True
    >>> frame.transform(pd.DataFrame({"x": [5.0]}))["x"].tolist()
    [5.0]
    """

    formula: str
    response: str
    y: np.ndarray
    x: pd.DataFrame
    expert_covariates: tuple[str, ...]
    gate_covariates: tuple[str, ...]
    n_dropped: int
    spec: ModelSpecs

    def transform(self, new_data) -> pd.DataFrame:
        """The covariate table ``x`` for new data (for prediction): same columns, same order.

        Parameters
        ----------
        new_data : pandas.DataFrame, shape (m, ...)
            Holds every variable of the formula's right-hand side; the response is not needed.

        Returns
        -------
        pandas.DataFrame, shape (m, q)
            float64, the index of ``new_data``, columns ``self.x.columns``.

        Raises
        ------
        ValueError
            A variable is absent (named), has a missing value, or a categorical variable has a
            level the fit did not see (no row is dropped or guessed: a prediction needs each).
        """
        new_data = pd.DataFrame(new_data)
        missing = sorted(_required(_rhs_specs(self.spec)) - set(map(str, new_data.columns)))
        if missing:
            raise ValueError(f"formula {self.formula!r}: new data has no column "
                             f"{', '.join(map(repr, missing))}")
        try:
            with warnings.catch_warnings():
                # formulaic turns an unseen level into NaN with only a warning
                warnings.simplefilter("error", DataMismatchWarning)
                parts = [spec.get_model_matrix(new_data, na_action="raise", context={})
                         for spec in _rhs_specs(self.spec)]
        except DataMismatchWarning as err:
            # formulaic's warning goes on to say the level becomes NaN: here it is an error
            unseen = _first_line(err).split(". They are")[0]
            raise ValueError(f"formula {self.formula!r}: new data: {unseen}") from err
        except (FormulaicError, ValueError) as err:
            raise ValueError(f"formula {self.formula!r}: new data: {_first_line(err)}") from err
        columns = {}
        for part in parts:
            columns.update({name: part[name] for name in part.columns})
        return pd.DataFrame({name: columns[name] for name in self.x.columns},
                            index=new_data.index).astype("float64")


def parse(formula: str, data) -> ModelFrame:
    """Evaluate a mixture-of-experts formula ``"y ~ experts' terms | gate's terms"`` on data.

    Parameters
    ----------
    formula : str
        A Wilkinson formula (formulaic's syntax): the response left of ``~``, the experts' terms,
        then optionally ``|`` and the gate's terms. Without ``|`` the gate uses the experts'
        covariates; ``| 1``: a gate without covariates; ``1 |``: experts with an intercept only.
        Intercepts are always in the model and must not be removed (``- 1``, ``+ 0``).
    data : pandas.DataFrame, shape (N, ...)
        Holds the variables of the formula (anything ``pandas.DataFrame`` accepts).

    Returns
    -------
    ModelFrame
        ``y`` (n,), ``x`` (n, q), ``expert_covariates``, ``gate_covariates``, ``response``,
        ``n_dropped`` (= N - n: rows with a missing value in a variable of the formula),
        ``formula``, ``spec`` and ``transform(new_data)``.

    Raises
    ------
    ValueError
        One line naming the formula and the fault: no ``~``, no response or more than one,
        more than one ``|``, an empty part, a removed intercept, a variable absent from the data
        (named), a non-numeric response, no rows, or no row without a missing value.

    Examples
    --------
    >>> import pandas as pd
    >>> data = pd.DataFrame({"y": [0.5, 1.5, 4.5, 9.0], "x": [0.0, 1.0, 2.0, 3.0],
    ...                      "z": [1.0, 0.0, None, 1.0]})
    >>> frame = parse("y ~ x + I(x**2) | z", data)
    >>> frame.expert_covariates, frame.gate_covariates
    (('x', 'I(x ** 2)'), ('z',))
    >>> frame.x
         x  I(x ** 2)    z
    0  0.0        0.0  1.0
    1  1.0        1.0  0.0
    3  3.0        9.0  1.0
    >>> frame.y.tolist(), frame.n_dropped
    ([0.5, 1.5, 9.0], 1)
    >>> parse("y ~ x | 1", data).gate_covariates
    ()
    """
    def fail(what: str) -> ValueError:
        return ValueError(f"formula {formula!r}: {what}")

    if not isinstance(formula, str) or "~" not in formula:
        raise fail("no '~': write 'response ~ experts' terms | gate's terms'")
    if formula.rstrip().endswith("|"):
        raise fail("nothing after '|': write '| 1' for a gate without covariates")
    data = pd.DataFrame(data)
    if len(data) == 0:
        raise fail("the data has no rows")

    try:
        parsed = Formula(formula)
    except FormulaicError as err:
        raise fail(_first_line(err)) from err
    lhs = getattr(parsed, "lhs", None)
    if lhs is None or len(lhs) == 0:
        raise fail("no response left of '~'")
    if len(lhs) > 1:
        raise fail(f"one response expected left of '~'; got {len(lhs)}: {lhs}")
    parts = parsed.rhs if isinstance(parsed.rhs, tuple) else (parsed.rhs,)
    if len(parts) > 2:
        raise fail(f"more than one '|': the right-hand side has {len(parts)} parts; a mixture "
                   "of experts has two ('experts' terms | gate's terms')")
    for name, part in zip(_PART_NAMES, parts):
        if not any(term.degree == 0 for term in part):
            raise fail(f"the {name} part removes the intercept ('- 1' or '+ 0'); the model "
                       "always has its own intercepts, so leave it in")
    missing = sorted(set(map(str, parsed.required_variables)) - set(map(str, data.columns)))
    if missing:
        raise fail(f"unknown variable {', '.join(map(repr, missing))}: not a column of the data")
    response_vars = set(map(str, lhs.required_variables))
    on_right = sorted(response_vars & set().union(*(map(str, p.required_variables) for p in parts)))
    if on_right:
        raise fail(f"the response variable {', '.join(map(repr, on_right))} is also a covariate")

    try:
        # context={}: only the data's columns and formulaic's transforms are in scope, not
        # this function's local names
        matrices = model_matrix(parsed, data, context={})
    except FormulaicError as err:
        raise fail(_first_line(err)) from err

    response_kinds = [kind for kind, _ in matrices.model_spec.lhs.encoder_state.values()]
    if any(kind.value != "numerical" for kind in response_kinds) or matrices.lhs.shape[1] != 1:
        raise fail(f"the response {str(lhs)!r} is not numeric; the experts are Gaussian "
                   "regressions of a real-valued response")
    if len(matrices.lhs) == 0:
        raise fail("every row has a missing value in a variable of the formula")

    rhs = matrices.rhs if isinstance(matrices.rhs, tuple) else (matrices.rhs,)
    rhs_specs = _rhs_specs(matrices.model_spec)
    names = [_covariate_columns(spec) for spec in rhs_specs]
    columns = {}
    for part, part_names in zip(rhs, names):
        for name in part_names:
            values = part[name].to_numpy(dtype="float64")
            # a column in both parts is one column of x: formulaic names it by its coding, so
            # equal names should carry equal values; check rather than trust it
            if name in columns and not np.array_equal(columns[name], values, equal_nan=True):
                raise fail(f"column {name!r} differs between the experts' and the gate's part")
            columns[name] = values
    x = pd.DataFrame(columns, index=matrices.lhs.index, dtype="float64")
    expert_covariates = tuple(names[0])
    gate_covariates = tuple(names[1]) if len(names) == 2 else expert_covariates
    y = matrices.lhs.iloc[:, 0].to_numpy(dtype="float64", copy=True)
    y.flags.writeable = False
    return ModelFrame(formula=formula, response=str(matrices.lhs.columns[0]), y=y, x=x,
                      expert_covariates=expert_covariates, gate_covariates=gate_covariates,
                      n_dropped=len(data) - len(y), spec=matrices.model_spec)


def variables(formula: str) -> tuple[list[str], list[str]]:
    """The data variables a formula reads: (the response's, the covariates'), each sorted.

    For readers that load only those columns (``moetheory fit --formula``). Variables used only
    inside formulaic's stateful transforms (``poly(x, 2)``, ``center(x)``) are not reported by
    formulaic and so not here.

    Examples
    --------
    >>> variables("np.log(y) ~ x + I(x**2) | z")
    (['y'], ['x', 'z'])
    """
    if not isinstance(formula, str) or "~" not in formula:
        raise ValueError(f"formula {formula!r}: expected 'response ~ experts' terms | gate's terms'")
    try:
        parsed = Formula(formula)
    except FormulaicError as err:
        raise ValueError(f"formula {formula!r}: {_first_line(err)}") from None
    response = sorted(map(str, parsed.lhs.required_variables))
    rest = sorted(set(map(str, parsed.required_variables)) - set(response))
    return response, rest


def _rhs_specs(spec: ModelSpecs) -> tuple[ModelSpec, ...]:
    """The right-hand side's model specs as a tuple (one per part; formulaic gives a bare
    ModelSpec when there is no ``|``)."""
    return spec.rhs if isinstance(spec.rhs, tuple) else (spec.rhs,)


def _covariate_columns(spec: ModelSpec) -> list[str]:
    """The columns of a part, less the intercept: found by its term (degree 0) rather than by
    the name ``Intercept``, which a data column may also have."""
    return [column for term in spec.structure if term.term.degree > 0 for column in term.columns]


def _required(specs) -> set[str]:
    """Names of the data variables that the model specs evaluate."""
    return set().union(*(map(str, spec.required_variables) for spec in specs))


def _first_line(err: BaseException) -> str:
    """formulaic's messages may add lines (a caret under the faulty operator): keep the first."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__
