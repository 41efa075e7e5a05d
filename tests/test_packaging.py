"""The built wheel, installed into a fresh venv, runs a verb from a directory that is not the checkout:
the shipped studies and search spaces are package data, and every imported distribution is declared."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _requirement_names() -> set[str]:
    """Core dependencies, plus the extras of optional features (imported lazily, with a message)."""
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = [r for extra in OPTIONAL_EXTRAS for r in project["optional-dependencies"][extra]]
    return {Requirement(r).name.lower().replace("_", "-") for r in [*project["dependencies"], *optional]}


OPTIONAL_EXTRAS = ("export",)  # `harness export --format onnx` says to install it


IMPORT_TO_DIST = {"cv2": "opencv-python-headless", "yaml": "pyyaml", "PIL": "pillow", "sklearn": "scikit-learn",
                  "pytorch_grad_cam": "grad-cam", "segmentation_models_pytorch": "segmentation-models-pytorch",
                  "huggingface_hub": "huggingface-hub", "ray": "ray"}


def test_every_imported_distribution_is_declared():
    stdlib = set(sys.stdlib_module_names)
    imported: set[str] = set()
    for path in (ROOT / "harness").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {m for m in imported if m not in stdlib and m != "harness"}
    declared = _requirement_names()
    missing = {m for m in third_party if IMPORT_TO_DIST.get(m, m).lower().replace("_", "-") not in declared}
    assert not missing, f"imported but not in [project.dependencies]: {sorted(missing)}"


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_runs_from_another_directory(tmp_path):
    src = tmp_path / "src"  # build from a copy: a build writes build/ and *.egg-info next to pyproject.toml
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "harness", src / "harness", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
                    str(src)], check=True, capture_output=True, text=True, timeout=600)
    (wheel,) = dist.glob("harness-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "harness/resources/studies/quickstart.yaml" in names
    assert "harness/resources/search_spaces/quickstart.yaml" in names and "harness/presets/tiny-a.yaml" in names
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "Provides-Extra: dashboard" in metadata and "optuna-dashboard" in metadata

    # a venv of its own, seeing this environment's third-party packages (torch etc., not downloaded again)
    # through a path entry; the editable install of the checkout there is not activated (its .pth is not run)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()"
                                "['purelib'])"], check=True, capture_output=True, text=True).stdout.strip())
    (site / "zz_host_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
                   check=True, capture_output=True, text=True, timeout=300)

    elsewhere = tmp_path / "elsewhere"  # no studies/ or search_spaces/ here
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}  # not the checkout
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import harness; print(harness.__file__)"],
                           cwd=elsewhere, env=env, check=True, capture_output=True, text=True).stdout.strip()
    assert Path(where).is_relative_to(site), f"harness imported from {where}, not from the installed wheel"
    done = subprocess.run([str(venv / "bin" / "harness"), "study", "wandb-sweep", "quickstart", "--data", "data"],
                          cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    sweep = yaml.safe_load(done.stdout)
    assert sweep["name"] == "quickstart" and sweep["project"] == "harness-quickstart"
    assert sweep["command"][3:5] == ["--study", "quickstart"], "the agent resolves the shipped study by name"
    assert "eval.tta" in sweep["parameters"], "the study's search space resolved from the package"
