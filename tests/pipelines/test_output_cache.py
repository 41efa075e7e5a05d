"""Evaluation-only variants read their stages' outputs from the output cache (issue 14), and the cache never
changes a result: a variant run with the cache filled by other variants writes byte-identical predictions,
metrics and masks to the same variant run with the cache emptied first."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main
from harness.config import load_run_config
from harness.engine.outputs import OUTPUTS
from harness.pipelines import stages
from harness.pipelines.run import run_trial

TINY = ["classifier.image_size=32", "segmenter.image_size=32", "joint.image_size=32", "classifier.optim.epochs=1",
        "segmenter.optim.epochs=1", "joint.optim.epochs=1", "runtime.threads=1", "runtime.device=cpu",
        "roi.lesion_min_pixels=2", "data.split=withtest", "data.test_fraction=0.25"]
VARIANTS = {"tta_off": ["eval.tta=false"], "threshold": ["eval.mask_threshold=0.3"],
            "rho": ["roi.margin=0.6"], "pixels": ["roi.lesion_min_pixels=30"]}
FILES = ("predictions.csv", "metrics.json", "metrics_test.json")


@pytest.fixture(scope="module")
def data(tmp_path_factory, make_dataset):
    return make_dataset(tmp_path_factory.mktemp("outcache") / "ds", n=24, size=[(48, 40), (40, 48)])


def run_files(run_dir: Path) -> dict[str, bytes]:
    """Predictions, metrics and predicted masks of a run."""
    out = {name: (run_dir / name).read_bytes() for name in FILES}
    out.update({f"pred_masks/{p.name}": p.read_bytes() for p in sorted((run_dir / "pred_masks").glob("*.png"))})
    return out


def empty_caches(store: Path) -> None:
    for d in store.glob(f"*/{OUTPUTS}"):
        shutil.rmtree(d)


class CountCalls:
    """Counts forward passes (``predict_heads`` calls) made by ``stage_outputs``."""

    def __init__(self, monkeypatch):
        self.calls = 0
        real = stages.predict_heads

        def counted(*args, **kwargs):
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(stages, "predict_heads", counted)


def run(data: Path, pipeline: str, extra: list[str], out: Path, store: Path):
    return run_trial(load_run_config(f"tiny-{pipeline}", [*TINY, *extra]), out, data_dir=data, store_root=store,
                     progress=False, check_data=False)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """pipeline -> (stage store, run directory) of one run per pipeline, which trained the stages and filled
    the output cache; tests work on a copy of the store."""
    root = tmp_path_factory.mktemp("trained")
    out = {}
    for pipeline in ("a", "b", "c"):
        result = run(data, pipeline, [], root / pipeline, root / f"store-{pipeline}")
        assert result.trained_stages
        out[pipeline] = (root / f"store-{pipeline}", result.run_dir)
    return out


def copied(trained, pipeline: str, tmp_path: Path) -> tuple[Path, Path]:
    store, run_dir = trained[pipeline]
    shutil.copytree(store, tmp_path / "store")
    return tmp_path / "store", run_dir


@pytest.mark.parametrize("pipeline", ["a", "b", "c"])
def test_cached_variants_equal_uncached_ones(data, trained, tmp_path, monkeypatch, pipeline):
    store, base_dir = copied(trained, pipeline, tmp_path)
    assert list(store.glob(f"*/{OUTPUTS}/*.npz")), "the first run filled the cache"
    calls = CountCalls(monkeypatch)
    names = [n for n in VARIANTS if pipeline == "b" or n in ("tta_off", "threshold")]
    for name in names:
        before = calls.calls
        result = run(data, pipeline, VARIANTS[name], tmp_path / "cached" / name, store)
        assert not result.trained_stages
        if name == "threshold" and pipeline != "b":
            assert calls.calls == before, "a mask-threshold variant of A or C runs no model at all"
        if name == "threshold" and pipeline == "b":  # the segmenter's maps are cached; new crops -> ROI classifier
            assert calls.calls - before <= 2, "one forward pass per subset at most (ROI classifier)"
    for name in names:
        empty_caches(store)
        run(data, pipeline, VARIANTS[name], tmp_path / "uncached" / name, store)
        assert run_files(tmp_path / "cached" / name) == run_files(tmp_path / "uncached" / name), name
    probs = ["prob_benign", "prob_malignant", "prob_normal"]
    tta_on = pd.read_csv(base_dir / "predictions.csv")[probs]
    tta_off = pd.read_csv(tmp_path / "cached" / "tta_off" / "predictions.csv")[probs]
    assert not tta_on.equals(tta_off), "TTA changes the outputs, so a wrong hit would show"


def test_a_damaged_entry_in_a_run_is_one_warning_and_the_same_result(data, trained, tmp_path, caplog):
    store, first = copied(trained, "b", tmp_path)
    entries = sorted(store.glob(f"segmenter3-*/{OUTPUTS}/*.npz"), key=lambda p: p.stat().st_mtime_ns)
    assert len(entries) == 4, "training crops' maps (train, val: no TTA), then the evaluated val and test maps"
    entries = entries[-1:]  # the test maps: read again by the second run
    entries[0].write_bytes(entries[0].read_bytes()[:100])
    with caplog.at_level(logging.WARNING):
        run(data, "b", [], tmp_path / "second", store)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "damaged output cache entry" in warnings[0] and str(entries[0]) in warnings[0]
    assert run_files(first) == run_files(tmp_path / "second")


def test_predict_never_writes_into_the_runs_stage_store(trained, tmp_path):
    store, run_dir = trained["a"]
    before = sorted(p.relative_to(store) for p in store.rglob("*"))
    images = pd.read_csv(run_dir / "predictions.csv").image_path[:3]
    assert main(["predict", str(run_dir), *images, "--out", str(tmp_path / "pred")]) == 0
    assert sorted(p.relative_to(store) for p in store.rglob("*")) == before
