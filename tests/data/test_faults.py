"""Issue 12, items 9 and 21: a full disk or an unwritable place is one error line, checked up front where the
size is known, and leaves neither temp files nor half-written datasets (cache, synth, import, atomic writes)."""

from __future__ import annotations

import errno
import os
import shutil
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.data import cache as cache_module
from harness.data import output, synth
from harness.data.cache import cache_bytes, load_cache
from harness.data.check import load_index
from harness.data.output import require_free_space, staged_output, write_bytes_atomic
from harness.data.records import METADATA_FILE
from harness.errors import OutputError
from harness.testing.hostile import failing_writes

Usage = namedtuple("Usage", "total used free")


def _free(monkeypatch, free: int) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: Usage(10**12, 10**12 - free, free))


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_require_free_space(tmp_path, monkeypatch):
    _free(monkeypatch, 100 * 2**20)
    require_free_space(tmp_path / "new" / "dir", 50 * 2**20, "x", "y")  # a missing path: its existing ancestor
    with pytest.raises(OutputError) as e:
        require_free_space(tmp_path / "new", 200 * 2**20, "the thing", "free some")
    assert e.value.problems == [f"{tmp_path / 'new'}: the thing needs about 200.0 MB but only 100.0 MB are free on "
                                "its disk; free some."]


# --- the decode cache ---------------------------------------------------------------------------------


@pytest.fixture
def index(dataset):
    return load_index(dataset)


def test_cache_checks_free_space_before_writing(index, tmp_path, monkeypatch):
    _free(monkeypatch, cache_bytes(len(index), 64) // 2)
    with pytest.raises(OutputError, match=r"the 64 px image cache of 12 images needs about .* data.cache_dir"):
        load_cache(index, 64, tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*.npy"))


def test_disk_full_while_caching_is_one_line_and_leaves_no_temp_files(index, tmp_path, monkeypatch):
    with failing_writes(cache_module, 5 * 32 * 32), pytest.raises(OutputError) as e:
        load_cache(index, 32, tmp_path / "cache")
    assert len(e.value.problems) == 1
    assert "cannot write the 32 px image cache" in e.value.problems[0] and "No space left" in e.value.problems[0]
    assert "free disk space" in e.value.problems[0]
    assert {p for p in _tree(tmp_path / "cache") if not p.endswith(".lock")} == set()
    assert load_cache(index, 32, tmp_path / "cache").images.shape == (12, 32, 32)  # a later build works


def test_cache_is_written_without_a_writable_memory_map(index, tmp_path, monkeypatch):
    """A memory-mapped write on a full disk is SIGBUS, not an exception: the builder must not use one."""
    real = np.memmap.__new__

    def read_only(subtype, filename, dtype=np.uint8, mode="r+", *args, **kwargs):
        assert mode == "r", f"writable memmap of {filename}"
        return real(subtype, filename, dtype, mode, *args, **kwargs)

    monkeypatch.setattr(np.memmap, "__new__", read_only)
    cache = load_cache(index, 16, tmp_path / "cache")
    for n, record in enumerate(index.records):
        image, mask = cache_module.load_resized(index, record, 16)
        assert np.array_equal(cache.images[n], image) and np.array_equal(cache.masks[n], mask)


# --- atomic writes ------------------------------------------------------------------------------------------


def test_write_bytes_atomic_on_a_full_disk(tmp_path, monkeypatch):
    target = tmp_path / "d" / "x.json"
    write_bytes_atomic(target, b"old")

    with failing_writes(output, 100), pytest.raises(OutputError) as e:
        write_bytes_atomic(target, b"new" * 10_000)
    assert e.value.problems[0].startswith(f"{target}: cannot write it (") and "free disk space" in e.value.problems[0]
    assert target.read_bytes() == b"old" and sorted(os.listdir(target.parent)) == ["x.json"]


# --- synth and import: whole or nothing ------------------------------------------------------------------------


def _fail_after(monkeypatch, module, name, n):
    real, calls = getattr(module, name), [0]

    def flaky(*args, **kwargs):
        calls[0] += 1
        if calls[0] > n:
            raise OSError(errno.ENOSPC, "No space left on device", str(args[0]))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, flaky)


def test_synth_on_a_full_disk_leaves_no_half_dataset(capsys, tmp_path, monkeypatch):
    _fail_after(monkeypatch, synth, "_png", 5)
    code = main(["data", "synth", str(tmp_path / "out"), "--images", "6", "--size", "32"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "No space left on device" in errors[0] and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_synth_failure_keeps_the_previous_synthetic_set(tmp_path, monkeypatch):
    out = synth.synthesize(tmp_path / "out", n_images=6, size=32).out
    before = {p: (out / p).read_bytes() for p in _tree(out) if (out / p).is_file()}
    _fail_after(monkeypatch, synth, "_png", 3)
    with pytest.raises(OutputError):
        synth.synthesize(out, n_images=9, size=32, seed=1)
    assert {p: (out / p).read_bytes() for p in _tree(out) if (out / p).is_file()} == before


def test_synth_checks_free_space_first(capsys, tmp_path, monkeypatch):
    _free(monkeypatch, 2**20)
    code = main(["data", "synth", str(tmp_path / "out"), "--images", "300", "--size", "256"])
    err = capsys.readouterr().err
    assert code == 2 and "a synthetic dataset of 300 images at 256 px needs about" in err
    assert not (tmp_path / "out").exists()


def test_import_busi_on_a_full_disk(capsys, make_busi, tmp_path, monkeypatch):
    src = make_busi(tmp_path / "busi")
    (tmp_path / "out").mkdir()
    _fail_after(monkeypatch, shutil, "copyfile", 2)
    code = main(["data", "import-busi", str(src), str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "No space left on device" in err and "Traceback" not in err
    assert os.listdir(tmp_path / "out") == []  # the existing empty directory stays, empty


def test_import_busi_checks_free_space_first(capsys, make_busi, tmp_path, monkeypatch):
    src = make_busi(tmp_path / "busi")
    _free(monkeypatch, 1000)
    assert main(["data", "import-busi", str(src), str(tmp_path / "out")]) == 2
    assert "the imported dataset (6 images) needs about" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_staged_output_publishes_the_metadata_last_and_takes_back_a_failed_publish(tmp_path, monkeypatch):
    out = tmp_path / "out"
    order = []
    real = os.replace
    monkeypatch.setattr(output.os, "replace", lambda a, b: order.append(Path(b).name) or real(a, b))
    with staged_output(out, last=(METADATA_FILE,)) as stage:
        (stage / "images").mkdir()
        for name in ("a.png", "b.png"):
            (stage / "images" / name).write_bytes(b"x")
        (stage / METADATA_FILE).write_bytes(b"meta")
        (stage / "zzz.txt").write_bytes(b"z")
    assert order[-1] == METADATA_FILE and _tree(out) == {"images", "images/a.png", "images/b.png", METADATA_FILE,
                                                         "zzz.txt"}

    def fail_on_metadata(a, b):
        if Path(b).name == METADATA_FILE:
            raise OSError(errno.EIO, "Input/output error")
        real(a, b)

    monkeypatch.setattr(output.os, "replace", fail_on_metadata)
    with pytest.raises(OutputError, match="Input/output error"), \
            staged_output(tmp_path / "new", last=(METADATA_FILE,)) as stage:
        (stage / "images").mkdir()
        (stage / "images" / "c.png").write_bytes(b"x")
        (stage / METADATA_FILE).write_bytes(b"meta")
    assert not (tmp_path / "new").exists()
