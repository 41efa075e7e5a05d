"""Fuzz the command line with randomly corrupted inputs (issue 12): run configs, study YAMLs and run
directories, each through ``harness.cli.main`` in-process. Every case must end with exit 2, ``error:``
lines only (no traceback) naming the culprit, and no file written outside the output directory.

The cases are drawn from a seeded generator, so a failure names a reproducible case id. Each
corruption is invalid by construction: a run-config value is kept only when validation refuses it,
study mutations are known-bad values of their field, and run-directory corruptions break a file the
report must read. ``--debug`` is never passed, so a bug shows up as an exit code other than 2.
"""

from __future__ import annotations

import hashlib
import math
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from pydantic import BaseModel

from harness.cli import main
from harness.config import RunConfig, resolve_config_source, validate_run_config
from harness.errors import ConfigError

SEED = 12
N_RUN_CONFIGS = 80
N_STUDIES = 70
N_RUN_DIRS = 60


@dataclass(frozen=True)
class Case:
    id: str
    kind: str  # "config", "study", "run_dir", "stage"
    payload: Any
    culprits: tuple[str, ...]  # each must appear in stderr


# --- run configs: every leaf and section of RunConfig, given a value validation refuses ---------


def _paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        dotted = f"{prefix}{name}"
        out.append(dotted)
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            out += _paths(field.annotation, f"{dotted}.")
    return out


BAD_VALUES: list[Any] = [[1, 2], {"x": 1}, "oops", math.inf, -math.inf, math.nan, -1, 10**30, 2**64, None,
                         "../x", "", "=1+2", "$x^$", [], True]


def _set(raw: dict, dotted: str, value: Any) -> dict:
    out = yaml.safe_load(yaml.safe_dump(raw))
    node = out
    *parents, last = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {}) if isinstance(node.get(key), dict) or key not in node else node[key]
    node[last] = value
    return out


def _refused(raw: dict) -> bool:
    try:
        validate_run_config(raw)
    except ConfigError:
        return True
    return False


def run_config_cases(rng: random.Random) -> list[Case]:
    base, _ = resolve_config_source("tiny-a")
    fields = _paths(RunConfig)
    cases = []
    while len(cases) < N_RUN_CONFIGS - 8:
        raw, culprits = base, []
        for dotted in rng.sample(fields, rng.choice((1, 1, 2, 3))):
            if any(dotted.startswith(c + ".") or c.startswith(dotted + ".") for c in culprits):
                continue  # a section and a field inside it: only one of them
            for value in rng.sample(BAD_VALUES, len(BAD_VALUES)):
                if _refused(_set(base, dotted, value)):
                    raw, culprits = _set(raw, dotted, value), [*culprits, dotted]
                    break
        if culprits:
            text = yaml.safe_dump(raw, sort_keys=False).encode()
            # a cross-field check names the section and the field: "data: fold must be in [0, folds - 1] ..."
            culprits = [f"{c}|{c.rpartition('.')[0]}: {c.rpartition('.')[2]}" if "." in c else c for c in culprits]
            name = "+".join(c.split("|")[0] for c in culprits)
            cases.append(Case(f"config-{len(cases)}-{name}", "config", text, tuple(culprits)))
    misspelt = {"classifier": {"lr_haed": 1e-3}, "roi": {"margn": 0.2}, "optimiser": {}, "seed": 3}
    for key, value in misspelt.items():
        raw = {**base, key: {**(base.get(key) or {}), **value}} if isinstance(value, dict) and value else {
            **base, key: value}
        culprit = f"{key}.{next(iter(value))}" if isinstance(value, dict) and value else key
        cases.append(Case(f"config-unknown-{culprit}", "config", yaml.safe_dump(raw).encode(), (culprit, "unknown")))
    text = yaml.safe_dump(base).encode()
    for name, blob in {"0xff": text[:40] + b"\xff\xfe" + text[40:], "list": b"- a\n- b\n", "scalar": b"42\n",
                       "broken": text[:60] + b"\n  - [unclosed\n"}.items():
        cases.append(Case(f"config-file-{name}", "config", blob, ("cfg.yaml",)))
    return cases


# --- study YAMLs: known-bad values, several at once (reported together) or one checked late --------

GOOD_STUDY = {"name": "fz", "pipelines": ["a", "b"], "base": {"a": "tiny-a", "b": "tiny-b"}, "trials": 2,
              "search_space": {"params": {"eval.tta": {"type": "categorical", "choices": [True, False]}}}}

