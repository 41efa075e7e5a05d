"""Assertions on what the CLI printed: bad input is only one-line ``error:`` messages, no traceback."""

from __future__ import annotations


def assert_error_lines(err: str, *expected: str) -> str:
    """``err`` (captured stderr) holds only ``error: ...`` lines, no traceback, and every ``expected``
    text; returns it for further checks."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines and all(line.startswith("error: ") for line in lines), err
    for text in expected:
        assert text in err, err
    return err
