"""Fuzz the data layer through the CLI: randomly corrupted metadata workbooks and split files.

Every case is generated from a fixed seed (so a failure replays) and is built to be invalid in a
known way: a bad cell, a huge coordinate, a wrong type, a missing or repeated column, a duplicate or
hostile id, truncated or garbage bytes; for split files truncated JSON, wrong types, huge numbers,
leaks between subsets. Each runs in-process through ``harness.cli.main`` (``data check``, ``data
split`` or ``run``) and must end with exit 2, ``error:`` lines only (one naming the culprit file,
row or field), no traceback, and no file written outside the dataset and output directories.
"""

from __future__ import annotations

import copy
import datetime as dt
import io
import json
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.testing.datasets import make_dataset

META = "training_metadata.xlsx"
N = 8  # images in the template: rows 2..9; Benign rows 2, 3, 8, 9, Malignant 4, 5, Normal 6, 7
ROWS = list(range(2, N + 2))
LESION_ROWS = [2, 3, 4, 5, 8, 9]
COLUMNS = ["image_id", "image_path", "mask_path", "label", "patient_id", "label_name"]
RUN = ["run", "tiny-a", "--set", "runtime.threads=1", "--set", "classifier.image_size=32",
       "--set", "segmenter.image_size=32"]


@dataclass
class Case:
    """One corrupted input: what to write, which command reads it, and what the error must name."""

    name: str
    command: str  # check | split | run
    write: Callable[[Path, dict], None]  # (dataset dir, template facts) -> None
    culprits: list[tuple[str, ...]]  # each tuple: strings that one error line must contain together


# --- workbook corruptions ----------------------------------------------------------------------------------


def _sheet_edit(edit: Callable[..., None]) -> Callable[[Path, dict], None]:
    def write(root: Path, facts: dict) -> None:
        import openpyxl

        book = openpyxl.load_workbook(io.BytesIO(facts["workbook"]))
        edit(book.worksheets[0])
        book.save(root / META)

    return write


def _cell(column: str, row: int) -> str:
    return f"{'ABCDEF'[COLUMNS.index(column)]}{row}"


def _set(column: str, row: int, value: object) -> Callable[[Path, dict], None]:
    def edit(ws):
        ws[_cell(column, row)] = value

    return _sheet_edit(edit)


def _raw(make: Callable[[bytes], bytes]) -> Callable[[Path, dict], None]:
    def write(root: Path, facts: dict) -> None:
        (root / META).write_bytes(make(facts["workbook"]))

    return write


def _column_letter(n: int) -> str:
    out = ""
    while n:
        n, r = divmod(n - 1, 26)
        out = chr(65 + r) + out
    return out


BAD_LABELS = [3, -1, 1.5, "x", True, "", None, 1e300, "nan", "=1+1", dt.datetime(2020, 1, 2), "Benign Malignant",
              "2.5", "-0.5", " ", "0x1"]
HOSTILE_IDS = ["../../x", "../../../../../tmp/escaped", "/etc/passwd", "a/b", "a\\b", "..", ".", "x\ny", "tab\tid",
               "é" * 120, "q" * 300, "C:\\evil"]
HOSTILE_PATHS = ["../x.png", "/etc/passwd", "images/../../x.png", "images/a\nb.png", "C:/x.png",
                 "images/" + "a" * 300 + ".png", "~/x.png", "images/does-not-exist.png", "masks", "."]


def _sheet_xml_problem(rng: np.random.Generator) -> Callable[[bytes], bytes]:
    def make(data: bytes) -> bytes:
        src = zipfile.ZipFile(io.BytesIO(data))
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
            for info in src.infolist():
                body = src.read(info.filename)
                if info.filename.startswith("xl/worksheets/sheet"):
                    cut = int(rng.integers(10, len(body) - 10))
                    body = body[:cut] + b"<c r=\"A\x01\"><<" + body[cut:]
                dst.writestr(info.filename, body)
        return out.getvalue()

    return make


def _flip_in_sheet(rng: np.random.Generator) -> Callable[[bytes], bytes]:
    """One byte changed inside the compressed sheet: CRC-32 catches every such change."""

    def make(data: bytes) -> bytes:
        info = next(i for i in zipfile.ZipFile(io.BytesIO(data)).infolist()
                    if i.filename.startswith("xl/worksheets/sheet"))
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
        pos = start + int(rng.integers(0, info.compress_size))
        out = bytearray(data)
        out[pos] ^= int(rng.integers(1, 256))
        return bytes(out)

    return make