EARLY: dict[str, list[Any]] = {  # field-level problems: all of them are reported together
    "trials": [0, -1, "x", [], math.inf],
    "seed": [-1, 2**64, "x", math.nan],
    "pipelines": [[], ["zz"], "a", ["a", "a"]],
    "sampler": ["annealing", 3],
    "objectives": [[], [{"metric": "nope"}], "x", [{"metric": "balanced_accuracy", "direction": "up"}]],
    "scheduler": [{"type": "hyperband"}, {"grace_period": 0}, {"reduction_factor": 1}, "asha"],
    "resources": [{"cpu": 0}, {"cpu": math.nan}, {"gpu": "lots"}, {"cpus": 2}],
    "final": [{"seeds": [-1]}, {"seeds": []}, {"mode": "x"}, {"seeds": ["a"]}, {"seeds": [2**32]}],
    "data": [{"val_fraction": 1.5}, {"test_fraction": -0.1}, {"split_seed": -1}, {"split": ["x"]}],
    "selection": [{"folds": 0}, {"folds": 100}],
    "name": ["../x", "", "/abs", "a/b", "$x$", "=1+2"],
    "max_concurrent": [0, -3],
    "max_failures": [-1],
    "time_budget_minutes": [0, math.inf, -5],
    "trails": [3],
    "search_space": [{"params": {"classifier.lr_head": {"type": "float", "low": 1e-3, "high": math.inf}}},
                     {"params": {"classifier.head_hidden": {"type": "int", "low": 0, "high": 64, "log": True}}},
                     {"params": {"roi.margin": {"type": "float", "low": 0.5, "high": 0.1}}},
                     {"params": {"roi.margin": {"type": "beta", "low": 0.1, "high": 0.5}}},
                     {"params": {"eval.tta": {"type": "categorical", "choices": []}}},
                     {"simplex": [{"fields": ["segmenter.loss.dice"]}]}],
}
LATE: list[tuple[dict[str, Any], str]] = [  # checked through the base configs once the spec itself is valid
    ({"overrides": {"classifier.lr_head": math.inf}}, "classifier.lr_head"),
    ({"overrides": {"roi.margn": 0.1}}, "roi.margn"),
    ({"overrides": {"runtime.seed": -1}}, "runtime.seed"),
    ({"overrides": {"name": "../../etc"}}, "name"),
    ({"base": {"a": "nonexistent-preset", "b": "tiny-b"}}, "nonexistent-preset"),
    ({"search_space": {"params": {"roi.margn": {"type": "float", "low": 0.0, "high": 0.4}}}}, "roi.margn"),
    ({"search_space": {"params": {"eval.mask_threshold": {"type": "float", "low": 0.0, "high": 1.0}}}},
     "eval.mask_threshold"),
    ({"search_space": {"params": {"classifier.lr_head": {"type": "categorical", "choices": [1e-3, math.inf]}}}},
     "classifier.lr_head"),
    ({"sampler": "grid", "trials": None, "search_space": {"params": {
        "eval.mask_threshold": {"type": "float", "low": 0.1, "high": 0.9, "step": 1e-10}}}}, "configurations"),
    ({"search_space": {"simplex": [{"fields": ["segmenter.loss.dice", "segmenter.loss.focall"]}]}}, "focall"),
]


def _culprit(field: str, value: Any) -> str:
    return "(top level)" if field == "trials" and value is None else field


def study_cases(rng: random.Random) -> list[Case]:
    cases = []
    for k in range(N_STUDIES - len(LATE) - 8):
        raw, culprits = dict(GOOD_STUDY), []
        for field in rng.sample(sorted(EARLY), rng.choice((1, 2, 3))):
            value = rng.choice(EARLY[field])
            raw[field] = value
            culprits.append(field if field != "search_space" else "search_space.")
        verb = "resume" if k % 5 == 4 else "run"
        cases.append(Case(f"study-{k}-{verb}-{'+'.join(c.rstrip('.') for c in culprits)}", "study",
                          (verb, yaml.safe_dump(raw).encode(), None), tuple(culprits)))
    for k, (fields, culprit) in enumerate(LATE):
        cases.append(Case(f"study-late-{k}-{culprit}", "study",
                          ("run", yaml.safe_dump({**GOOD_STUDY, **fields}).encode(), None), (culprit,)))
    text = yaml.safe_dump(GOOD_STUDY).encode()
    for name, blob in {"0xff": b"\xff" + text, "empty": b"", "broken": b"name: fz\npipelines: [a\n",
                       "list": b"- 1\n"}.items():
        cases.append(Case(f"study-file-{name}", "study", ("run", blob, None), ("s.yaml",)))
    for url in ("foo://", "sqlite:////no/such/dir/x.db", "postgresql://me:hunter2@127.0.0.1:9/db", "%%%"):
        cases.append(Case(f"study-storage-{url[:12]}", "study", ("run", text, url), ("--storage",)))
    return cases


