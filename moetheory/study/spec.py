"""Declarative Monte Carlo studies (DESIGN.md §1 job 2, §5).

A :class:`StudySpec` is frozen data: the truth (an :class:`~moetheory.spec.MoESpec` plus its
parameters), one or more fitted models (:class:`FitSpec`, one panel of a figure each, with its
own sample-size grid and number of EM starts), the estimator options, the covariate design,
the number of replicates, the seed and the losses to record. It has a stable content hash
(sha256 of canonical JSON) and round-trips through JSON and TOML.

The unit of work and of caching is a *cell*: one fitted model at one sample size n, all
replicates. A cell is identified by the hash of everything that can change its numbers
(:meth:`StudySpec.panel_hash`), which deliberately leaves out the *list* of sample sizes: the
random key of replicate r at size n is derived from (seed, n, r) only, so adding sizes never
changes (or recomputes) an existing cell.

Examples
--------
>>> from moetheory.params import MoEParams
>>> truth = MoEParams.create([-8., 0.], [[25.], [0.]], [[-20.], [20.]], [15., -5.], [.09, .16])
>>> s = StudySpec(name="demo", truth_spec=MoESpec(2, 1), truth=truth,
...               fits=(FitSpec("k2", MoESpec(2, 1), sizes=(500, 1000)),),
...               design=DesignSpec("grid", low=0.0, high=1.0), replicates=4)
>>> StudySpec.from_toml(s.to_toml()) == s
True
>>> len(s.hash())
64
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from moetheory.designs import DESIGNS
from moetheory.em.config import EMConfig
from moetheory.params import ARRAY_FIELDS, MoEParams, check_params
from moetheory.spec import TRANSLATIONS, MoESpec, gate_translation
from moetheory.study.store import content_hash as _sha

#: losses a study can record per replicate (see :mod:`moetheory.study.runner`)
LOSSES = ("voronoi", "voronoi_pinned", "voronoi_identified", "voronoi_region", "gate",
          "hellinger")
COORDS = ("raw", "identified")

#: bump when the meaning of a field changes: invalidates every cache. 3: the estimator is an
#: EMConfig (certified MLE pipeline); padding options moved to the study.
SPEC_VERSION = 3
#: Bump when the computation of a stored metric changes (cells' identity; old cells are
#: recomputed, never mixed in). 2: matched errors pin only what the fit's translation frees.
#: 3: D_2 cells needing an unknown r̄(m) are scored with the bound r̄(m) >= 7 (were NaN), the
#: activation gates' D_2 exponents follow the PDEs that hold, ``rbar_bound_m`` column.
#: 4: the Hellinger distance of a top-K gate selecting by β_1ᵀx in d = 2 integrates over the
#: active sets' breakpoints (polar quadrature, ``moetheory.study.density.cone_nodes``; the fixed
#: 11 × 11 grid had nodes on the truth's region boundaries).
METRICS_VERSION = 4


def integer_sizes(values) -> tuple:
    """Sorted distinct sample sizes: ``values`` rounded to integers, shape (m,) as a tuple.

    Examples
    --------
    >>> integer_sizes([1000.4, 999.6, 2000.0])
    (1000, 2000)
    """
    import numpy as np

    return tuple(int(v) for v in np.unique(np.round(np.asarray(values, dtype=float))))


def _moespec_dict(s: MoESpec) -> dict:
    return s.to_dict()


def _moespec_from(d, where: str) -> MoESpec:
    """A MoESpec from a declaration table; unknown or missing keys are named with ``where``."""
    missing = [k for k in ("n_experts", "dim") if isinstance(d, dict) and k not in d]
    if missing:
        raise ValueError(f"{where} is missing {missing} (a MoESpec needs n_experts and dim)")
    return _options(MoESpec, where, d)


def _as_tuple(name, value) -> tuple:
    """A declaration list (a single scalar is a mistake worth naming, not iterating)."""
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
        raise ValueError(f"{name} must be a list; got {value!r}")
    return tuple(value)


def _options(cls, name: str, d) -> object:
    """``cls(**d)`` for a declaration table, naming the table and its valid keys on error."""
    if not isinstance(d, dict):
        raise TypeError(f"{name} must be a table of {cls.__name__} fields; got {type(d).__name__}")
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ValueError(f"unknown {name} field(s) {unknown}; expected some of {known}")
    return cls(**d)


def _freeze(value):
    """Nested lists -> nested tuples of floats (hashable)."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        return float(arr)
    return tuple(_freeze(v) for v in arr)


