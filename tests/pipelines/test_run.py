"""End-to-end runs of every built-in pipeline on a tiny dataset, checked independently of the code under test."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import balanced_accuracy_score, cohen_kappa_score, f1_score, recall_score

from harness.config import load_run_config
from harness.pipelines.run import run_trial

TINY = ["classifier.image_size=64", "segmenter.image_size=64", "classifier.optim.epochs=2",
        "segmenter.optim.epochs=2", "runtime.threads=1", "classifier.optim.batch_size=8",
        "segmenter.optim.batch_size=8", "joint.image_size=64", "joint.optim.epochs=2", "joint.optim.batch_size=8"]
PIPELINES = ["a", "b", "c"]


@pytest.fixture(scope="module")
def data(tmp_path_factory, make_dataset):
    return make_dataset(tmp_path_factory.mktemp("ds") / "ds", n=30, size=[(48, 40), (56, 48)],
                              images_per_patient=2)


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    store = out / "store"
    return {p: run_trial(load_run_config(f"tiny-{p}", TINY), out / p, data_dir=data, store_root=store)
            for p in PIPELINES}


def read_png(path) -> np.ndarray:
    return np.asarray(Image.open(path))


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_run_dir_contract(runs, pipeline):
    run_dir = runs[pipeline].run_dir
    for name in ("config.yaml", "metrics.json", "predictions.csv", "run.json"):
        assert (run_dir / name).is_file()
    stages = {"a": {"classifier3", "segmenter_binary"}, "b": {"segmenter3", "roi_classifier"}, "c": {"joint"}}[pipeline]
    assert {p.stem for p in (run_dir / "stages").glob("*.json")} == stages
    for name in stages:
        rec = json.loads((run_dir / "stages" / f"{name}.json").read_text())
        assert Path(rec["checkpoint"]).is_file() and rec["epochs"] == 2 and len(rec["history"]) == 2
        assert not (Path(rec["checkpoint"]).parent / "last.pt").exists(), "resume state dropped once complete"
    pred = pd.read_csv(run_dir / "predictions.csv")
    assert list(pred.columns[:10]) == ["subset", "image_id", "label", "pred_label", "prob_benign", "prob_malignant",
                                       "prob_normal", "dice", "iou", "precision"]
    for image_id, image_path in zip(pred.image_id, pred.image_path, strict=True):
        mask = read_png(run_dir / "pred_masks" / f"{image_id}.png")
        assert mask.shape == read_png(image_path).shape[:2], "masks are written at the original size"
        assert set(np.unique(mask)) <= {0, 255}
    np.testing.assert_allclose(pred[["prob_benign", "prob_malignant", "prob_normal"]].sum(axis=1), 1, atol=1e-5)
    called_normal = pred.pred_label == 2
    assert (pred.pred_pixels[called_normal] == 0).all(), "an image called Normal has an empty mask"


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_metrics_recomputed_independently(runs, pipeline, data):
    run_dir = runs[pipeline].run_dir
    pred = pd.read_csv(run_dir / "predictions.csv")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    y, p = pred.label.to_numpy(), pred.pred_label.to_numpy()
    assert metrics["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, p))
    assert metrics["macro_f1"] == pytest.approx(f1_score(y, p, average="macro", labels=[0, 1, 2], zero_division=0))
    assert metrics["cohen_kappa"] == pytest.approx(cohen_kappa_score(y, p), nan_ok=True)
    assert metrics["malignant_sensitivity"] == pytest.approx(recall_score(y == 1, p == 1, zero_division=0))
    assert metrics["malignant_specificity"] == pytest.approx(recall_score(y != 1, p != 1, zero_division=0))
    dices = []
    for row in pred.itertuples():
        if row.label == 2:
            continue
        gt = read_png(row.mask_path) > 0
        pm = read_png(run_dir / "pred_masks" / f"{row.image_id}.png") > 0
        inter, total = (gt & pm).sum(), gt.sum() + pm.sum()
        dices.append(2 * inter / total if total else 1.0)
    assert metrics["dice_mean"] == pytest.approx(np.mean(dices), abs=1e-9)
    assert metrics["dice_median"] == pytest.approx(np.median(dices), abs=1e-9)
    assert metrics["dice_ge_0.7"] == pytest.approx(np.mean(np.array(dices) >= 0.7))


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_never_evaluates_training_images(runs, pipeline, data):
    split = json.loads((data / "splits" / "default.json").read_text())
    pred = pd.read_csv(runs[pipeline].run_dir / "predictions.csv")
    assert set(pred.image_id) == set(split["subsets"]["val"])
    assert not set(pred.image_id) & set(split["subsets"]["train"])


def test_pipeline_a_segments_only_images_predicted_benign_or_malignant(runs, data, tmp_path, monkeypatch):
    import harness.pipelines.a as pipeline_a

    def fake_classify(ctx, stage, images, ev):  # every other image predicted Normal, the rest Malignant
        probs = np.zeros((len(images), 3))
        probs[0::2, 2] = 1.0
        probs[1::2, 1] = 1.0
        return probs

    monkeypatch.setattr(pipeline_a, "classify", fake_classify)
    cfg = load_run_config("tiny-a", TINY + ["eval.mask_threshold=0.01"])  # any lesion probability counts
    res = run_trial(cfg, tmp_path / "a_fake", data_dir=data, store_root=runs["a"].run_dir.parent / "store")
    assert res.trained_stages == []
    pred = pd.read_csv(res.run_dir / "predictions.csv")
    normal, lesion = pred.iloc[0::2], pred.iloc[1::2]
    assert (normal.pred_label == 2).all() and (normal.pred_pixels == 0).all()
    assert (lesion.pred_label == 1).all() and (lesion.pred_pixels > 0).any()


def test_pipeline_b_lesion_threshold_decides_normal(runs, data, tmp_path):
    # an unreachable pixel threshold makes every image Normal with an empty mask, without retraining
    cfg = load_run_config("tiny-b", TINY + ["roi.lesion_min_pixels=100000"])
    res = run_trial(cfg, tmp_path / "b_thr", data_dir=data, store_root=runs["b"].run_dir.parent / "store")
    assert res.trained_stages == []
    pred = pd.read_csv(res.run_dir / "predictions.csv")
    assert (pred.pred_label == 2).all() and (pred.pred_pixels == 0).all()


@pytest.mark.parametrize("override", ["eval.tta=false", "eval.mask_threshold=0.7", "roi.margin=0.4"])
def test_evaluation_only_knobs_reuse_stages(runs, data, tmp_path, override):
    cfg = load_run_config("tiny-b", TINY + [override])
    res = run_trial(cfg, tmp_path / "b2", data_dir=data, store_root=runs["b"].run_dir.parent / "store")
    assert res.trained_stages == []
    assert {n: r["hash"] for n, r in res.stages.items()} == {n: r["hash"] for n, r in runs["b"].stages.items()}


def test_training_knob_retrains_only_what_it_affects(runs, data, tmp_path):
    cfg = load_run_config("tiny-b", TINY + ["roi.train_crops=ground_truth"])
    res = run_trial(cfg, tmp_path / "b3", data_dir=data, store_root=runs["b"].run_dir.parent / "store")
    assert res.trained_stages == ["roi_classifier"]


def test_same_seed_same_metrics(runs, data, tmp_path):
    res = run_trial(load_run_config("tiny-a", TINY), tmp_path / "again", data_dir=data)
    assert res.trained_stages == ["classifier3", "segmenter_binary"]
    again = pd.read_csv(res.run_dir / "predictions.csv")
    first = pd.read_csv(runs["a"].run_dir / "predictions.csv")
    pd.testing.assert_frame_equal(again.drop(columns=["image_path"]), first.drop(columns=["image_path"]))


@pytest.mark.parametrize("pipeline,kind,n", [("a", "full", 3), ("b", "roi", 2), ("c", "full", 3)])
def test_artifacts_rebuild_the_classifier_and_its_input(runs, pipeline, kind, n):
    import torch

    from harness.pipelines.artifacts import classifier_input, load_classifier

    run_dir = runs[pipeline].run_dir
    model, size, got_kind, names = load_classifier(run_dir)
    assert (size, got_kind, len(names)) == (64, kind, n)
    image_id = pd.read_csv(run_dir / "predictions.csv", dtype={"image_id": str}).image_id[0]
    x, display = classifier_input(run_dir, image_id)
    assert x.shape == (64, 64, 3) and display.shape == (64, 64) and display.dtype == np.uint8
    t = torch.from_numpy(x.transpose(2, 0, 1))[None]
    with torch.no_grad():  # TTA recomputed by hand: mean softmax over original, hflip, vflip
        views = [t, torch.flip(t, dims=(-1,)), torch.flip(t, dims=(-2,))]
        probs = torch.stack([torch.softmax(model(v), 1)[0] for v in views]).mean(0).numpy()
    if pipeline in ("a", "c"):  # a whole-image classifier's output is what predictions.csv holds
        row = pd.read_csv(run_dir / "predictions.csv", dtype={"image_id": str}).iloc[0]
        np.testing.assert_allclose(probs, [row.prob_benign, row.prob_malignant, row.prob_normal], atol=1e-5)


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_probabilities_agree_with_the_decision(runs, pipeline, data, tmp_path):
    """ROC/AUC describe the same classifier as Table 9: argmax of the probabilities is the label."""
    pred = pd.read_csv(runs[pipeline].run_dir / "predictions.csv")
    probs = pred[["prob_benign", "prob_malignant", "prob_normal"]].to_numpy()
    np.testing.assert_array_equal(probs.argmax(1), pred.pred_label)


@pytest.mark.parametrize("threshold", [0, 5, 50])
def test_b_lesion_score_follows_the_area_rule(threshold):
    from harness.pipelines.b import lesion_score

    pixels = np.arange(0, 200)
    s = lesion_score(pixels, threshold)
    assert np.all(np.diff(s) >= 0) and np.all((s > 0.5) == (pixels > threshold))
    bm = np.linspace(0.5, 1.0, 11)  # the B-vs-M classifier's larger probability
    for score in s:
        probs = np.stack([score * bm, score * (1 - bm), np.full_like(bm, 1 - score)], axis=1)
        assert ((probs.argmax(1) != 2) == (score > 0.5)).all()


def test_pipeline_c_label_comes_from_the_head_and_gates_the_mask(runs):
    assert runs["c"].stages["joint"]["metric_name"] == "bacc_dice_mean"


def test_pipeline_c_cls_weight_is_a_training_knob(runs, data, tmp_path):
    cfg = load_run_config("tiny-c", TINY + ["joint.cls_weight=0.5"])
    res = run_trial(cfg, tmp_path / "c2", data_dir=data, store_root=runs["c"].run_dir.parent / "store")
    assert res.trained_stages == ["joint"]
    again = run_trial(load_run_config("tiny-c", TINY + ["eval.tta=false"]), tmp_path / "c3", data_dir=data,
                      store_root=runs["c"].run_dir.parent / "store")
    assert again.trained_stages == [], "TTA is evaluation-only for C too"


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_predictions_carry_the_patient_and_the_penalised_hd95(runs, pipeline, data):
    """patient_id is the record's patient (the report's statistical unit); hd95_penalised counts a
    missed or false lesion (HD95 NaN) at the diagonal of the image."""
    pred = pd.read_csv(runs[pipeline].run_dir / "predictions.csv", dtype={"image_id": str, "patient_id": str})
    meta = pd.read_excel(data / "training_metadata.xlsx", dtype={"image_id": str, "patient_id": str})
    expected = meta.set_index("image_id")["patient_id"]
    assert pred.patient_id.tolist() == expected.loc[pred.image_id].tolist()
    assert pred.patient_id.nunique() < len(pred)  # two images per patient in this dataset
    for row in pred.itertuples():
        h, w = read_png(row.image_path).shape[:2]
        assert row.hd95_penalised == pytest.approx(np.hypot(h, w) if np.isnan(row.hd95) else row.hd95)