# --- run directories for the report: one fatal corruption each (plus, sometimes, a broken stage) --

Edit = Callable[[Path, random.Random], None]


def _inject_ff(name: str) -> Edit:
    def edit(run: Path, rng: random.Random) -> None:
        blob = (run / name).read_bytes()
        at = rng.randrange(len(blob))
        (run / name).write_bytes(blob[:at] + b"\xff" + blob[at:])
    return edit


def _truncate_json(run: Path, rng: random.Random) -> None:
    blob = (run / "metrics.json").read_bytes()
    (run / "metrics.json").write_bytes(blob[: rng.randrange(len(blob) - 1)])


def _write(name: str, blob: bytes) -> Edit:
    return lambda run, rng: (run / name).write_bytes(blob)


def _delete(name: str) -> Edit:
    return lambda run, rng: (run / name).unlink()


def _cell(columns: tuple[str, ...], values: tuple[Any, ...]) -> Edit:
    def edit(run: Path, rng: random.Random) -> None:
        df = pd.read_csv(run / "predictions.csv")
        col = rng.choice(columns)
        df[col] = df[col].astype(object)
        df.loc[df.index[rng.randrange(len(df))], col] = rng.choice(values)
        df.to_csv(run / "predictions.csv", index=False)
    return edit


def _drop_column(run: Path, rng: random.Random) -> None:
    df = pd.read_csv(run / "predictions.csv")
    df.drop(columns=[rng.choice(["label", "pred_label", "image_id"])]).to_csv(run / "predictions.csv", index=False)


def _header_only(run: Path, rng: random.Random) -> None:
    head = (run / "predictions.csv").read_text().splitlines()[0]
    (run / "predictions.csv").write_text(head + "\n")


def _config_section(run: Path, rng: random.Random) -> None:
    raw = yaml.safe_load((run / "config.yaml").read_text())
    raw[rng.choice(["runtime", "data", "classifier", "roi", "eval"])] = rng.choice(["oops", 3, [1, 2]])
    (run / "config.yaml").write_text(yaml.safe_dump(raw))


def _config_value(key: str, values: tuple[Any, ...]) -> Edit:
    def edit(run: Path, rng: random.Random) -> None:
        raw = yaml.safe_load((run / "config.yaml").read_text())
        section, _, field = key.rpartition(".")
        (raw.setdefault(section, {}) if section else raw)[field] = rng.choice(values)
        (run / "config.yaml").write_text(yaml.safe_dump(raw))
        metrics = (run / "metrics.json").read_text().replace('"pipeline": "a"', '"pipeline": "zz"')
        (run / "metrics.json").write_text(metrics)
    return edit


FATAL: dict[str, tuple[Edit, str]] = {
    "metrics-0xff": (_inject_ff("metrics.json"), "metrics.json"),
    "metrics-truncated": (_truncate_json, "metrics.json"),
    "metrics-list": (_write("metrics.json", b"[1, 2, 3]"), "metrics.json"),
    "metrics-empty": (_write("metrics.json", b""), "metrics.json"),
    "metrics-missing": (_delete("metrics.json"), "metrics.json"),
    "predictions-0xff": (_inject_ff("predictions.csv"), "predictions.csv"),
    "predictions-empty": (_write("predictions.csv", b""), "predictions.csv"),
    "predictions-missing": (_delete("predictions.csv"), "predictions.csv"),
    "predictions-binary": (_write("predictions.csv", bytes(range(256)) * 4), "predictions.csv"),
    "predictions-header-only": (_header_only, "predictions.csv"),
    "predictions-no-column": (_drop_column, "predictions.csv"),
    "predictions-label": (_cell(("label", "pred_label"), (1.5, -1, 3, "x", "", 2.0000001)), "predictions.csv"),
    "predictions-number": (_cell(("prob_benign", "prob_malignant", "dice", "iou", "hd95", "gt_pixels"),
                                 ("abc", "inf", "-inf", "1e999", "0x10", "[1]")), "predictions.csv"),
    "config-0xff": (_inject_ff("config.yaml"), "config.yaml"),
    "config-broken": (_write("config.yaml", b"pipeline: a\nruntime: {seed: [1,\n"), "config.yaml"),
    "config-list": (_write("config.yaml", b"- pipeline\n- a\n"), "config.yaml"),
    "config-section": (_config_section, "config.yaml"),
    "config-pipeline": (_config_value("pipeline", ("zz", "A/../b", "$x$", 3)), "config.yaml"),
    "config-seed": (_config_value("runtime.seed", ("x", [1], {"a": 1}, 1.5)), "config.yaml"),
}
STAGE_BREAKS: list[bytes] = [b'{"history": "x", "best_epoch": "y"}', b"[]", b'{"history": [1, "a"]}', b"{bad",
                             b"\xff\xfe", b'{"history": [{"epoch": "one", "train_loss": []}]}']