def workbook_case(k: int, rng: np.random.Generator) -> Case:
    kind = ["label", "far", "path_type", "missing_column", "duplicate_id", "hostile_id", "hostile_path", "truncated",
            "garbage", "flip", "xml", "repeated_column", "no_rows", "mixed_labels", "blank_patient", "combo"][k % 16]
    command = ["check", "split", "run"][int(rng.integers(0, 3))]
    row = int(rng.choice(ROWS))
    lesion_row = int(rng.choice(LESION_ROWS))
    if kind == "label":
        value = BAD_LABELS[int(rng.integers(0, len(BAD_LABELS)))]
        return Case(f"label={value!r}", command, _set("label", row, value), [(META, f"row {row}", "label")])
    if kind == "far":
        if rng.random() < 0.5:
            col = int(rng.integers(257, 16385))
            ref = f"{_column_letter(col)}1"
            return Case(f"header-{ref}", command, _set_ref(ref), [(META, f"column {_column_letter(col)}")])
        ref = f"{'ABCDEF'[int(rng.integers(0, 6))]}{int(rng.integers(200_002, 1_048_577))}"
        return Case(f"far-{ref}", command, _set_ref(ref), [(META, f"cell {ref}")])
    if kind == "path_type":
        column = ["image_path", "mask_path"][int(rng.integers(0, 2))]
        value = [42, 3.5, True, dt.datetime(2021, 5, 6), "", "   "][int(rng.integers(0, 6))]
        return Case(f"{column}={value!r}", command, _set(column, lesion_row, value), [(f"row {lesion_row}",)])
    if kind == "missing_column":
        column = ["image_path", "mask_path", "label"][int(rng.integers(0, 3))]

        idx = COLUMNS.index(column) + 1

        def drop(ws):
            ws.delete_cols(idx)

        return Case(f"no-{column}", command, _sheet_edit(drop), [(META, f'required column "{column}" is missing')])
    if kind == "duplicate_id":
        other = int(rng.choice([r for r in ROWS if r != row]))
        first, second = min(row, other), max(row, other)

        def dup(ws):
            ws[_cell("image_id", second)] = ws[_cell("image_id", first)].value

        return Case(f"dup-{first}-{second}", command, _sheet_edit(dup), [(f"row {second}", f"row {first}")])
    if kind == "hostile_id":
        value = HOSTILE_IDS[int(rng.integers(0, len(HOSTILE_IDS)))]
        return Case(f"id={value[:20]!r}", command, _set("image_id", row, value), [(META, f"row {row}", "image_id")])
    if kind == "hostile_path":
        column = ["image_path", "mask_path"][int(rng.integers(0, 2))]
        value = HOSTILE_PATHS[int(rng.integers(0, len(HOSTILE_PATHS)))]
        return Case(f"{column}={value[:20]!r}", command, _set(column, lesion_row, value), [(f"row {lesion_row}",)])
    if kind == "truncated":
        frac = rng.random()
        return Case("truncated", command, _raw(lambda d: d[: int(frac * len(d))]), [(META,)])
    if kind == "garbage":
        n, prefix = int(rng.integers(1, 5000)), [b"", b"PK", b"PK\x03\x04"][int(rng.integers(0, 3))]
        junk = prefix + rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        return Case(f"garbage-{len(junk)}", command, _raw(lambda _d: junk), [(META,)])
    if kind == "flip":
        return Case("bitflip", command, _raw(_flip_in_sheet(rng)), [(META, "cannot be read")])
    if kind == "xml":
        return Case("bad-xml", command, _raw(_sheet_xml_problem(rng)), [(META, "cannot be read")])
    if kind == "repeated_column":
        column = ["image_path", "label", "image_id"][int(rng.integers(0, 3))]
        return Case(f"repeated-{column}", command, _set_ref("G1", column),
                    [(META, f'column "{column}"', "more than once")])
    if kind == "no_rows":
        def clear(ws):
            ws.delete_rows(2, N)

        return Case("no-rows", command, _sheet_edit(clear), [(META, "no data rows")])
    if kind == "mixed_labels":
        return Case("mixed", command, _set("label", 2, 1), [(META, 'patient "P000"', "different labels")])
    if kind == "blank_patient":
        return Case("blank-patient", command, _set("patient_id", row, None), [(f"row {row}", "patient_id is empty")])
    rows = [int(r) for r in rng.choice(LESION_ROWS, size=3, replace=False)]

    def combo(ws):
        ws[_cell("label", rows[0])] = "bogus"
        ws[_cell("image_id", rows[1])] = "../../combo"
        ws[_cell("image_path", rows[2])] = "/etc/shadow"

    return Case(f"combo-{rows}", command, _sheet_edit(combo),
                [(f"row {rows[0]}", "label"), (f"row {rows[1]}", "image_id"), (f"row {rows[2]}", "image_path")])


