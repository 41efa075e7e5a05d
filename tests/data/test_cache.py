"""harness.data.cache: built once, verified on every load, rebuilt when damaged, safe under concurrency."""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from harness.data.cache import ArrayCache, cache_stem, load_cache, load_resized, resize_image, resize_mask
from harness.data.check import load_index
from harness.errors import DataError


@pytest.fixture
def index(make_dataset, tmp_path):
    root = make_dataset(tmp_path / "ds", n=9, size=[(40, 30), (64, 64), (20, 28)], modes=("L", "RGB", "RGBA", "I;16"))
    return load_index(root)


def _files(index, size):
    d = index.root / ".cache"
    stem = cache_stem(index, size)
    return d / f"{stem}.images.npy", d / f"{stem}.masks.npy", d / f"{stem}.json"


def test_build_shapes_order_and_content(index):
    cache = load_cache(index, 32)
    assert isinstance(cache, ArrayCache) and len(cache) == 9
    assert cache.images.shape == cache.masks.shape == (9, 32, 32)
    assert cache.images.dtype == cache.masks.dtype == np.uint8
    assert set(np.unique(cache.masks)) == {0, 1}
    assert cache.ids == tuple(index.ids()) and cache.row("m003") == 3
    image, mask = load_resized(index, index.records[4], 32)
    assert np.array_equal(cache.images[4], image) and np.array_equal(cache.masks[4], mask)
    assert cache.masks[index.ids().index("n004")].sum() == 0 and cache.masks[0].sum() > 0
    with pytest.raises(DataError, match='"nope" is not in the cache'):
        cache.row("nope")


def test_second_load_reuses_and_sizes_are_separate(index, caplog):
    load_cache(index, 32)
    images, _, _ = _files(index, 32)
    mtime = images.stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="harness.data.cache"):
        load_cache(index, 32)
    assert images.stat().st_mtime_ns == mtime and "building" not in caplog.text
    assert load_cache(index, 16).images.shape == (9, 16, 16)
    assert images.exists() and all(f.exists() for f in _files(index, 16))
    assert not list((index.root / ".cache").glob("*.tmp*"))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage,part,reason",
    [
        (_truncate, 0, "unreadable"),
        (_flip, 0, "checksum mismatch"),
        (_flip, 1, "checksum mismatch"),
        (lambda p: p.unlink(), 1, "missing file"),
        (lambda p: p.write_text("{garbage"), 2, "unreadable"),
    ],
    ids=["truncated-images", "flipped-images", "flipped-masks", "deleted-masks", "garbage-sidecar"],
)
def test_damaged_cache_is_rebuilt_never_trusted(index, caplog, damage, part, reason):
    good = np.array(load_cache(index, 24).images)
    damage(_files(index, 24)[part])
    with caplog.at_level(logging.WARNING, logger="harness.data.cache"):
        cache = load_cache(index, 24)
    assert "not usable" in caplog.text and reason in caplog.text
    assert np.array_equal(cache.images, good)


def test_changed_source_image_triggers_rebuild(index, write_png, caplog):
    load_cache(index, 24)
    record = index.records[0]
    time.sleep(0.01)
    write_png(index.image_file(record), np.full((30, 40), 200, np.uint8))
    with caplog.at_level(logging.WARNING, logger="harness.data.cache"):
        cache = load_cache(index, 24)
    assert "source images or masks changed" in caplog.text
    assert (cache.images[0] == 200).all()


def test_cache_dir_and_subset_get_their_own_files(index, tmp_path):
    cache = load_cache(index.subset(["n005", "b000"]), 16, cache_dir=tmp_path / "elsewhere")
    assert cache.ids == ("n005", "b000") and cache.images_path.parent == tmp_path / "elsewhere"
    assert cache.masks[1].sum() > 0 and cache.masks[0].sum() == 0


def test_pickle_reopens_the_memmap(index):
    cache = load_cache(index, 32)
    blob = pickle.dumps(cache)
    assert len(blob) < 4096  # paths, not pixels
    again = pickle.loads(blob)
    assert np.array_equal(again.images, cache.images) and again.row("b000") == 0


def test_resize_helpers():
    up = resize_image(np.arange(16, dtype=np.uint8).reshape(4, 4), 8)
    assert up.shape == (8, 8) and up.dtype == np.uint8
    mask = np.zeros((10, 20), bool)
    mask[2:5, 3:9] = True
    small = resize_mask(mask, 5)
    assert small.dtype == np.uint8 and set(np.unique(small)) <= {0, 1} and small.sum() > 0


def test_concurrent_builds_do_not_corrupt(index):
    code = (
        "import sys; from harness.data.check import load_index; from harness.data.cache import load_cache; "
        "c = load_cache(load_index(sys.argv[1], check=False), 48); print(int(c.images.sum()))"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(index.root)], stdout=subprocess.PIPE, env=env)
             for _ in range(2)]
    sums = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs) and sums[0] == sums[1]
    assert str(int(load_cache(index, 48).images.sum())).encode() == sums[0]
    assert not list((index.root / ".cache").glob(".*tmp*"))


def test_cached_epoch_is_much_faster_than_decoding(make_dataset, tmp_path):
    index = load_index(make_dataset(tmp_path / "speed", n=40, size=128), check=False)
    cache = load_cache(index, 64)

    def decode_epoch():
        for r in index.records:
            load_resized(index, r, 64)

    def cached_epoch():
        for r in index.records:
            n = cache.row(r.image_id)
            np.array(cache.images[n]), np.array(cache.masks[n])

    def best(fn):
        times = []
        for _ in range(3):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)

    assert best(decode_epoch) > 3 * best(cached_epoch)


def test_mixed_formats_and_renamed_columns_through_check_split_cache(make_dataset, tmp_path):
    from harness.data.splits import get_or_create_split

    rename = {"label": "diagnosis", "patient_id": "case", "image_path": "file"}
    root = make_dataset(tmp_path / "mixed", n=18, size=[(72, 50), (40, 64), (33, 31)],
                        modes=("RGB", "RGBA", "I;16", "L"), columns=rename, label_style="float", images_per_patient=1)
    index = load_index(root, rename)
    split = get_or_create_split(index, "default", 0.2, 0.0, 42)
    assert len(split.train) + len(split.val) == 18 and split.counts["val"]["Normal"] > 0
    cache = load_cache(index, 32)
    assert cache.images.shape == (18, 32, 32) and cache.masks[cache.row(split.val[0])].dtype == np.uint8
