"""W&B tracking of trials: one run per trial, offline unless the user chose otherwise.

config = trial params, history = per-epoch stage metrics, summary = final metrics, group = study.
Also a reader for offline run files (``run-*.wandb``), used by tests and ``study status``.
"""

from __future__ import annotations

import logging
import math
import os
import struct
from pathlib import Path
from typing import Any, Literal

logger = logging.getLogger(__name__)


WandbMode = Literal["online", "offline", "disabled"]


def wandb_mode(configured: WandbMode | None) -> WandbMode | None:
    """The spec's mode, else None when the user set WANDB_MODE (wandb reads it itself), else online
    with an API key, else offline."""
    if configured:
        return configured
    if os.environ.get("WANDB_MODE"):
        return None
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if not (isinstance(v, float) and not math.isfinite(v))}


class TrialTracker:
    """Thin wrapper around one W&B run; a disabled tracker does nothing."""

    def __init__(self, *, enabled: bool, project: str, group: str, name: str, config: dict[str, Any], directory: Path,
                 mode: WandbMode | None = None, resume_id: str | None = None):
        self.run = None
        if not enabled:
            return
        import wandb

        directory.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("WANDB_SILENT", "true")
        self.run = wandb.init(project=project, group=group, name=name, config=config, dir=str(directory),
                              mode=wandb_mode(mode), reinit="finish_previous", id=resume_id,
                              resume="allow" if resume_id else None,
                              settings=wandb.Settings(console="off", x_disable_stats=True, silent=True))
        self._step = 0

    def log_epoch(self, stage: str, record: dict[str, Any]) -> None:
        if self.run is None:
            return
        self._step += 1
        self.run.log(_clean({f"{stage}/{k}": v for k, v in record.items()}), step=self._step)

    def finish(self, summary: dict[str, Any], failed: bool = False) -> None:
        if self.run is None:
            return
        for k, v in _clean(summary).items():
            if isinstance(v, (int, float, str, bool)):
                self.run.summary[k] = v
        self.run.finish(exit_code=1 if failed else 0)
        self.run = None


# --- reading offline runs (wandb's leveldb-style log of protobuf records) -------------------------

_BLOCK = 32 * 1024
_HEADER = 7


def _records(data: bytes) -> list[bytes]:
    """Split a wandb datastore file into record payloads (blocks of 32 KiB, 7-byte chunk headers)."""
    out, pos, pending = [], 7, b""  # the file starts with a 7-byte 'W&B' magic + version header
    while pos + _HEADER <= len(data):
        left_in_block = _BLOCK - (pos % _BLOCK)
        if left_in_block < _HEADER:
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack_from("<IHB", data, pos)
        pos += _HEADER
        chunk = data[pos:pos + length]
        pos += length
        if kind == 0 and length == 0:
            continue
        pending += chunk
        if kind in (1, 4):  # FULL or LAST
            out.append(pending)
            pending = b""
    return out


def read_offline_run(run_dir: Path) -> dict[str, Any]:
    """config, summary and history (list of dicts) of an offline run directory."""
    import json

    from wandb.proto import wandb_internal_pb2 as pb

    files = sorted(Path(run_dir).glob("run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"{run_dir}: no run-*.wandb file")
    config: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    history: list[dict[str, Any]] = []

    def value(item: Any) -> Any:
        return json.loads(item.value_json)

    for payload in _records(files[0].read_bytes()):
        rec = pb.Record()  # type: ignore[attr-defined]  # protobuf classes are generated at import time
        try:
            rec.ParseFromString(payload)
        except Exception:  # noqa: BLE001 - a torn last record of a killed run
            continue
        kind = rec.WhichOneof("record_type")
        if kind == "config":
            for item in rec.config.update:
                config[item.key] = value(item)
        elif kind == "run" and rec.run.config.update:
            for item in rec.run.config.update:
                config[item.key] = value(item)
        elif kind == "summary":
            for item in rec.summary.update:
                summary[item.key or "/".join(item.nested_key)] = value(item)
        elif kind == "history":
            history.append({(i.key or "/".join(i.nested_key)): value(i) for i in rec.history.item})
    config = {k: (v.get("value") if isinstance(v, dict) and set(v) <= {"value", "desc"} else v)
              for k, v in config.items() if k != "_wandb"}
    return {"config": config, "summary": summary, "history": history}
