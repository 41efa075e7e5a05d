"""Export a run's trained stages: ``harness export RUN_DIR --format torchscript|onnx --out DIR``.

Each stage of the run's pipeline (registry order) becomes one file, traced on an input of its
configured size, next to ``pipeline.json`` (stage order, kinds, input sizes, channels, thresholds)
and ``README.md`` with a loader example. The pre- and post-processing (resize, normalisation, TTA,
thresholds, ROI crops) stays in the harness: ``harness predict`` is the reference implementation.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from harness.engine.device import resolve_device
from harness.errors import ConfigError
from harness.pipelines.artifacts import run_config
from harness.pipelines.predict import load_stages
from harness.pipelines.registry import get_pipeline

logger = logging.getLogger(__name__)

Format = Literal["torchscript", "onnx"]
FORMATS: tuple[str, ...] = ("torchscript", "onnx")

LOADER = """# {pipeline}: exported stages

Stages in order: {stages}. Inputs are float32 N x {channels} x H x W images, grey scaled to [0, 1],
replicated to {channels} channels and normalised with ImageNet mean/std (harness.data.transforms.to_input).
See pipeline.json for each stage's input size, classes and the thresholds of the run.

```python
{example}
```
"""

TS_EXAMPLE = """import torch
model = torch.jit.load("{file}")
x = torch.zeros(1, {channels}, {size}, {size})
out = model(x)  # {kind}: {what}"""

ONNX_EXAMPLE = """import onnxruntime as ort, numpy as np   # pip install onnxruntime
sess = ort.InferenceSession("{file}")
out = sess.run(None, {{"input": np.zeros((1, {channels}, {size}, {size}), np.float32)}})  # {kind}: {what}"""

WHAT = {"classifier": "class logits", "segmenter": "mask logits (N x C x H x W)",
        "joint": "(mask logits, class logits)"}


class _Tupled(nn.Module):
    """Multi-task models return a tuple; tracing wants tensors or tuples of tensors, which it is."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> Any:
        out = self.model(x)
        return tuple(out) if isinstance(out, list | tuple) else out


def export_run(run_dir: Path, out_dir: Path, fmt: str = "torchscript") -> list[Path]:
    """Write every stage of the run in ``fmt`` plus pipeline.json and README.md; returns the paths."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, but got {fmt!r}.")
    config = run_config(Path(run_dir))
    stages = load_stages(Path(run_dir), config, resolve_device(config.runtime.model_copy(update={"device": "cpu"})))
    spec = get_pipeline(config.pipeline)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    described: list[dict[str, Any]] = []
    examples: list[str] = []
    for st in spec.stages:
        size = int(getattr(config, st.section).image_size)
        model = _Tupled(stages[st.name].model.float().eval())
        x = torch.zeros(1, config.data.channels, size, size)
        path = out_dir / f"{st.name}.{'pt' if fmt == 'torchscript' else 'onnx'}"
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", (FutureWarning, DeprecationWarning))  # both formats still load fine
            if fmt == "torchscript":
                torch.jit.trace(model, x, strict=False).save(str(path))
            else:
                _onnx(model, x, path, st.kind)
        files.append(path)
        described.append({"stage": st.name, "kind": st.kind, "classes": st.classes, "input_size": size,
                          "file": path.name})
        template = TS_EXAMPLE if fmt == "torchscript" else ONNX_EXAMPLE
        examples.append(template.format(file=path.name, channels=config.data.channels, size=size, kind=st.kind,
                                        what=WHAT[st.kind]))
    meta = {"pipeline": config.pipeline, "format": fmt, "channels": config.data.channels, "stages": described,
            "eval": config.eval.model_dump(mode="json"), "roi": config.roi.model_dump(mode="json"),
            "source_run": str(Path(run_dir).resolve())}
    (out_dir / "pipeline.json").write_text(json.dumps(meta, indent=2))
    (out_dir / "README.md").write_text(LOADER.format(pipeline=f"pipeline {spec.label} ({spec.title})",
                                                     stages=", ".join(s["stage"] for s in described),
                                                     channels=config.data.channels,
                                                     example="\n\n".join(examples)))
    logger.info("exported %d stage(s) of %s as %s -> %s", len(files), run_dir, fmt, out_dir)
    return [*files, out_dir / "pipeline.json", out_dir / "README.md"]


def _onnx(model: nn.Module, x: torch.Tensor, path: Path, kind: str) -> None:
    try:
        import onnx  # noqa: F401  (the TorchScript-based exporter writes through it)
    except ImportError:
        raise ConfigError("ONNX export needs the onnx package: pip install 'harness[export]' (or pip install onnx)."
                          ) from None
    outputs = ["mask_logits", "class_logits"] if kind == "joint" else ["output"]
    torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["input"], output_names=outputs,
                      dynamic_axes={"input": {0: "batch"}, **{o: {0: "batch"} for o in outputs}})