def _set_ref(ref: str, value: object = "x") -> Callable[[Path, dict], None]:
    def edit(ws):
        ws[ref] = value

    return _sheet_edit(edit)


# --- split-file corruptions ------------------------------------------------------------------------------------


SPLIT = "splits/default.json"
BAD_FIELDS: dict[str, list[object]] = {
    "seed": ["x", 1.5, -1, 2**64, True, None, float("inf"), [42]],
    "val": [0, 1, -0.1, "0.2", None, float("nan"), 1e-400, True],
    "test": [1, -1, "0", True, 2.0],
    "groups_merged": ["x", -1, 1.5, 2**40, None],
    "group_duplicates": ["yes", 1, None],
    "metadata_hash": [None, 5, []],
    "name": [5, None, []],
    "subsets": [[], "x", None, {"train": "b000"}, {"train": [1]}, {"bogus": []}],
}


def _split_json(edit: Callable[[dict, dict], None]) -> Callable[[Path, dict], None]:
    def write(root: Path, facts: dict) -> None:
        data = copy.deepcopy(facts["split"])
        edit(data, facts)
        (root / "splits").mkdir(exist_ok=True)
        (root / SPLIT).write_text(json.dumps(data))

    return write


def _split_bytes(make: Callable[[str], bytes]) -> Callable[[Path, dict], None]:
    def write(root: Path, facts: dict) -> None:
        (root / "splits").mkdir(exist_ok=True)
        (root / SPLIT).write_bytes(make(json.dumps(facts["split"], indent=1) + "\n"))

    return write


def split_case(k: int, rng: np.random.Generator) -> Case:
    kind = ["field", "field", "truncated", "huge", "leak", "not_object", "bytes", "field", "leak", "truncated"][k % 10]
    if kind == "field":
        field = list(BAD_FIELDS)[int(rng.integers(0, len(BAD_FIELDS)))]
        value = BAD_FIELDS[field][int(rng.integers(0, len(BAD_FIELDS[field])))]

        def edit(d, _f, field=field, value=value):
            d[field] = value

        culprit = "subsets" if field == "subsets" else field
        return Case(f"{field}={value!r}", "run", _split_json(edit), [(SPLIT, culprit)])
    if kind == "truncated":
        frac = rng.random()
        return Case("truncated", "run", _split_bytes(lambda t: t[: int(frac * (len(t) - 2))].encode()),
                    [(SPLIT, "not a valid split file")])
    if kind == "huge":
        which = int(rng.integers(0, 4))
        if which == 0:
            return Case("seed-5000-digits", "run", _split_bytes(
                lambda t: t.replace('"seed": 42', '"seed": ' + "9" * 5000).encode()), [(SPLIT, "not a valid")])
        if which == 1:
            return Case("nested", "run", _split_bytes(lambda _t: b"[" * 200_000 + b"]" * 200_000),
                        [(SPLIT, "not a valid split file")])
        if which == 2:
            return Case("seed-1e999", "run", _split_bytes(lambda t: t.replace('"seed": 42', '"seed": 1e999').encode()),
                        [(SPLIT, "seed must be")])
        return Case("many-ids", "run", _split_json(lambda d, _f: d["subsets"]["train"].extend(
            f"ghost{i}" for i in range(50_000))), [(SPLIT, "unknown image id")])
    if kind == "leak":
        which = int(rng.integers(0, 6))

        if which == 0:  # one image in two subsets
            def edit(d, _f):
                d["subsets"]["val"].append(d["subsets"]["train"][0])

            return Case("twice", "run", _split_json(edit), [(SPLIT, "is in both")])
        if which == 1:  # a patient split across subsets
            def edit(d, facts):
                moved = facts["patient_image"]
                d["subsets"]["train"].remove(moved)
                d["subsets"]["val"].append(moved)

            return Case("patient", "run", _split_json(edit), [(SPLIT, "patient", "in both")])
        if which == 2:
            return Case("unknown", "run", _split_json(lambda d, _f: d["subsets"]["test"].append("nobody")),
                        [(SPLIT, "unknown image id")])
        if which == 3:
            return Case("missing", "run", _split_json(lambda d, _f: d["subsets"]["val"].pop()),
                        [(SPLIT, "in no subset")])
        if which == 4:
            value = HOSTILE_IDS[int(rng.integers(0, len(HOSTILE_IDS)))]
            return Case(f"hostile-{value[:12]!r}", "run",
                        _split_json(lambda d, _f, v=value: d["subsets"]["train"].append(v)),
                        [(SPLIT, "unknown image id")])
        return Case("stale", "run", _split_json(lambda d, _f: d.__setitem__("metadata_hash", "0" * 16)),
                    [(SPLIT, "another version")])
    if kind == "not_object":
        text = ["[]", "5", '"x"', "null", "true", "[{}]"][int(rng.integers(0, 6))]
        return Case(f"json={text}", "run", _split_bytes(lambda _t, s=text: s.encode()), [(SPLIT, "JSON object")])
    junk = [b"\xff\xfe\xfd", b"", b"\x00" * 10, rng.integers(0, 256, 300, dtype=np.uint8).tobytes()][k % 4]
    return Case(f"bytes-{len(junk)}", "run", _split_bytes(lambda _t, j=junk: j), [(SPLIT,)])


