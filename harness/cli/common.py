"""Argument helpers shared by the verb modules."""

from __future__ import annotations

from harness.errors import ConfigError


def parse_columns(text: str | None) -> dict[str, str]:
    """'label=diagnosis,patient_id=case' -> {'label': 'diagnosis', 'patient_id': 'case'}."""
    if not text:
        return {}
    out: dict[str, str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"--columns {text}: expected name=column pairs, e.g. label=diagnosis,patient_id=case.")
        out[key.strip()] = value.strip()
    return out
