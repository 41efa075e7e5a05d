"""The metric registry: one declaration per metric, read by ``run_metrics``, the bootstrap, Table 9,
its exports and the study objectives.

A metric is a :class:`Metric` (key, display name, direction, bounds, Table 9 placement, the paper's
values, its paired test) plus one function ``fn(sample) -> array``. The function receives a
:class:`Sample`: the per-image columns of a predictions table, resampled ``B`` times (``B = 1`` for
the point estimate, ``B = n_boot`` in the bootstrap), and returns one value per resample. So the
same function serves ``metrics.json``, the bootstrap CI and Table 9::

    @metric(key="accuracy", name="Accuracy", nan_policy="never NaN")
    def accuracy(s: Sample) -> np.ndarray:
        cm = s.confusion
        return np.trace(cm, axis1=-2, axis2=-1) / cm.sum(axis=(-2, -1))

The paper's metrics are declared in :mod:`harness.metrics.catalog`, imported with the package.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from harness.errors import ConfigError
from harness.metrics.classification import N_CLASSES, check_labels
from harness.metrics.end_to_end import is_lesion
from harness.registry import Registry

Direction = Literal["max", "min"]
LABEL_COLUMNS: tuple[str, ...] = ("label", "pred_label")
AGGREGATES: tuple[str, ...] = ("mean",)
"""How a metric is combined over runs (seeds); the across-seed CI is the t interval of the mean."""


def _labels(values: Any, name: str, n_classes: int) -> np.ndarray:
    v = np.asarray(values)
    try:
        return check_labels(v, v, n_classes)[0]
    except ValueError as e:
        raise ValueError(f"column {name}: {e}".replace("y_true", name)) from None


class Sample:
    """Per-image columns, resampled: ``sample[col]`` is a ``B x n`` array (row b = resample b).

    ``columns`` maps names to 1-D per-image values of the ``n`` evaluated images; ``idx``
    (``B x n`` integer indices) selects the resamples, ``None`` meaning the images as they are
    (``B = 1``). Resampled columns and shared intermediates (the confusion matrices) are computed
    once per sample and memoised on it, so ten classification metrics cost one ``np.bincount``.
    """

    def __init__(self, columns: Mapping[str, Any], idx: np.ndarray | None = None, n_classes: int = N_CLASSES):
        sizes = {len(v) for v in columns.values()}
        if len(sizes) > 1:
            raise ValueError(f"columns differ in length: {sorted(sizes)}")
        self.n = sizes.pop() if sizes else 0
        if self.n == 0:
            raise ValueError("no images: cannot compute metrics on an empty sample")
        self.columns = columns
        self.idx = np.atleast_2d(np.arange(self.n) if idx is None else np.asarray(idx))
        self.n = int(self.idx.shape[1])  # images per resample (a paired permutation indexes 2n stacked rows)
        self.n_classes = n_classes
        self._memo: dict[str, Any] = {}

    @property
    def n_resamples(self) -> int:
        return int(self.idx.shape[0])

    def has(self, *names: str) -> bool:
        return all(n in self.columns for n in names)

    def cached(self, name: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per sample under ``name`` (for intermediates several metrics share)."""
        if name not in self._memo:
            self._memo[name] = compute()
        return self._memo[name]

    def base(self, name: str) -> np.ndarray:
        """The 1-D column as given (not resampled), float, or the validated labels as int."""
        if name not in self.columns:
            raise KeyError(f"column {name!r} is needed but the sample has only {sorted(self.columns)}")
        if name in LABEL_COLUMNS:
            return self.cached(f"base:{name}", lambda: _labels(self.columns[name], name, self.n_classes))
        return self.cached(f"base:{name}", lambda: np.asarray(self.columns[name], dtype=float))

    def __getitem__(self, name: str) -> np.ndarray:
        return self.cached(f"col:{name}", lambda: self.base(name)[self.idx])

    @property
    def confusion(self) -> np.ndarray:
        """``B x K x K`` confusion matrices (rows true, columns predicted)."""

        def compute() -> np.ndarray:
            k, b = self.n_classes, self.n_resamples
            codes = self["label"] * k + self["pred_label"] + (np.arange(b) * k * k)[:, None]
            return np.bincount(codes.ravel(), minlength=b * k * k).reshape(b, k, k)

        return self.cached("confusion", compute)

    @property
    def lesion(self) -> np.ndarray:
        """``B x n``: true label Benign or Malignant."""
        return self.cached("lesion", lambda: is_lesion(self["label"]))


MetricFn = Callable[[Sample], np.ndarray]


