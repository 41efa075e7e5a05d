"""``manifest.json``: what a run (or a study) was made from, so that it can be re-made and checked.

Every run directory and study directory gets one, written before the work starts::

    harness      version, and the git commit + dirty flag when the package runs from a checkout
    python       version and implementation;  packages: torch, timm, smp, albumentations, ray, ...
    device       where it computed (a run: cpu/cuda, threads, GPU name; a study: the Ray cluster)
    command      the exact command line (a study's trials: the driver's) and the working directory
    data         dataset directory, metadata hash, image+mask content hash, number of images
    split        split name, hash of its image ids per subset, subset sizes
    seeds        runtime.seed, data.split_seed (a study: its sampler seed and the final seeds)

``harness rerun RUN_DIR`` (:mod:`harness.rerun`) reads a run's manifest back.
"""

from __future__ import annotations

import functools
import hashlib
import json
import platform
import subprocess
import sys
import time
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import __version__
from harness.tune.storage import redact_url, scrub

if TYPE_CHECKING:
    from harness.data.records import DatasetIndex
    from harness.data.splits import Split
    from harness.pipelines.context import RunContext
    from harness.tune.paths import StudyPaths
    from harness.tune.study import StudySpec

MANIFEST = "manifest.json"
PACKAGES = ("torch", "torchvision", "timm", "segmentation_models_pytorch", "albumentations", "ray", "optuna", "wandb",
            "numpy", "scikit-learn", "pandas", "opencv-python-headless", "pydantic")
"""Distributions whose versions a manifest records (the first eight decide a run's numbers)."""


@functools.lru_cache(maxsize=1)
def git_state() -> dict[str, Any] | None:
    """{commit, dirty, root} when the harness package is imported from a git checkout, else None (an
    installed wheel). ``dirty`` counts modified tracked files, not untracked ones."""
    package = Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(package), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    root = git("rev-parse", "--show-toplevel")
    if not root or (Path(root) / "harness").resolve() != package:  # e.g. site-packages inside some repository
        return None
    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    if commit is None or status is None:
        return None
    return {"commit": commit, "dirty": bool(status), "root": root}


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def command_line(argv: list[str] | None = None) -> list[str]:
    """The command as the user typed it: ``harness ...`` for the console script, ``python -m harness ...``."""
    argv = list(sys.argv if argv is None else argv)
    if not argv:
        return []
    head = Path(argv[0])
    if head.name == "__main__.py" and head.parent.name == "harness":
        return ["python", "-m", "harness", *argv[1:]]
    if head.name == "harness":
        return ["harness", *argv[1:]]
    return argv


def environment() -> dict[str, Any]:
    """The code and the software it ran on (shared by run and study manifests)."""
    return {"harness": {"version": __version__, "git": git_state()},
            "python": {"version": platform.python_version(), "implementation": platform.python_implementation(),
                       "executable": sys.executable},
            "platform": platform.platform(), "packages": package_versions()}


def data_fingerprint(index: DatasetIndex, content: str) -> dict[str, Any]:
    return {"dir": str(Path(index.root).resolve()), "metadata_hash": index.metadata_hash, "content_hash": content,
            "images": len(index.records)}


def split_fingerprint(split: Split) -> dict[str, Any]:
    """The split's name, a hash of its image ids per subset (order kept, as saved) and subset sizes."""
    subsets = {k: list(v) for k, v in split.subsets().items()}
    digest = hashlib.sha256(json.dumps(subsets, sort_keys=True).encode()).hexdigest()[:16]
    return {"name": split.name, "ids_hash": digest, "sizes": {k: len(v) for k, v in subsets.items()},
            "seed": split.seed}


def _write(path: Path, body: dict[str, Any]) -> None:
    from harness.data.io import write_bytes_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, (json.dumps(body, indent=2, default=str) + "\n").encode())


def read_manifest(directory: Path) -> dict[str, Any]:
    """``DIR/manifest.json`` as a dict (a :class:`~harness.errors.DataError` naming the file otherwise)."""
    from harness.errors import DataError
    from harness.rundir import RunDir

    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise DataError(f"{path}: no manifest there; runs made before manifests existed cannot be re-run "
                        "from one (run them again with `harness run CONFIG`).")
    return RunDir.read_json(path)


def write_run_manifest(out_dir: Path, ctx: RunContext, *, subsets: tuple[str, ...] | list[str], store: Path,
                       provenance: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write ``out_dir/manifest.json`` for the run about to start in ``ctx``; returns what was written.

    ``provenance`` adds where the run came from (a study trial: the study, its Optuna trial, the
    driver's command line, which then replaces this process's own).
    """
    import torch

    config, info = ctx.config, ctx.info
    device: dict[str, Any] = {"device": str(info.device), "threads": torch.get_num_threads(), "amp": info.amp}
    if info.is_cuda:
        device["gpu"] = torch.cuda.get_device_name(info.device)
    extra = dict(provenance or {})
    body = {"kind": "run", "created": time.strftime("%Y-%m-%dT%H:%M:%S"), **environment(), "device": device,
            "command": extra.pop("command", None) or command_line(), "cwd": str(Path.cwd()),
            "config": {"name": config.name, "pipeline": config.pipeline},
            "data": data_fingerprint(ctx.index, ctx.content_hash), "split": split_fingerprint(ctx.split),
            "seeds": {"runtime.seed": config.runtime.seed, "data.split_seed": config.data.split_seed},
            "subsets": list(subsets), "stage_store": str(Path(store).resolve()), "provenance": extra}
    _write(Path(out_dir) / MANIFEST, body)
    return body


def write_study_manifest(paths: StudyPaths, spec: StudySpec, *, storage_url: str,
                         command: list[str] | None = None) -> dict[str, Any]:
    """Write ``STUDY_DIR/manifest.json`` (after Ray started and the data was prepared); a resumed study
    keeps the earlier invocations under ``history``."""
    import ray

    from harness.data.cache import content_hash
    from harness.pipelines.context import load_dataset

    config = spec.run_config(spec.pipelines[0], {}, spec.data.dir)
    _, index, split = load_dataset(config, spec.data.dir, check_data=False)  # the driver checked it already
    previous: list[dict[str, Any]] = []
    try:
        old = json.loads(paths.manifest.read_text())
        previous = [*old.get("history", []), {k: old.get(k) for k in ("created", "command", "harness")}]
    except (OSError, ValueError, AttributeError):
        pass
    resources = ray.cluster_resources() if ray.is_initialized() else {}
    body = {"kind": "study", "created": time.strftime("%Y-%m-%dT%H:%M:%S"), **environment(),
            "device": {"ray_cpus": resources.get("CPU", 0), "ray_gpus": resources.get("GPU", 0),
                       "ray_nodes": len([n for n in ray.nodes() if n.get("Alive")]) if ray.is_initialized() else 0},
            "command": [scrub(c, storage_url) for c in (command or command_line())], "cwd": str(Path.cwd()),
            "study": spec.name,
            "storage": redact_url(storage_url),
            "data": data_fingerprint(index, content_hash(index, config.data.cache_dir)),
            "split": split_fingerprint(split),
            "seeds": {"sampler_seed": spec.seed, "final_seeds": list(spec.final.seeds),
                      "data.split_seed": spec.data.split_seed},
            "history": previous}
    _write(paths.manifest, body)
    return body
