"""Which stages a study's run would train, known in the driver before the run starts.

A run that needs a stage another running trial is training waits for that stage's lock, holding a
worker that does nothing; a final run that trains everything takes minutes where one whose stages
are all stored takes seconds. The study's queue (:mod:`harness.tune.queue`) avoids the first and
orders by the second, from :class:`StageKeys`: a dry run of the pipeline against a
:class:`~harness.engine.store.DryRunStore` gives the exact key of every stage it asks for (the same
``_obtain`` code computes them as in a real run), and the store says which are stored.

Durations come from the store's own records (``stage.json`` ``seconds``), per stage name; an estimate,
used only to put long runs first.
"""

from __future__ import annotations

import json
import logging
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.tune.folds import fold_runs
from harness.tune.study import StudySpec

logger = logging.getLogger(__name__)

StageKey = tuple[str, str]
"""(stage name, stage key): the directory ``<stage>-<key>`` of the stage store."""


@dataclass
class StageKeys:
    """Stage keys of a study's runs (``spec``'s configs on ``data_dir``, stage store at ``store``).

    Picklable (Tune checkpoints the searcher that holds it); the loaded dataset index is a cache
    that is not pickled. A run whose keys cannot be computed (e.g. a plug-in pipeline that works
    before it asks for a stage) has none: it is scheduled as if it trained nothing shared.
    """

    spec: StudySpec
    data_dir: Path | None
    store: Path
    _data: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_data": {}}

    def asked(self, pipeline: str, overrides: dict[str, Any], folds: int | None = None) -> list[tuple[str, str, bool]]:
        """(stage, key, stored) of every stage a run of ``pipeline`` with ``overrides`` asks for, over its
        cross-validation folds (``folds``: default the spec's ``selection.folds``)."""
        from harness.pipelines.base import create_pipeline

        out: list[tuple[str, str, bool]] = []
        k = self.spec.selection.folds if folds is None else folds
        try:
            for _, fold_params in fold_runs(Path("."), k):
                config = self.spec.run_config(pipeline, {**overrides, **fold_params}, self.data_dir)
                ctx = self._context(config)
                create_pipeline(pipeline).train(ctx)
                out.extend(ctx.store.asked)
        except Exception as e:  # noqa: BLE001 - scheduling must not fail a study; the run itself reports errors
            logger.debug("stage keys of a %s run with %s unknown: %s", pipeline, overrides, e)
            return []
        return out

    def to_train(self, pipeline: str, overrides: dict[str, Any], folds: int | None = None) -> frozenset[StageKey]:
        """Stages the run would train now (asked for and not stored)."""
        return frozenset((s, k) for s, k, stored in self.asked(pipeline, overrides, folds) if not stored)

    def stored(self, stage: str, key: str) -> bool:
        return (self.store / f"{stage}-{key}" / "stage.json").is_file()

    def seconds(self) -> dict[str, float]:
        """Median training seconds per stage name over the store's records (empty before any training)."""
        seen: dict[str, list[float]] = {}
        for path in self.store.glob("*/stage.json"):
            try:
                record = json.loads(path.read_text())
                seen.setdefault(str(record["stage"]), []).append(float(record["seconds"]))
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return {name: statistics.median(v) for name, v in seen.items()}

    def _context(self, config: Any) -> Any:
        import torch

        from harness.engine.device import DeviceInfo
        from harness.engine.store import DryRunStore
        from harness.pipelines.context import RunContext, load_dataset

        data = json.dumps(config.data.model_dump(mode="json"), sort_keys=True, default=str)
        if data not in self._data:
            _, index, split = load_dataset(config, self.data_dir, check_data=False)
            self._data[data] = (index, split, {})
        index, split, content = self._data[data]
        info = DeviceInfo(device=torch.device("cpu"), amp=False, channels_last=False, pin_memory=False)
        ctx = RunContext(config=config, info=info, store=DryRunStore(self.store), index=index, split=split,
                         _content=content.get("hash"))
        content["hash"] = ctx.content_hash  # it reads every file's metadata: once per dataset
        return ctx


def estimate_seconds(to_train: frozenset[StageKey], seconds: dict[str, float], *, default: float) -> float:
    """Training seconds of a run that trains ``to_train``: each stage's median from ``seconds`` (a stage
    never trained yet: ``default``). A run that trains nothing costs 0 (its evaluation is not counted)."""
    return sum(seconds.get(stage, default) for stage, _ in to_train)
