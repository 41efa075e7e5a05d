"""Command line: parses arguments and calls library functions, nothing else.

Each verb group lives in its own module with a ``register(subparsers)`` function that adds its
parsers and sets ``func`` (called with the parsed namespace, returns an exit code).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from harness import __version__
from harness.errors import HarnessError

VERB_MODULES = ("data", "run", "rerun", "report", "study", "predict")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="harness",
        description="Study harness for breast-ultrasound deep learning (task order: classification-first A, "
                    "segmentation-first B, joint C, and any registered plug-in pipeline).",
    )
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE|FILE.py",
                        help="import a plug-in that registers pipelines (repeatable; also $HARNESS_PLUGINS)")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for name in VERB_MODULES:
        importlib.import_module(f"harness.cli.{name}").register(sub)
    return parser


def setup_logging(debug: bool, quiet: bool) -> None:
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s" if not debug else "%(levelname)s %(name)s: %(message)s")
    for noisy in ("PIL", "matplotlib", "urllib3", "filelock", "timm", "fsspec"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``harness`` console script. Returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command = ["harness", *(sys.argv[1:] if argv is None else argv)]  # the exact command, for manifests
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    setup_logging(args.debug, args.quiet)
    try:
        if args.plugin:
            _load_plugins(args.plugin)
        return int(args.func(args) or 0)
    except HarnessError as e:
        if args.debug:
            raise
        for problem in e.problems:  # one line each, whatever a wrapped library message held
            print("error: " + " ".join(str(problem).split()), file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `harness study status DIR | head`
        sys.stderr.close()
        return 0
    except OSError as e:  # the machine, not the harness: a full disk, no permission, a path under a file
        if args.debug:
            raise
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e} (check free space and permissions, or choose another path).",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; what was already computed is kept on disk.", file=sys.stderr)
        return 130


def _load_plugins(refs: list[str]) -> None:
    """Import ``--plugin`` references and pass them on to child processes (Ray workers) via the env."""
    import os
    from pathlib import Path

    from harness.plugins import ENV, load_plugins

    load_plugins(refs)
    absolute = [str(Path(r).resolve()) if r.endswith(".py") else r for r in refs]
    os.environ[ENV] = os.pathsep.join([*absolute, *filter(None, os.environ.get(ENV, "").split(os.pathsep))])