_rng = np.random.default_rng(20240612)
CASES = [workbook_case(k, _rng) for k in range(96)] + [split_case(k, _rng) for k in range(64)]


# --- the harness around each case ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> tuple[Path, dict]:
    from harness.data.check import load_index
    from harness.data.splits import make_split

    root = make_dataset(tmp_path_factory.mktemp("fuzz") / "ds", n=N, size=24).root
    index = load_index(root)
    split = make_split(index, val=0.25).to_json() | {"name": "default"}
    by_id = index.by_id()
    train_patients = {by_id[i].patient_id for i in split["subsets"]["train"]}
    # an image whose patient has another image in train: moving it to val is a patient leak
    patient_image = next(i for i in split["subsets"]["train"]
                         if sum(by_id[j].patient_id == by_id[i].patient_id for j in split["subsets"]["train"]) > 1)
    assert train_patients
    return root, {"workbook": (root / META).read_bytes(), "split": split, "patient_image": patient_image}


def _snapshot(top: Path, skip: tuple[Path, ...]) -> dict[str, tuple[int, int]]:
    out = {}
    for p in top.rglob("*"):
        if any(p == s or s in p.parents for s in skip):
            continue
        st = p.lstat()  # a directory's own mtime changes when the output directory appears in it
        out[str(p.relative_to(top))] = (-1, -1) if p.is_dir() and not p.is_symlink() else (st.st_size, st.st_mtime_ns)
    return out


@pytest.mark.parametrize("case", CASES, ids=[f"{n:03d}-{c.command}-{c.name[:40]}" for n, c in enumerate(CASES)])
def test_corrupted_input_is_one_error_per_problem(case: Case, template, tmp_path, capsys):
    root, facts = template
    work = tmp_path / "parent" / "work"
    data, out = work / "ds", work / "out"
    shutil.copytree(root, data)
    (tmp_path / "parent" / "bystander.txt").write_text("keep")
    case.write(data, facts)
    skip = (data, out)
    before = _snapshot(tmp_path, skip)
    argv = {"check": ["data", "check", str(data)], "split": ["data", "split", str(data)],
            "run": [*RUN, "--data", str(data), "--out", str(out)]}[case.command]
    code = main(argv)
    captured = capsys.readouterr()
    err = captured.err
    assert code == 2, f"exit {code}\n{captured.out}\n{err}"
    assert "Traceback" not in err
    lines = err.splitlines()
    assert lines and all(line.startswith(("error: ", "warning: ")) for line in lines), err
    errors = [line for line in lines if line.startswith("error: ")]
    for culprit in case.culprits:
        assert any(all(c in line for c in culprit) for line in errors), f"no error names {culprit}:\n{err}"
    assert _snapshot(tmp_path, skip) == before, "a file was written outside the dataset and output directories"
    written = {p.name for p in out.rglob("*")} if out.exists() else set()
    assert written <= {"config.yaml"}, written


def test_there_are_enough_cases():
    assert len(CASES) >= 120
    assert {c.command for c in CASES} == {"check", "split", "run"}