def _check_int(name, value, minimum, maximum=None):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum \
            or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be an integer {bound}; got {value!r}")
    return int(value)


def _check_float(name, value) -> float:
    # float(True) is 1.0: a boolean (or a string) where a number belongs is a mistake to name
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer,
                                                                     np.floating)):
        raise ValueError(f"{name} must be a number; got {value!r}")
    return float(value)


def _check_bool(name, value) -> bool:
    # bool("false") is True: only real booleans are accepted
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be true or false; got {value!r}")
    return bool(value)


@dataclass(frozen=True)
class DesignSpec:
    """Covariate design: a name of :data:`moetheory.designs.DESIGNS` and its options.

    ``low``/``high`` bound ``grid`` and ``uniform`` designs, ``scale`` is the sd of ``gaussian``
    designs and ``radius`` that of ball designs (all scalars, stored as float).

    Examples
    --------
    >>> DesignSpec("grid", low=0, high=1).to_dict()
    {'name': 'grid', 'low': 0.0, 'high': 1.0, 'scale': 1.0, 'radius': 1.0}
    """

    name: str = "grid"
    low: float = -1.0
    high: float = 1.0
    scale: float = 1.0
    radius: float = 1.0

    def __post_init__(self):
        if self.name not in DESIGNS:
            raise ValueError(f"design name must be one of {DESIGNS}; got {self.name!r}")
        for f in ("low", "high", "scale", "radius"):
            v = _check_float(f"design {f}", getattr(self, f))
            if not math.isfinite(v) or (f in ("scale", "radius") and v <= 0):
                kind = "finite and > 0" if f in ("scale", "radius") else "finite"
                raise ValueError(f"design {f} must be {kind}; got {v}")
            object.__setattr__(self, f, v)
        if self.name in ("grid", "uniform") and not self.high > self.low:
            raise ValueError(f"design high must exceed low; got low={self.low}, high={self.high}")

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class FitSpec:
    """One fitted model (one panel): its structure, sample sizes and number of EM starts.

    label : short name used in paths, tables and legends;
    spec : the fitted :class:`MoESpec`;
    sizes : the sample-size grid (ints, sorted, unique);
    n_starts : starts per replicate (the estimator's ``n_init``), the best estimate is kept;
    replicates : replicates of this model (default: the study's);
    translation / coords : how the Voronoi loss and the matched errors remove the gate's
        unidentifiable shift (see :func:`moetheory.losses.voronoi_loss`); the default translation
        is the gate's own (:func:`moetheory.losses.gate_translation`: ``"bias"`` for the
        activation gate, else ``"infimum"``);
    expected_rate : theoretical slope of the loss (drawn in figures; not hashed); None (or NaN,
        as TOML writes it) for no theoretical slope;
    title : panel title (not hashed);
    estimator : an :class:`~moetheory.em.config.EMConfig` (or a name of one, e.g.
        ``"official"``) for this model instead of the study's — e.g. the paper's protocol beside
        the certified MLE on the same data.

    Examples
    --------
    >>> fit = FitSpec("k3", MoESpec(3, 1), sizes=(1000, 500, 500), n_starts=2)
    >>> fit.sizes, fit.spec.n_experts
    ((500, 1000), 3)
    """

    label: str
    spec: MoESpec
    sizes: tuple = ()
    n_starts: int = 1
    replicates: int | None = None
    translation: str | None = None
    coords: str = "raw"
    expected_rate: float | None = -0.5
    title: str = ""
    estimator: EMConfig | None = None

    def __post_init__(self):
        if isinstance(self.estimator, (str, dict)):
            object.__setattr__(self, "estimator", EMConfig.from_dict(
                self.estimator, f"fit {self.label!r} estimator"))
        if self.estimator is not None and not isinstance(self.estimator, EMConfig):
            raise TypeError(f"fit estimator must be an EMConfig or a name; got "
                            f"{type(self.estimator).__name__}")
        if not isinstance(self.label, str) or not self.label or not all(
                c.isalnum() or c in "-_" for c in self.label):
            raise ValueError(f"fit label must be a non-empty string of letters, digits, '-' or '_'; "
                             f"got {self.label!r}")
        if not isinstance(self.spec, MoESpec):
            raise TypeError(f"fit spec must be a MoESpec; got {type(self.spec).__name__}")
        sizes = tuple(sorted({_check_int("sizes entry", int(n) if isinstance(n, float) and
                                         float(n).is_integer() else n, 2)
                              for n in _as_tuple(f"fit {self.label!r} sizes", self.sizes)}))
        if not sizes:
            raise ValueError(f"fit {self.label!r}: sizes must contain at least one sample size")
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "n_starts", _check_int("n_starts", self.n_starts, 1))
        if self.replicates is not None:
            object.__setattr__(self, "replicates", _check_int("replicates", self.replicates, 1))
        if self.translation is None:
            object.__setattr__(self, "translation", gate_translation(self.spec))
        if self.translation not in TRANSLATIONS:
            raise ValueError(f"translation must be one of {TRANSLATIONS}; got {self.translation!r}")
        if self.coords not in COORDS:
            raise ValueError(f"coords must be one of {COORDS}; got {self.coords!r}")
        if self.expected_rate is not None:
            rate = float(self.expected_rate)
            # NaN is how a TOML file says None (TOML has no null): no theoretical slope
            object.__setattr__(self, "expected_rate", None if math.isnan(rate) else rate)

    def to_dict(self, with_sizes=True) -> dict:
        d = {"label": self.label, "spec": _moespec_dict(self.spec), "n_starts": self.n_starts,
             "replicates": self.replicates,
             "translation": self.translation, "coords": self.coords,
             "expected_rate": self.expected_rate, "title": self.title,
             "estimator": None if self.estimator is None else self.estimator.to_dict()}
        if with_sizes:
            d["sizes"] = list(self.sizes)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FitSpec":
        if not isinstance(d, dict):
            raise TypeError(f"each fit must be a table; got {type(d).__name__} {d!r}")
        d = dict(d)
        spec = d.pop("spec", None)
        if spec is None:  # flat TOML form: MoESpec fields inline
            spec = {k: d.pop(k) for k in list(d) if k in {f.name for f in fields(MoESpec)}}
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown fit field(s) {sorted(unknown)}; expected some of {sorted(known)}")
        label = d.get("label", "?")
        if not spec:
            raise ValueError(f"fit {label!r} has no model: give a 'spec' table (n_experts, dim, "
                             "gate, ...) or its fields inline")
        return cls(spec=_moespec_from(spec, f"fit {label!r} spec"), **d)


