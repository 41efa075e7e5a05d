"""`harness data ...` verbs."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's verbs (filled in by its issue)."""
