"""The output cache (harness.engine.outputs): hits return exactly what was stored, keys separate what
differs, a damaged entry is one warning and a recomputation, and concurrent writers compute once."""

from __future__ import annotations

import logging
import multiprocessing
import time
from pathlib import Path

import numpy as np
import pytest

from harness.engine.outputs import OutputCache, array_digest, entry_key

PARTS = {"heads": [["softmax", False, None]], "views": ["identity", "hflip"], "batch_size": 16}


def _images(seed: int = 0, n: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 12, 10), dtype=np.uint8)


class Counter:
    """A compute function that counts its calls and returns fixed arrays."""

    def __init__(self, n: int = 5):
        self.calls = 0
        self.outputs = [np.random.default_rng(1).random((n, 3), dtype=np.float32),
                        np.random.default_rng(2).random((n, 4, 4)).astype(np.float32)]

    def __call__(self) -> list[np.ndarray]:
        self.calls += 1
        return [a.copy() for a in self.outputs]


def test_a_hit_returns_exactly_the_computed_arrays(tmp_path):
    cache, compute = OutputCache(tmp_path / "outputs"), Counter()
    key = entry_key(_images(), PARTS)
    first, hit1 = cache.get_or_compute(key, 5, 2, compute)
    second, hit2 = OutputCache(tmp_path / "outputs").get_or_compute(key, 5, 2, compute)
    assert (hit1, hit2, compute.calls) == (False, True, 1)
    for a, b, c in zip(first, second, compute.outputs, strict=True):
        assert a.dtype == b.dtype == c.dtype and np.array_equal(a, c) and np.array_equal(b, c)


def test_keys_separate_inputs_and_settings():
    images = _images()
    key = entry_key(images, PARTS)
    assert entry_key(images.copy(), dict(PARTS)) == key, "same content, same key"
    changed = images.copy()
    changed[2, 3, 4] ^= 1
    others = [
        entry_key(changed, PARTS),  # one pixel
        entry_key(images[:4], PARTS),  # another image set
        entry_key(images[[1, 0, 2, 3, 4]], PARTS),  # same images, other order
        entry_key(images.reshape(5, 10, 12), PARTS),  # same bytes, other shape
        entry_key(images.astype(np.int16), PARTS),  # same values, other dtype
        entry_key(images, {**PARTS, "views": ["identity"]}),  # TTA off
        entry_key(images, {**PARTS, "heads": [["sigmoid[:, 0]", True, None]]}),
        entry_key(images, {**PARTS, "batch_size": 8}),
    ]
    assert len({key, *others}) == len(others) + 1
    assert array_digest(np.asfortranarray(images)) == array_digest(images), "layout is not content"


def _write_garbage(path: Path, kind: str, key: str) -> None:
    if kind == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "not_npz":
        np.save(path.open("wb"), np.zeros(3))
    elif kind == "wrong_rows":
        OutputCache(path.parent).write(key, [np.zeros((4, 3), np.float32), np.zeros((4, 4, 4), np.float32)])
    elif kind == "other_key":
        OutputCache(path.parent).write("0" * 32, Counter().outputs)
        path.write_bytes((path.parent / f"{'0' * 32}.npz").read_bytes())


@pytest.mark.parametrize("kind", ["truncated", "empty", "not_npz", "wrong_rows", "other_key"])
def test_a_damaged_entry_is_one_warning_and_computed_again(tmp_path, caplog, kind):
    cache, compute = OutputCache(tmp_path), Counter()
    key = entry_key(_images(), PARTS)
    cache.get_or_compute(key, 5, 2, compute)
    _write_garbage(cache.path(key), kind, key)
    with caplog.at_level(logging.WARNING, logger="harness.engine.outputs"):
        out, hit = cache.get_or_compute(key, 5, 2, compute)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not hit and compute.calls == 2
    assert all(np.array_equal(a, b) for a, b in zip(out, compute.outputs, strict=True))
    assert len(warnings) == 1 and "damaged output cache entry" in warnings[0].getMessage()
    assert "\n" not in warnings[0].getMessage()
    caplog.clear()  # the entry was rewritten: the next call is a clean hit
    assert cache.get_or_compute(key, 5, 2, compute)[1] and not caplog.records


def test_a_directory_in_place_of_an_entry_never_fails_the_run(tmp_path, caplog):
    cache, compute = OutputCache(tmp_path), Counter()
    key = entry_key(_images(), PARTS)
    cache.path(key).mkdir()
    with caplog.at_level(logging.WARNING, logger="harness.engine.outputs"):
        out, hit = cache.get_or_compute(key, 5, 2, compute)
    assert not hit and np.array_equal(out[1], compute.outputs[1])
    messages = [r.getMessage() for r in caplog.records]
    assert "is a directory" in messages[0] and str(cache.path(key)) in messages[-1]


def test_an_unwritable_store_computes_without_caching(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("in the way of the cache directory")
    cache, compute = OutputCache(blocker / "outputs"), Counter()
    with caplog.at_level(logging.WARNING, logger="harness.engine.outputs"):
        out, hit = cache.get_or_compute(entry_key(_images(), PARTS), 5, 2, compute)
    assert not hit and compute.calls == 1 and np.array_equal(out[0], compute.outputs[0])
    assert len(caplog.records) == 1 and "without it" in caplog.records[0].getMessage()


def _worker(directory: str, key: str, marker: str, queue) -> None:
    def compute() -> list[np.ndarray]:
        with open(marker, "a") as f:
            f.write("computed\n")
        time.sleep(0.3)  # long enough for the other process to reach the lock
        return Counter().outputs

    out, hit = OutputCache(Path(directory)).get_or_compute(key, 5, 2, compute)
    queue.put((hit, [a.tobytes() for a in out]))


def test_two_processes_compute_one_entry_once(tmp_path):
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    key, marker = entry_key(_images(), PARTS), tmp_path / "calls.txt"
    procs = [ctx.Process(target=_worker, args=(str(tmp_path / "outputs"), key, str(marker), queue)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert marker.read_text().count("computed") == 1, "the second process waited for the first one's entry"
    assert sorted(hit for hit, _ in results) == [False, True]
    assert results[0][1] == results[1][1] == [a.tobytes() for a in Counter().outputs]
    assert not list((tmp_path / "outputs").glob("*.tmp")) and not list((tmp_path / "outputs").glob(".*.tmp"))