@dataclass(frozen=True, eq=False)
class Metric:
    """One metric, declared once. ``fn`` computes it from a :class:`Sample` holding at least the
    columns in ``needs`` (NaN when one is missing); ``bounds`` are its range (the across-seed CI is
    clipped to them); ``section``/``order`` place it in Table 9 (``None``: not there; rows sort by
    ``order``); ``paper`` maps a pipeline name ("a", "b") to the paper's value; ``aggregate`` is how
    runs (seeds) combine; ``test`` names the paired test strategy (:mod:`harness.metrics.paired`)
    of its Table 9 row; ``nan_policy`` says when it is NaN."""

    key: str
    name: str
    fn: MetricFn
    needs: tuple[str, ...] = ("label", "pred_label")
    direction: Direction = "max"
    bounds: tuple[float, float] = (0.0, 1.0)
    section: str | None = None
    order: float | None = None
    percent: bool = False
    paper: Mapping[str, float] = field(default_factory=dict)
    aggregate: str = "mean"
    test: str | None = None
    nan_policy: str = ""

    def __post_init__(self) -> None:
        where = f"metric {self.key!r}"
        problems = []
        if self.direction not in ("max", "min"):
            problems.append(f"{where}: direction must be 'max' or 'min', but got {self.direction!r}.")
        lo, hi = self.bounds
        if not lo < hi:
            problems.append(f"{where}: bounds must be (low, high) with low < high, but got {self.bounds}.")
        if (self.section is None) != (self.order is None):
            problems.append(f"{where}: section and order go together (both set for Table 9, both None), "
                            f"but got section={self.section!r}, order={self.order!r}.")
        if self.aggregate not in AGGREGATES:
            problems.append(f"{where}: aggregate must be one of {AGGREGATES}, but got {self.aggregate!r}.")
        for pipeline, v in self.paper.items():
            if pipeline != pipeline.lower() or not lo <= v <= hi:
                problems.append(f"{where}: paper values are keyed by lowercase pipeline name and lie in "
                                f"{self.bounds}, but got paper[{pipeline!r}]={v}.")
        if not self.nan_policy:
            problems.append(f"{where}: nan_policy must say when the metric is NaN (or 'never NaN').")
        if problems:
            raise ConfigError(problems)

    @property
    def in_table9(self) -> bool:
        return self.section is not None

    @property
    def best(self) -> float:
        """The best value the bounds allow (``inf`` when unbounded on that side)."""
        return self.bounds[1] if self.direction == "max" else self.bounds[0]

    def compute(self, columns: Mapping[str, Any] | Sample, n_classes: int = N_CLASSES) -> float:
        """The metric of one evaluation (``columns``: name -> per-image values); NaN when a
        column it needs is missing."""
        s = columns if isinstance(columns, Sample) else Sample(columns, n_classes=n_classes)
        if not s.has(*self.needs):
            return float("nan")
        return float(np.asarray(self.fn(s), dtype=float).ravel()[0])


class _MetricRegistry(Registry[Metric]):
    def unregister(self, key: str) -> Metric:
        self.get(key)
        return self._items.pop(key)

    def values(self) -> list[Metric]:
        return list(self._items.values())  # declaration order


METRICS = _MetricRegistry("metric")


def register(m: Metric) -> Metric:
    """Add ``m`` to the registry; a key registered twice is an error."""
    return METRICS.register(m.key)(m)


def metric(**declaration: Any) -> Callable[[MetricFn], MetricFn]:
    """Decorator form of :func:`register`: ``@metric(key=..., name=..., ...)`` over the function."""

    def deco(fn: MetricFn) -> MetricFn:
        register(Metric(fn=fn, **declaration))
        return fn

    return deco


def unregister(key: str) -> Metric:
    """Remove a metric (tests that register a toy metric clean up with this)."""
    return METRICS.unregister(key)


def get_metric(key: str, field: str | None = None) -> Metric:
    """The metric ``key``; unknown keys raise :class:`ConfigError` with "did you mean"."""
    return METRICS.get(key, field)


def list_metrics(table9: bool | None = None, pattern: str = "*") -> list[Metric]:
    """Registered metrics matching ``pattern``: in declaration order, or with ``table9=True`` only
    Table 9's, in row order (``table9=False``: only those not in Table 9)."""
    found = [m for m in METRICS.values() if fnmatch.fnmatch(m.key, pattern)]
    if table9 is None:
        return found
    found = [m for m in found if m.in_table9 == table9]
    return sorted(found, key=lambda m: m.order or 0) if table9 else found


def metric_direction(key: str) -> Direction:
    """"max" or "min": how a study objective on ``key`` is optimised."""
    return get_metric(key).direction


def compute_metrics(sample: Sample, metrics: Iterable[Metric] | None = None) -> dict[str, np.ndarray]:
    """Each metric's ``B`` values on ``sample``; NaN for a metric whose column is missing."""
    out = {}
    for m in list_metrics() if metrics is None else metrics:
        if sample.has(*m.needs):
            out[m.key] = np.asarray(m.fn(sample), dtype=float).reshape(sample.n_resamples)
        else:
            out[m.key] = np.full(sample.n_resamples, np.nan)
    return out
