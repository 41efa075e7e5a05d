"""Issue 12, data layer: hostile datasets, workbooks, PNGs, split files and output paths.

Each is refused in one ``error:`` line naming the file, row or field (exit 2), quickly and in
bounded memory, and nothing is written where the user did not ask.
"""

from __future__ import annotations

import json
import os
import re
import resource
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.data import io
from harness.data.cache import load_cache
from harness.data.check import check_dataset, load_index
from harness.data.io import FileProblem, read_image, read_mask, write_bytes_atomic
from harness.data.records import METADATA_FILE
from harness.data.splits import load_split, make_split, save_split, split_path
from harness.data.synth import synthesize
from harness.errors import DataError
from harness.rundir import RunDir
from harness.testing.hostile import raw_png, set_cells


def run(capsys, *argv):
    code = main([*map(str, argv)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    return code, out, errors


def _set_ids(edit_metadata, root, ids: dict[int, str]):
    def fn(t):
        for row, value in ids.items():
            t.loc[row, "image_id"] = value
        return t

    edit_metadata(root, fn)


# --- 1: image ids that would escape ---------------------------------------------------------------


HOSTILE_IDS = ["../../../../x", "/etc/passwd", "a/b", "a\\b", "..", ".", "x\ny", "tab\there", "é" * 150]


@pytest.mark.parametrize("verb", ["check", "split"])
def test_hostile_image_ids_are_refused_with_their_row(capsys, dataset, edit_metadata, verb):
    _set_ids(edit_metadata, dataset, dict(enumerate(HOSTILE_IDS)))
    code, _, errors = run(capsys, "data", verb, dataset)
    assert code == 2
    for k in range(len(HOSTILE_IDS)):
        line = next(e for e in errors if f"row {k + 2}:" in e)
        assert "image_id" in line and "file names" in line and "\n" not in line
    assert not (dataset / "splits").exists()


def test_hostile_ids_stop_loading_and_the_run_dir_keeps_refusing_them(dataset, edit_metadata, tmp_path):
    _set_ids(edit_metadata, dataset, {3: "../../escaped"})
    with pytest.raises(DataError, match=r"row 5: image_id \"\.\./\.\./escaped\" contains a path separator"):
        load_index(dataset, check=False)
    with pytest.raises(DataError, match="would write outside"):
        RunDir(tmp_path / "run").mask("../../escaped")


def test_ids_from_image_path_stems_are_checked_too(dataset, edit_metadata):
    edit_metadata(dataset, lambda t: t.drop(columns=["image_id"]).assign(
        image_path=["images/b000.png", "images/\tx.png", *t.image_path[2:]]))
    errors = check_dataset(dataset).errors
    assert any("row 3" in e and "control character" in e for e in errors)


def test_a_split_file_with_hostile_ids_names_them_on_one_line(dataset):
    index = load_index(dataset)
    save_split(make_split(index), dataset)
    path = split_path(dataset, "default")
    data = json.loads(path.read_text())
    data["subsets"]["val"].append("../../x\nerror: forged")
    path.write_text(json.dumps(data))
    with pytest.raises(DataError) as e:
        load_split(dataset, "default", index)
    assert any("unknown image id" in p and "'../../x\\nerror: forged'" in p for p in e.value.problems)
    assert all("\n" not in p for p in e.value.problems)


# --- 6 and 18: PNG bombs and undecodable data -------------------------------------------------------


@pytest.mark.parametrize("which", ["images/b000.png", "masks/b000_mask.png"])
def test_dimension_bomb_is_refused_before_decoding(capsys, dataset, which):
    (dataset / which).write_bytes(raw_png(30000, 30000, 16, 6, idat=b"x"))
    code, _, errors = run(capsys, "data", "check", dataset)
    assert code == 2 and errors == [f"error: {which}: declares 30000x30000 pixels (900 Mpx), over the decoding limit "
                                    "of 67 Mpx (row 2, image b000); downscale it."]
    with pytest.raises(FileProblem, match="over the decoding limit"):
        (read_mask if "mask" in which else read_image)(dataset / which)


@pytest.mark.slow
def test_dimension_bomb_under_a_memory_limit(dataset):
    """The reported cases under a 1.5 GB address-space limit: a 30000x30000 RGBA16 image and a 20000x20000 mask
    are one error line each, not a MemoryError."""
    (dataset / "images" / "b001.png").write_bytes(raw_png(30000, 30000, 16, 6, idat=b"x"))
    (dataset / "masks" / "b000_mask.png").write_bytes(raw_png(20000, 20000, 8, 0, idat=b"x"))
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (3 << 29, 3 << 29)); "
            "from harness.cli import main; sys.exit(main(['data', 'check', sys.argv[1]]))")
    proc = subprocess.run([sys.executable, "-c", code, str(dataset)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "masks/b000_mask.png: declares 20000x20000 pixels" in proc.stderr
    assert "images/b001.png: declares 30000x30000 pixels" in proc.stderr


def test_garbage_image_data_with_valid_crcs_fails_the_check_not_the_cache(capsys, dataset):
    (dataset / "images" / "m002.png").write_bytes(raw_png(48, 48, idat=b"garbage with valid CRCs"))
    code, _, errors = run(capsys, "data", "check", dataset)
    assert code == 2 and len(errors) == 1
    assert errors[0].startswith("error: images/m002.png: corrupt PNG (image data is not a valid zlib stream")
    assert "(row 4, image m002); re-export the file." in errors[0]


def test_what_the_check_accepts_the_cache_decodes(dataset, write_png, tmp_path):
    """A file whose data decodes only partly (rows missing from a complete zlib stream) is refused by both."""
    import zlib

    from harness.testing.hostile import raw_rows

    (dataset / "images" / "m002.png").write_bytes(raw_png(48, 48, idat=zlib.compress(raw_rows(48, 40))))
    assert any("m002.png: corrupt PNG (image data ends early" in e for e in check_dataset(dataset).errors)
    index = load_index(dataset, check=False)
    with pytest.raises(DataError, match="m002.png"):
        load_cache(index, 32, tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*.npy"))


def test_decoder_errors_are_one_line(tmp_path, monkeypatch):
    import cv2

    path = tmp_path / "x.png"
    path.write_bytes(raw_png(8, 8))

    def boom(*_):
        raise cv2.error("OpenCV(4) error: (-4:Insufficient memory)\n  in function 'OutOfMemoryError'\n")

    monkeypatch.setattr(cv2, "imdecode", boom)
    with pytest.raises(FileProblem) as e:
        read_image(path)
    assert len(e.value.problems) == 1 and "\n" not in e.value.problems[0] and "Insufficient memory" in str(e.value)


# --- 7: workbook bombs ------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["ALL50000", "XFD1048576"])
def test_far_cells_outside_the_table_cost_nothing(capsys, dataset, cell):
    set_cells(dataset / METADATA_FILE, {cell: "x"})
    assert (dataset / METADATA_FILE).stat().st_size < 10_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    index = load_index(dataset, check=False)
    assert time.perf_counter() - t0 < 3 and len(index) == 12
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # kB


@pytest.mark.parametrize(
    "cell,message",
    [("XFD1", "the header row has a cell in column XFD (column 16384); at most 256 columns are read"),
     ("A1048576", "cell A1048576 has data, below the limit of 200000 rows under the header"),
     ("C250000", "cell C250000 has data")],
)
def test_stray_cells_that_would_enlarge_the_table_are_named(capsys, dataset, cell, message):
    set_cells(dataset / METADATA_FILE, {cell: "x"})
    t0 = time.perf_counter()
    code, _, errors = run(capsys, "data", "check", dataset)
    assert code == 2 and len(errors) == 1 and message in errors[0] and errors[0].startswith(f"error: {METADATA_FILE}")
    assert time.perf_counter() - t0 < 5


def test_a_lying_dimension_tag_is_ignored(dataset):
    import zipfile

    path = dataset / METADATA_FILE
    with zipfile.ZipFile(path) as z:
        parts = {n: z.read(n) for n in z.namelist()}
    sheet = next(n for n in parts if n.startswith("xl/worksheets/sheet"))
    parts[sheet] = re.sub(rb'<dimension ref="[^"]*"', b'<dimension ref="A1:XFD1048576"', parts[sheet])
    assert b"XFD1048576" in parts[sheet]
    with zipfile.ZipFile(path, "w") as z:
        for n, b in parts.items():
            z.writestr(n, b)
    assert len(load_index(dataset, check=False)) == 12


def test_zip_bomb_workbook_is_refused_unopened(dataset, monkeypatch):
    import zipfile

    from harness.data import workbook

    monkeypatch.setattr(workbook, "MAX_UNPACKED_BYTES", 8 * 2**20)
    path = dataset / METADATA_FILE
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as z:
        z.writestr("xl/padding.bin", bytes(16 * 2**20))
    assert path.stat().st_size < 100_000
    with pytest.raises(DataError, match=r"unpacks to 16 MB, over the limit of 8 MB"):
        load_index(dataset, check=False)


def test_repeated_required_column_is_named(dataset, edit_metadata):
    edit_metadata(dataset, lambda t: t.assign(extra=t.label).rename(columns={"extra": "label"}))
    assert any('column "label" (label) appears more than once' in e for e in check_dataset(dataset).errors)


# --- 8: FIFOs, devices, directories -----------------------------------------------------------------


@pytest.mark.parametrize("kind,reason", [("fifo", "is a FIFO, not a regular file"),
                                         ("socket", "is a socket, not a regular file"),
                                         ("directory", "is a directory, not a file")])
def test_special_files_are_refused_without_reading(capsys, dataset, monkeypatch, kind, reason):
    target = dataset / "images" / "b001.png"
    target.unlink()
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "directory":
        target.mkdir()
    else:
        monkeypatch.chdir(target.parent)  # AF_UNIX paths are short
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(target.name)
    code, _, errors = run(capsys, "data", "check", dataset)
    assert code == 2 and errors == [f"error: images/b001.png: {reason} (row 3, image b001); point it at a file."]


def test_fifo_in_images_folder_is_only_listed(capsys, dataset):
    os.mkfifo(dataset / "images" / "stray.png")
    code, _, _ = run(capsys, "data", "check", dataset)
    assert code == 0


def test_absolute_special_files_are_refused_for_report_reads(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    for path, kind in (("/dev/zero", "character device"), (tmp_path / "pipe.png", "FIFO")):
        with pytest.raises(FileProblem, match=f"is a {kind}, not a regular file"):
            read_image(Path(path))


@pytest.mark.parametrize("what", ["metadata", "split"])
def test_fifo_metadata_and_split_files_are_refused(dataset, what):
    if what == "metadata":
        (dataset / METADATA_FILE).unlink()
        os.mkfifo(dataset / METADATA_FILE)
        with pytest.raises(DataError, match=f"{METADATA_FILE}: is a FIFO, not a regular file"):
            load_index(dataset, check=False)
    else:
        (dataset / "splits").mkdir()
        os.mkfifo(dataset / "splits" / "default.json")
        with pytest.raises(DataError, match="splits/default.json: is a FIFO, not a regular file"):
            load_split(dataset, "default", load_index(dataset, check=False))


def test_oversized_files_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(io, "MAX_PNG_BYTES", 1000)
    path = tmp_path / "big.png"
    path.write_bytes(raw_png(8, 8) + bytes(2000))
    with pytest.raises(FileProblem, match="over the limit"):
        read_image(path)


# --- 15: one error line for bad arguments and damaged split files -------------------------------------


@pytest.mark.parametrize(
    "args,message",
    [(["--seed", "-1"], "seed must be an integer in [0, 2**32 - 1], but got seed=-1."),
     (["--seed", str(2**40)], f"but got seed={2**40}"),
     (["--val", "nan"], "val must be in (0, 1)"),
     (["--test", "inf"], "test must be in [0, 1)"),
     (["--name", "x\n"], "split name 'x\\n' must be 1-100 letters"),
     (["--name", "../x"], 'split name "../x" must be'),
     (["--name", "a" * 101], "must be 1-100 letters")],
)
def test_split_arguments(capsys, dataset, args, message):
    code, _, errors = run(capsys, "data", "split", dataset, *args)
    assert code == 2 and len(errors) == 1 and message in errors[0]
    assert not (dataset / "splits").exists()


@pytest.mark.parametrize(
    "edit,field",
    [({"seed": 1e999}, "seed must be an integer in [0, 4294967295], but got seed=Infinity"),
     ({"groups_merged": "x"}, 'groups_merged must be an integer in [0, 2147483647], but got groups_merged="x"'),
     ({"seed": -1}, "seed must be"), ({"seed": 2**64}, "seed must be"), ({"seed": True}, "seed must be"),
     ({"val": 0}, "val must be a number in (0, 1)"), ({"test": "0.1"}, "test must be a number in [0, 1)"),
     ({"group_duplicates": "yes"}, "group_duplicates must be true or false"),
     ({"subsets": [1, 2]}, "subsets must be a mapping"), ({"subsets": {"train": "b000"}}, "subsets.train must be"),
     ({"metadata_hash": None}, "metadata_hash must be a string"), ({"name": 5}, "name must be a string")],
)
def test_damaged_split_fields_are_named(dataset, edit, field):
    index = load_index(dataset)
    path = save_split(make_split(index), dataset)
    path.write_text(json.dumps(json.loads(path.read_text()) | edit))
    with pytest.raises(DataError) as e:
        load_split(dataset, "default", index)
    assert any(p.startswith("splits/default.json: ") and field in p for p in e.value.problems), e.value.problems


@pytest.mark.parametrize("content", [b"", b"{\"seed\": 4", b"[1, 2]", b"\xff\xfe", b"1" * 5000, b"null"])
def test_unreadable_split_files(dataset, content):
    index = load_index(dataset)
    path = save_split(make_split(index), dataset)
    path.write_bytes(content)
    with pytest.raises(DataError) as e:
        load_split(dataset, "default", index)
    assert len(e.value.problems) == 1 and e.value.problems[0].startswith("splits/default.json: ")


def test_splits_is_a_file(capsys, dataset):
    (dataset / "splits").write_text("not a directory")
    code, _, errors = run(capsys, "data", "split", dataset)
    assert code == 2 and len(errors) == 1 and "splits" in errors[0] and "a file is in the way" in errors[0]
    assert (dataset / "splits").read_text() == "not a directory"


def test_import_busi_into_a_symlink_dot_and_broken_link(capsys, make_busi, tmp_path, monkeypatch):
    src = make_busi(tmp_path / "busi")
    (tmp_path / "target").mkdir()
    os.symlink(tmp_path / "target", tmp_path / "link")
    assert run(capsys, "data", "import-busi", src, tmp_path / "link")[0] == 0
    assert (tmp_path / "target" / METADATA_FILE).is_file() and (tmp_path / "link").is_symlink()
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    assert run(capsys, "data", "import-busi", src, ".")[0] == 0
    assert sorted(os.listdir(".")) == ["images", "masks", METADATA_FILE]
    os.symlink(tmp_path / "missing", tmp_path / "dangling")
    code, _, errors = run(capsys, "data", "import-busi", src, tmp_path / "dangling")
    assert code == 2 and errors == [f"error: {tmp_path / 'dangling'}: is a symlink to a missing directory; give a "
                                    "new or empty output directory."]


def _deny(monkeypatch, module, name):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(args[0]) if args else None)

    monkeypatch.setattr(module, name, refuse)


@pytest.mark.parametrize("verb", ["import-busi", "synth"])
def test_unwritable_output_is_one_line_and_leaves_nothing(capsys, make_busi, tmp_path, monkeypatch, verb):
    import tempfile

    src = make_busi(tmp_path / "busi")
    _deny(monkeypatch, tempfile, "mkdtemp")  # what a read-only directory does to the staging directory
    argv = ["import-busi", src] if verb == "import-busi" else ["synth", "--images", "6", "--size", "32"]
    code, _, errors = run(capsys, "data", *argv, tmp_path / "out")
    assert code == 2 and len(errors) == 1
    assert "cannot create the output directory" in errors[0] and "Permission denied" in errors[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_directory_for_real(capsys, tmp_path):
    (tmp_path / "ro").mkdir(mode=0o555)
    code, _, errors = run(capsys, "data", "synth", tmp_path / "ro" / "out", "--images", "6", "--size", "32")
    assert code == 2 and "Permission denied" in errors[0]


# --- 19: permissions follow the umask ---------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_written_files_follow_the_umask(dataset, tmp_path, umask):
    old = os.umask(umask)
    try:
        index = load_index(dataset)
        split = save_split(make_split(index), dataset)
        write_bytes_atomic(tmp_path / "x" / "y.json", b"{}")
        cache = load_cache(index, 16, tmp_path / "cache")
        synth = synthesize(tmp_path / "synth", n_images=3, size=32).out
    finally:
        os.umask(old)
    files = [split, tmp_path / "x" / "y.json", cache.images_path, cache.masks_path,
             *(tmp_path / "cache").glob("*.json"), synth / METADATA_FILE, next((synth / "images").iterdir())]
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~umask, f
    assert stat.S_IMODE((synth / "images").stat().st_mode) == 0o777 & ~umask


# --- 22: split names ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["default\n", "a\n", "x\r", "ok.json\n"])
def test_split_name_with_trailing_newline_is_refused(tmp_path, name):
    with pytest.raises(DataError, match="split name"):
        split_path(tmp_path, name)


def test_synth_only_removes_its_own_files(tmp_path):
    out = synthesize(tmp_path / "s", n_images=3, size=32).out
    keep = out / "images" / "b_0001.png\n"
    keep.write_bytes(b"mine")
    synthesize(out, n_images=3, size=32, seed=1)
    assert keep.read_bytes() == b"mine"


def test_masks_are_decoded_once_per_check(dataset, monkeypatch):
    """The check reads every file once (verification and decoding share the bytes)."""
    opened = []
    real = io._read_bytes
    monkeypatch.setattr(io, "_read_bytes", lambda p: opened.append(p) or real(p))
    assert check_dataset(dataset, preview=False).ok
    assert len(opened) == 24 and len(set(opened)) == 24
    assert np.asarray(opened).size == 24
