"""``harness rerun RUN_DIR``: make a run again from its ``manifest.json`` and say whether it reproduces.

The run's ``config.yaml`` is trained again (by default from scratch, in a fresh stage store: reusing
the original stages would only reload the same weights) on the dataset and split its manifest names,
evaluated on the same subsets, and every numeric metric is compared with the original's. What differs
in the environment (code commit, package versions, device, dataset content, split) is listed next to
the verdict, since that is where a mismatch usually comes from.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import DataError
from harness.manifest import read_manifest
from harness.rundir import RunDir


@dataclass
class Mismatch:
    subset: str
    metric: str
    original: Any
    rerun: Any


@dataclass
class RerunResult:
    """The verdict of a rerun: ``matches`` when every compared metric agrees within tolerance."""

    run_dir: Path
    out_dir: Path
    compared: int
    max_abs_diff: float
    mismatches: list[Mismatch] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    """What differs between the original's manifest and the rerun's (environment, data, split)."""

    @property
    def matches(self) -> bool:
        return self.compared > 0 and not self.mismatches


def compare_metrics(original: dict[str, Any], rerun: dict[str, Any], subset: str, *, rtol: float,
                    atol: float) -> tuple[int, float, list[Mismatch]]:
    """(numbers compared, largest absolute difference, mismatches) of two metrics dicts; NaN equals NaN."""
    compared, worst, bad = 0, 0.0, []
    for key in sorted(set(original) | set(rerun)):
        a, b = original.get(key), rerun.get(key)
        if isinstance(a, bool) or isinstance(b, bool) or not all(isinstance(v, (int, float)) for v in (a, b)):
            missing = (a is None) != (b is None)  # a metric on one side only
            if missing or (isinstance(a, str) and a != b):
                bad.append(Mismatch(subset, key, a, b))
            continue
        compared += 1
        fa, fb = float(a), float(b)  # type: ignore[arg-type]  # both checked numeric above
        if math.isnan(fa) and math.isnan(fb):
            continue
        diff = abs(fa - fb)
        worst = max(worst, diff if math.isfinite(diff) else math.inf)
        if not math.isclose(fa, fb, rel_tol=rtol, abs_tol=atol):
            bad.append(Mismatch(subset, key, a, b))
    return compared, worst, bad


def environment_differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Readable lines for what differs between two manifests (code, packages, device, data, split)."""
    lines = []
    git_a = (before.get("harness") or {}).get("git") or {}
    git_b = (after.get("harness") or {}).get("git") or {}
    if git_a.get("commit") != git_b.get("commit"):
        lines.append(f"code: commit {git_a.get('commit', 'unknown')} -> {git_b.get('commit', 'unknown')}")
    if git_a.get("dirty") or git_b.get("dirty"):
        lines.append("code: uncommitted changes in the checkout (dirty)")
    for name, version in sorted((before.get("packages") or {}).items()):
        now = (after.get("packages") or {}).get(name)
        if version != now:
            lines.append(f"package {name}: {version} -> {now}")
    for key in ("device", "threads"):
        a, b = (before.get("device") or {}).get(key), (after.get("device") or {}).get(key)
        if a != b:
            lines.append(f"{key}: {a} -> {b}")
    for section, keys in (("data", ("metadata_hash", "content_hash", "images")), ("split", ("ids_hash",))):
        for key in keys:
            a, b = (before.get(section) or {}).get(key), (after.get(section) or {}).get(key)
            if a != b:
                lines.append(f"{section} {key}: {a} -> {b}")
    return lines


def rerun(run_dir: Path, out_dir: Path | None = None, *, data_dir: Path | None = None, reuse_stages: bool = False,
          rtol: float = 1e-6, atol: float = 1e-9, command: list[str] | None = None) -> RerunResult:
    """Re-execute the run in ``run_dir`` from its manifest into ``out_dir`` and compare the metrics.

    ``data_dir`` replaces the manifest's dataset directory (a moved dataset: its content hash is still
    compared); ``reuse_stages`` uses the original stage store (checks evaluation only).
    """
    from pydantic import ValidationError

    from harness.config import RunConfig, format_validation_error
    from harness.pipelines.run import run_trial

    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    original = RunDir(run_dir)
    if not original.config.is_file():
        raise DataError(f"{original.config}: missing; a run directory has its config.yaml next to manifest.json.")
    try:
        config = RunConfig.model_validate(original.read_config())
    except ValidationError as e:
        raise DataError(format_validation_error(e, RunConfig, str(original.config))) from None
    data = data_dir or Path((manifest.get("data") or {}).get("dir") or config.data.dir or ".")
    if config.runtime.threads is None and (manifest.get("device") or {}).get("threads"):
        # CPU reductions depend on the thread count: run with the original's
        runtime = config.runtime.model_copy(update={"threads": int(manifest["device"]["threads"])})
        config = config.model_copy(update={"runtime": runtime})
    subsets = tuple(manifest.get("subsets") or [s for s in ("val", "test") if original.metrics(s).exists()])
    if out_dir is None:
        out_dir = run_dir.parent / f"{run_dir.name}-rerun"
        if out_dir.exists():
            out_dir = run_dir.parent / f"{run_dir.name}-rerun-{time.strftime('%Y%m%d-%H%M%S')}"
    store = Path(manifest["stage_store"]) if reuse_stages and manifest.get("stage_store") else None
    run_trial(config, out_dir, data_dir=data, store_root=store, subsets=subsets, progress=False,
              provenance={"rerun_of": str(run_dir.resolve()), "command": command})
    again = read_manifest(out_dir)
    compared, worst = 0, 0.0
    bad: list[Mismatch] = []
    for subset in subsets:
        if not original.metrics(subset).exists():
            continue
        n, w, b = compare_metrics(original.read_metrics(subset), RunDir(out_dir).read_metrics(subset), subset,
                                  rtol=rtol, atol=atol)
        compared, worst, bad = compared + n, max(worst, w), bad + b
    return RerunResult(run_dir=run_dir, out_dir=Path(out_dir), compared=compared, max_abs_diff=worst,
                       mismatches=bad, differences=environment_differences(manifest, again))

