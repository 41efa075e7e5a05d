"""W&B tracking of trials: one run per trial, final run and agent run; online whenever the user is logged in.

config = trial params (+ where the trial sits in Optuna and Ray), history = per-epoch stage metrics,
summary = final metrics, group = study, ``job_type`` search / final / agent, tags ``study:<name>`` and
``pipeline:<p>``. A run's id is derived from what it *is* (the study instance and the Optuna trial, or
the final run's directory), so a Ray retry or a resumed study continues the same W&B run
(``resume="allow"``) instead of starting another.

What the harness logged is also written, in plain JSON, to ``RUN_DIR/wandb.json`` (:data:`RECORD`):
ids, mode, config, summary, history, the offline run directory. That file, not W&B's private
``.wandb`` format, is what tests and tools read back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import netrc
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

logger = logging.getLogger(__name__)

WandbMode = Literal["online", "offline", "disabled"]
JobType = Literal["search", "final", "agent", "report"]
RECORD = "wandb.json"
"""File in a run directory: what the harness logged to W&B for that run."""
DEFAULT_HOST = "https://api.wandb.ai"


def has_wandb_credentials(env: Mapping[str, str] | None = None) -> bool:
    """Whether W&B would find credentials: ``WANDB_API_KEY``, ``WANDB_IDENTITY_TOKEN_FILE``, or a
    netrc entry (``$NETRC``, else ``~/.netrc``/``~/_netrc``, as ``wandb login`` writes) for the W&B
    host (``WANDB_BASE_URL``, default api.wandb.ai). Reads files only; no network."""
    env = os.environ if env is None else env
    if env.get("WANDB_API_KEY") or env.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    from urllib.parse import urlsplit

    host = urlsplit(env.get("WANDB_BASE_URL") or DEFAULT_HOST).netloc
    home = Path(env.get("HOME") or Path.home())
    candidates = [Path(env["NETRC"]).expanduser()] if env.get("NETRC") else [home / ".netrc", home / "_netrc"]
    for path in candidates:
        if not path.is_file():
            continue
        try:
            entry = netrc.netrc(str(path)).authenticators(host)
        except (netrc.NetrcParseError, OSError):
            continue
        if entry and entry[2]:
            return True
    return False


def wandb_mode(configured: WandbMode | None, env: Mapping[str, str] | None = None) -> WandbMode | None:
    """The run's mode: the study's ``wandb.mode`` when set; else None when ``WANDB_MODE`` is set (W&B
    reads it itself); else online when the user is logged in (:func:`has_wandb_credentials`), offline
    only without credentials."""
    env = os.environ if env is None else env
    if configured:
        return configured
    if env.get("WANDB_MODE"):
        return None
    return "online" if has_wandb_credentials(env) else "offline"


def is_online(configured: WandbMode | None, env: Mapping[str, str] | None = None) -> bool:
    """Whether runs with this mode reach the W&B server (``WANDB_MODE`` included)."""
    env = os.environ if env is None else env
    mode = wandb_mode(configured, env) or env.get("WANDB_MODE", "").lower()
    return mode in ("online", "run")


def stable_run_id(*parts: object) -> str:
    """A W&B run id from what a run is (e.g. study instance, Optuna study, trial number): the same
    trial gets the same id in a Ray retry or after a resume."""
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:16]


def _clean(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if not (isinstance(v, float) and not math.isfinite(v))}


def _scalars(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in _clean(d).items() if isinstance(v, (int, float, str, bool))}


def read_record(run_dir: Path) -> dict[str, Any]:
    """``RUN_DIR/wandb.json``: what the harness logged to W&B for the run in ``run_dir``."""
    return dict(json.loads((Path(run_dir) / RECORD).read_text()))


class TrialTracker:
    """Thin wrapper around one W&B run; a disabled tracker does nothing (and writes no record).

    ``objectives`` are (metric, "max"|"min"): each gets ``define_metric`` with that summary and is logged
    once, with the final result. ``epoch_objective`` names an objective under which every epoch's
    stage-aligned proxy is logged too (the history W&B's hyperband early termination compares, see
    :mod:`harness.tune.sweep`); its summary is then the last value, the run's final objective.
    ``record`` is the run directory's ``wandb.json``.
    """

    def __init__(self, *, enabled: bool, project: str, group: str, name: str, config: dict[str, Any], directory: Path,
                 mode: WandbMode | None = None, run_id: str | None = None, entity: str | None = None,
                 job_type: JobType = "search", tags: Sequence[str] = (),
                 objectives: Sequence[tuple[str, str]] = (), epoch_objective: str | None = None,
                 record: Path | None = None):
        self.run: Any = None
        self.record_path = record
        self.history: list[dict[str, Any]] = []
        self.objectives = list(objectives)
        self.epoch_objective = epoch_objective
        self._objective_rows = 0
        self._last_proxy: float | None = None
        self.metrics: dict[str, str] = {}
        self.info: dict[str, Any] = {}
        if not enabled:
            return
        import wandb

        directory = Path(directory).resolve()
        directory.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("WANDB_SILENT", "true")
        resolved = wandb_mode(mode)
        self.run = wandb.init(project=project, entity=entity, group=group, name=name, config=config,
                              dir=str(directory), mode=resolved, reinit="finish_previous", id=run_id,
                              resume="allow" if run_id else None, job_type=job_type, tags=list(tags),
                              settings=wandb.Settings(console="off", x_disable_stats=True, silent=True))
        for metric, direction in self.objectives:
            summary = "last" if metric == epoch_objective else direction
            self.run.define_metric(metric, summary=summary)
            self.metrics[metric] = summary
        self.info = {"id": self.run.id, "name": name, "project": self.run.project, "entity": entity,
                     "group": group, "job_type": job_type, "tags": list(tags),
                     "mode": resolved or os.environ.get("WANDB_MODE"),
                     "offline": bool(self.run.offline), "resume": "allow" if run_id else None,
                     "sweep_id": self.run.sweep_id, "run_dir": str(Path(self.run.dir).parent),
                     "config": _clean(config), "define_metric": self.metrics}
        self._write("running", {})

    def log_epoch(self, stage: str, record: dict[str, Any], proxy: float | None = None,
                  position: int | None = None) -> None:
        """One epoch's stage metrics; with ``epoch_objective``, also ``proxy`` as the objective's
        ``position``-th value (its stage-aligned time): when an earlier stage stopped early, its last
        value is repeated up to there, so that every run's n-th value is the same stage and epoch."""
        if self.run is None:
            return
        row = _clean({f"{stage}/{k}": v for k, v in record.items()})
        if self.epoch_objective and proxy is not None and math.isfinite(proxy):
            while position is not None and self._last_proxy is not None and self._objective_rows < position - 1:
                self._log({self.epoch_objective: self._last_proxy})
                self._objective_rows += 1
            row[self.epoch_objective] = proxy
            self._objective_rows += 1
            self._last_proxy = proxy
        self._log(row)

    def _log(self, row: dict[str, Any]) -> None:
        self.history.append(row)
        self.run.log(row)  # no explicit step: a resumed run continues after its last step

    def finish(self, summary: dict[str, Any], failed: bool = False) -> None:
        if self.run is None:
            return
        final = _scalars({m: summary[m] for m, _ in self.objectives if m in summary})
        if final:
            self.history.append(final)
            self.run.log(final)
        scalars = _scalars(summary)
        for k, v in scalars.items():
            if k not in final:
                self.run.summary[k] = v
        self.run.finish(exit_code=1 if failed else 0)
        self.run = None
        self._write("failed" if failed else "finished", scalars)

    def _write(self, state: str, summary: dict[str, Any]) -> None:
        if self.record_path is None:
            return
        from harness.data.io import write_bytes_atomic

        body = {**self.info, "state": state, "summary": summary, "history": self.history}
        self.record_path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(self.record_path, json.dumps(body, indent=2, default=str).encode())


def publish_report(*, project: str, entity: str | None, group: str, mode: WandbMode | None, run_id: str,
                   report_dir: Path, directory: Path) -> str | None:
    """Log the study's report (``index.html``) and Table 9 files as a W&B artifact of type ``report``
    from a run of job type ``report`` in the study's group, when W&B is online; returns the artifact
    name, or None (offline or disabled: the files are on disk, nothing is copied into W&B's directory)."""
    if not is_online(mode):
        return None
    import wandb

    files = [p for p in sorted(Path(report_dir).glob("*")) if p.is_file()]
    if not files:
        return None
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    run = wandb.init(project=project, entity=entity, group=group, name=f"{group}-report", job_type="report",
                     id=run_id, resume="allow", dir=str(directory), mode="online", reinit="finish_previous",
                     tags=[f"study:{group}"], settings=wandb.Settings(console="off", x_disable_stats=True, silent=True))
    name = f"{group}-report"
    artifact = wandb.Artifact(name, type="report", description=f"harness report of study {group}: index.html, "
                              "Table 9 (csv, md, tex, xlsx) and the figures")
    for path in files:
        artifact.add_file(str(path))
    run.log_artifact(artifact)
    run.finish()
    return name