def run_dir_cases(rng: random.Random) -> list[Case]:
    kinds = sorted(FATAL)
    cases = []
    for k in range(N_RUN_DIRS - 3):
        kind = kinds[k % len(kinds)]
        stage = rng.choice(STAGE_BREAKS) if rng.random() < 0.4 else None
        cases.append(Case(f"rundir-{k}-{kind}{'+stage' if stage else ''}", "run_dir",
                          (kind, rng.randrange(10**6), stage), (FATAL[kind][1],)))
    for k, blob in enumerate(rng.sample(STAGE_BREAKS, 3)):
        cases.append(Case(f"stage-only-{k}", "stage", blob, ("stages",)))
    return cases


def all_cases() -> list[Case]:
    rng = random.Random(SEED)
    return run_config_cases(rng) + study_cases(rng) + run_dir_cases(rng)


CASES = all_cases()


def test_enough_cases():
    assert len(CASES) >= 120 and len({c.id for c in CASES}) == len(CASES)


# --- the check -------------------------------------------------------------------------------------


def snapshot(root: Path, skip: Path) -> dict[str, str]:
    """Every path under ``root`` outside ``skip``, with a hash of each file's bytes."""
    out = {}
    for p in root.rglob("*"):
        if p == skip or skip in p.parents:
            continue
        out[str(p.relative_to(root))] = hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory) -> Path:
    from harness.testing.datasets import make_dataset
    from harness.testing.runs import make_run

    root = tmp_path_factory.mktemp("fuzz")
    images = make_dataset(root / "data", n=12, size=(48, 40), seed=0).images
    return make_run(root / "run", images, "a", seed=1, epochs=3)


def prepare(case: Case, tmp: Path, fake_run: Path) -> tuple[list[str], Path]:
    """Write the case's inputs under ``tmp``; return the argv and the output directory."""
    out = tmp / "out"
    if case.kind == "config":
        (tmp / "cfg.yaml").write_bytes(case.payload)
        return ["run", str(tmp / "cfg.yaml"), "--out", str(out), "--data", str(tmp / "nodata")], out
    if case.kind == "study":
        verb, blob, storage = case.payload
        if verb == "resume":
            out.mkdir()
            (out / "study.yaml").write_bytes(blob)
            return ["study", "resume", str(out), "--no-report"], out
        (tmp / "s.yaml").write_bytes(blob)
        extra = ["--storage", storage] if storage else []
        return ["study", "run", str(tmp / "s.yaml"), "--out", str(out), "--data", str(tmp / "nodata"),
                "--no-report", *extra], out
    run = tmp / "run"
    shutil.copytree(fake_run, run)
    if case.kind == "run_dir":
        kind, seed, stage = case.payload
        FATAL[kind][0](run, random.Random(seed))
    else:
        stage = case.payload
    if stage is not None:
        stages = sorted((run / "stages").glob("*.json"))
        stages[0].write_bytes(stage)
    return ["report", str(run), "--out", str(out), "--bootstrap", "10", "--no-gradcam"], out


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_corrupted_input_is_one_clean_error(case, tmp_path, fake_run, monkeypatch, capsys, caplog):
    monkeypatch.chdir(tmp_path)  # a write to a relative path would show up in the snapshot too
    argv, out = prepare(case, tmp_path, fake_run)
    before = snapshot(tmp_path, out)
    code = main(["-q", *argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert snapshot(tmp_path, out) == before, "a file outside the output directory was written or changed"
    if case.kind == "stage":  # stage records only draw the training curves: the report goes on, with a warning
        assert code == 0, err
        assert any(c in caplog.text for c in case.culprits), caplog.text
        return
    assert code == 2, err
    lines = err.strip().splitlines()
    assert lines and all(line.startswith("error: ") for line in lines), err
    for culprit in case.culprits:  # "a|b": either names it
        assert any(alt in err for alt in culprit.split("|")), f"{culprit!r} not named in: {err}"
    assert "hunter2" not in err

