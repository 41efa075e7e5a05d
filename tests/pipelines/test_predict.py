"""`harness predict` reproduces a run's own predictions on its validation images; `harness export`
writes models that compute what the run's models compute."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from harness.cli import main
from harness.config import load_run_config
from harness.pipelines.run import run_trial

TINY = ["classifier.image_size=64", "segmenter.image_size=64", "classifier.optim.epochs=2",
        "segmenter.optim.epochs=2", "runtime.threads=1", "classifier.optim.batch_size=8",
        "segmenter.optim.batch_size=8", "joint.image_size=64", "joint.optim.epochs=2", "joint.optim.batch_size=8",
        "roi.lesion_min_pixels=2"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, make_dataset):
    root = tmp_path_factory.mktemp("pred")
    data = make_dataset(root / "ds", n=24, size=[(48, 40), (56, 48)], images_per_patient=2)
    return {p: run_trial(load_run_config(f"tiny-{p}", TINY), root / p, data_dir=data, store_root=root / "store")
            for p in ("a", "b", "c")}


@pytest.mark.parametrize("pipeline", ["a", "b", "c"])
def test_predict_reproduces_the_run_on_its_validation_images(runs, pipeline, tmp_path, capsys):
    run_dir = runs[pipeline].run_dir
    table = pd.read_csv(run_dir / "predictions.csv", dtype={"image_id": str})
    assert main(["predict", str(run_dir), *table.image_path, "--out", str(tmp_path)]) == 0
    got = pd.read_csv(tmp_path / "predictions.csv", dtype={"image_id": str})
    stems = [Path(p).stem for p in table.image_path]
    merged = table.assign(stem=stems).merge(got, left_on="stem", right_on="image_id", suffixes=("", "_new"))
    assert len(merged) == len(table)
    np.testing.assert_array_equal(merged.pred_label, merged.pred_label_new)
    for col in ("prob_benign", "prob_malignant", "prob_normal"):
        np.testing.assert_allclose(merged[col], merged[f"{col}_new"], atol=1e-5)
    for row in merged.itertuples():
        old = np.asarray(Image.open(run_dir / "pred_masks" / f"{row.image_id}.png")) > 0
        new = np.asarray(Image.open(tmp_path / "masks" / f"{row.image_id_new}.png")) > 0
        assert old.shape == new.shape == np.asarray(Image.open(row.image_path)).shape[:2]
        assert (old != new).mean() < 1e-3, "masks identical up to floating point"
        assert (tmp_path / "overlays" / f"{row.image_id_new}.png").is_file()


def test_predict_refuses_what_is_not_a_png(runs, tmp_path, capsys):
    bad = tmp_path / "x.png"
    bad.write_bytes(b"not a png")
    assert main(["predict", str(runs["a"].run_dir), str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "x.png" in err and "Traceback" not in err


@pytest.mark.parametrize("pipeline", ["b", "c"])
def test_torchscript_export_computes_what_the_run_computes(runs, pipeline, tmp_path, capsys):
    from harness.config import validate_run_config
    from harness.engine.device import resolve_device
    from harness.pipelines.predict import load_stages
    from harness.rundir import RunDir

    run_dir = runs[pipeline].run_dir
    assert main(["export", str(run_dir), "--out", str(tmp_path)]) == 0
    cfg = validate_run_config(RunDir(run_dir).read_config())
    stages = load_stages(run_dir, cfg, resolve_device(cfg.runtime))
    x = torch.randn(2, 3, 64, 64)
    for name, stage in stages.items():
        with pytest.warns(FutureWarning):  # TorchScript is deprecated in favour of torch.export; still loads
            exported = torch.jit.load(str(tmp_path / f"{name}.pt"))
        with torch.no_grad():
            ref, out = stage.model.eval()(x), exported(x)
        for r, o in zip(ref if isinstance(ref, tuple | list) else (ref,), out if isinstance(out, tuple) else (out,),
                        strict=True):
            torch.testing.assert_close(o, r, atol=1e-4, rtol=1e-4)
    assert "torch.jit.load" in (tmp_path / "README.md").read_text()


def test_onnx_export_is_a_valid_model(runs, tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    assert main(["export", str(runs["c"].run_dir), "--format", "onnx", "--out", str(tmp_path)]) == 0
    model = onnx.load(str(tmp_path / "joint.onnx"))
    onnx.checker.check_model(model)
    assert [o.name for o in model.graph.output] == ["mask_logits", "class_logits"]