@dataclass(frozen=True)
class StudySpec:
    """A complete, frozen Monte Carlo study declaration (see the module docstring).

    ``truth`` is a :class:`~moetheory.params.MoEParams` with ``beta0`` shape (k*,) and ``beta1``
    shape (k*, d) (stored as nested tuples so the spec is hashable); every fit must have the
    truth's d and k >= k*.

    Examples
    --------
    >>> from moetheory.params import MoEParams
    >>> truth = MoEParams.create([0., 0.], [[1.], [-1.]], [[1.], [-1.]], [0., 1.], [1., 1.])
    >>> s = StudySpec(name="tiny", truth_spec=MoESpec(2, 1), truth=truth,
    ...               fits=(FitSpec("k2", MoESpec(2, 1), sizes=(100, 200)),), replicates=2)
    >>> s.cells()
    [('k2', 100), ('k2', 200)]
    >>> StudySpec.from_json(s.to_json()) == s
    True
    """

    name: str
    truth_spec: MoESpec
    truth: MoEParams | tuple
    fits: tuple
    design: DesignSpec = field(default_factory=DesignSpec)
    estimator: EMConfig = field(default_factory=EMConfig)
    replicates: int = 10
    seed: int = 0
    losses: tuple = ("voronoi",)
    description: str = ""
    bucket_ratio: float = 1.5
    buckets: tuple = ()

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name or not all(
                c.isalnum() or c in "-_." for c in self.name) or self.name.startswith("."):
            # it names a cache folder: no path separators, and no '.', '..' or hidden folders
            raise ValueError(f"study name must be letters, digits, '-', '_' or '.', not starting "
                             f"with '.'; got {self.name!r}")
        if not isinstance(self.truth_spec, MoESpec):
            raise TypeError(f"truth_spec must be a MoESpec; got {type(self.truth_spec).__name__}")
        truth = self.truth
        if isinstance(truth, dict):
            truth = MoEParams.from_dict(truth)
        if isinstance(truth, MoEParams):
            truth = MoEParams.create(*truth[:6], extra=truth.extra)  # validate, float64
            check_params(self.truth_spec, truth)
            pairs = tuple((name, _freeze(getattr(truth, name))) for name in ARRAY_FIELDS)
            if truth.extra:  # (absent for gates without extra arrays: their hashes are unchanged)
                pairs += (("extra", tuple((k, _freeze(v)) for k, v in truth.extra.items())),)
            truth = pairs
        object.__setattr__(self, "truth", tuple(truth))
        fits = tuple(self.fits) if not isinstance(self.fits, FitSpec) else (self.fits,)
        if not fits:
            raise ValueError("fits must declare at least one fitted model")
        labels = [f.label for f in fits]
        if len(set(labels)) != len(labels):
            raise ValueError(f"fit labels must be unique; got {labels}")
        for f in fits:
            if not isinstance(f, FitSpec):
                raise TypeError(f"fits entries must be FitSpec; got {type(f).__name__}")
            if f.spec.dim != self.truth_spec.dim:
                raise ValueError(f"fit {f.label!r} has dim={f.spec.dim} but the truth has "
                                 f"dim={self.truth_spec.dim}")
            if f.spec.n_experts < self.truth_spec.n_experts:
                raise ValueError(f"fit {f.label!r} has k={f.spec.n_experts} < k*="
                                 f"{self.truth_spec.n_experts}: under-fitted models are not supported")
        object.__setattr__(self, "fits", fits)
        if self.design.name == "grid" and self.truth_spec.dim != 1:
            raise ValueError("design 'grid' needs dim=1")
        if self.design.name == "gate" and not self.truth_spec.gate_family.joint:
            raise ValueError(f"design 'gate' draws x from the truth's gate, which must model x "
                             f"(e.g. gate='gaussian'); got gate={self.truth_spec.gate_name!r}")
        object.__setattr__(self, "replicates", _check_int("replicates", self.replicates, 1))
        object.__setattr__(self, "seed", _check_int("seed", self.seed, 0, 2 ** 63 - 1))
        losses = (self.losses,) if isinstance(self.losses, str) else tuple(self.losses)
        for loss in losses:
            if loss not in LOSSES:
                raise ValueError(f"losses entries must be in {LOSSES}; got {loss!r}")
        if not losses:
            raise ValueError(f"losses must name at least one of {LOSSES}")
        object.__setattr__(self, "losses", losses)
        if isinstance(self.estimator, (str, dict)):
            object.__setattr__(self, "estimator", EMConfig.from_dict(self.estimator))
        if not isinstance(self.estimator, EMConfig):
            raise TypeError(f"estimator must be an EMConfig (or a name or table of one); got "
                            f"{type(self.estimator).__name__}")
        ratio = _check_float("bucket_ratio", self.bucket_ratio)
        if not (math.isfinite(ratio) and ratio >= 1.0):
            raise ValueError(f"bucket_ratio must be >= 1 (1 means: no padding); got {ratio}")
        object.__setattr__(self, "bucket_ratio", ratio)
        object.__setattr__(self, "buckets", tuple(sorted(_check_int("buckets entry", b, 1)
                                                         for b in _as_tuple("buckets", self.buckets))))

    # ------------------------------------------------------------------ accessors
    @property
    def truth_params(self) -> MoEParams:
        d = dict(self.truth)
        extra = {k: v for k, v in d.pop("extra", ())}
        return MoEParams.create(**d, extra=extra or None)

    def fit(self, label: str) -> FitSpec:
        for f in self.fits:
            if f.label == label:
                return f
        raise KeyError(f"study {self.name!r} has no fit {label!r}; fits: {[f.label for f in self.fits]}")

    def estimator_of(self, label: str) -> EMConfig:
        """The estimator of fit ``label`` (its own, else the study's)."""
        est = self.fit(label).estimator
        return self.estimator if est is None else est

    def replicates_of(self, label: str) -> int:
        """Replicates of fit ``label`` (its own count, else the study's)."""
        r = self.fit(label).replicates
        return self.replicates if r is None else r

    def cells(self):
        """All (fit label, n) pairs, in run order."""
        return [(f.label, n) for f in self.fits for n in f.sizes]

    def with_(self, **changes) -> "StudySpec":
        return replace(self, **changes)

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict:
        return {
            "spec_version": SPEC_VERSION,
            "name": self.name,
            "description": self.description,
            "truth": {**_moespec_dict(self.truth_spec),
                      "params": {k: ({kk: _listify(vv) for kk, vv in v} if k == "extra" else
                                     _listify(v)) for k, v in self.truth}},
            "fits": [f.to_dict() for f in self.fits],
            "design": self.design.to_dict(),
            "estimator": self.estimator.to_dict(),
            "replicates": self.replicates,
            "seed": self.seed,
            "losses": list(self.losses),
            "bucket_ratio": self.bucket_ratio,
            "buckets": list(self.buckets),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "StudySpec":
        if not isinstance(d, dict):
            raise TypeError(f"a study declaration must be a table of fields (name, truth, fits, ...); "
                            f"got a {type(d).__name__}")
        d = dict(d)
        version = d.pop("spec_version", SPEC_VERSION)
        if version != SPEC_VERSION:
            raise ValueError(f"study spec_version {version} is not supported (this package writes "
                             f"{SPEC_VERSION})")
        known = {"name", "description", "truth", "fits", "design", "estimator", "replicates",
                 "seed", "losses", "bucket_ratio", "buckets"}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown study field(s) {sorted(unknown)}; expected some of {sorted(known)}")
        for req in ("name", "truth", "fits"):
            if req not in d:
                raise ValueError(f"study declaration is missing {req!r}")
        truth = dict(d["truth"])
        if "params" not in truth:
            raise ValueError("study truth needs a 'params' table (beta0, beta1, a, b, var[, tau]) "
                             "beside the MoESpec fields (n_experts, dim, gate, ...)")
        params = truth.pop("params")
        spec_fields = {f.name for f in fields(MoESpec)}
        unknown = set(truth) - spec_fields
        if unknown:
            raise ValueError(f"unknown truth field(s) {sorted(unknown)}; expected MoESpec fields "
                             f"{sorted(spec_fields)} and a 'params' table")
        truth_spec = _moespec_from(truth, "truth")
        fits = d["fits"]
        if isinstance(fits, dict):
            raise ValueError("fits must be a list of tables: write [[fits]] (an array of tables) "
                             "for each fitted model, not [fits]")
        return cls(
            name=d["name"], description=d.get("description", ""), truth_spec=truth_spec,
            truth=MoEParams.from_dict(params),
            fits=tuple(FitSpec.from_dict(f) for f in _as_tuple("fits", fits)),
            design=_options(DesignSpec, "design", d.get("design", {})),
            estimator=EMConfig.from_dict(d.get("estimator", {})),
            replicates=d.get("replicates", 10), seed=d.get("seed", 0),
            losses=tuple(d.get("losses", ("voronoi",))),
            bucket_ratio=d.get("bucket_ratio", 1.5), buckets=d.get("buckets", ()))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "StudySpec":
        return cls.from_dict(json.loads(text))

    def to_toml(self) -> str:
        return _to_toml(self.to_dict())

    @classmethod
    def from_toml(cls, text: str) -> "StudySpec":
        import tomllib

        return cls.from_dict(tomllib.loads(text))

    @classmethod
    def load(cls, path) -> "StudySpec":
        """Read a ``.toml`` or ``.json`` declaration."""
        import tomllib

        path = Path(path)
        if path.suffix not in (".toml", ".json"):
            raise ValueError(f"study file must end in .toml or .json; got {path.name!r}")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
        try:
            return cls.from_toml(text) if path.suffix == ".toml" else cls.from_json(text)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: not valid {path.suffix[1:].upper()}: {err}") from None
        except (ValueError, TypeError) as err:
            raise type(err)(f"{path}: {err}") from None

    # ------------------------------------------------------------------ hashes
    def hash(self) -> str:
        """sha256 of the canonical JSON of the whole declaration."""
        return _sha(self.to_dict())

    def panel_dict(self, label: str, metrics_version: int = METRICS_VERSION) -> dict:
        """Everything that determines the numbers of a cell of fit ``label`` (no size list);
        ``metrics_version`` names an earlier version's cells (:func:`moetheory.study.runner.rescore_study`)."""
        d = self.to_dict()
        fit = self.fit(label).to_dict(with_sizes=False)
        fit.pop("expected_rate")
        fit.pop("title")
        d.pop("description")
        d.pop("fits")
        d.pop("name")
        d["fit"] = fit
        d["replicates"] = self.replicates_of(label)
        d["metrics_version"] = metrics_version
        fit.pop("replicates")
        return d

    def panel_hash(self, label: str, metrics_version: int = METRICS_VERSION) -> str:
        """Hash identifying the cells of fit ``label`` (independent of the size grid)."""
        return _sha(self.panel_dict(label, metrics_version))


def _listify(v):
    if isinstance(v, tuple):
        return [_listify(x) for x in v]
    return v


# ---------------------------------------------------------------------------- TOML writer
def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _toml_table(d: dict, prefix: str, out: list) -> None:
    # TOML has no null: a None is left out (its default is None), except expected_rate, whose
    # default is not None: it is written as nan, which FitSpec reads back as None
    d = {k: (math.nan if k == "expected_rate" and v is None else v) for k, v in d.items()}
    scalars = [(k, v) for k, v in d.items() if v is not None and not isinstance(v, dict)
               and not (isinstance(v, list) and v and all(isinstance(x, dict) for x in v))]
    for k, v in scalars:
        out.append(f"{k} = {_toml_value(v)}")
    for k, v in d.items():
        if isinstance(v, dict):
            out.append("")
            out.append(f"[{prefix}{k}]")
            _toml_table(v, f"{prefix}{k}.", out)
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for item in v:
                out.append("")
                out.append(f"[[{prefix}{k}]]")
                _toml_table(item, f"{prefix}{k}.", out)


def _to_toml(d: dict) -> str:
    out: list = []
    _toml_table(d, "", out)
    return "\n".join(out) + "\n"


def standard_grid(preset: str):
    """Sizes, replicates, starts and estimator of the topk/temperature presets (our design, OPEN).

    ``full``: 20 log-spaced n in [1e3, 1e5], 40 replicates, best of 3 starts; ``quick``: 5 n in
    [1e3, 8192], 8 replicates, 1 start. The estimator is the certified MLE from the ``paper``
    starts.

    Examples
    --------
    >>> sizes, reps, starts, est = standard_grid("quick")
    >>> sizes, reps, starts, est.init
    ((1000, 1692, 2862, 4842, 8192), 8, 1, 'paper')
    """
    import numpy as np

    est = EMConfig(init="paper")
    if preset == "full":
        return integer_sizes(np.geomspace(1000, 1e5, 20)), 40, 3, est
    if preset == "quick":
        return integer_sizes(np.geomspace(1000, 8192, 5)), 8, 1, est
    raise ValueError(f"preset must be one of ('quick', 'full'); got {preset!r}")
