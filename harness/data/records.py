"""Dataset directory -> validated, immutable records (one per metadata row).

The metadata workbook is read once and hashed; the hash keys splits and caches, so a changed
workbook can never silently reuse an old split. Row-level problems (labels, ids, paths, patient
ids, columns) are collected here, file-level ones in :mod:`harness.data.check`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness import CLASS_NAMES
from harness.data.io import PathEscapeError, normalize_rel, read_metadata, safe_join
from harness.errors import DataError, did_you_mean

METADATA_FILE = "training_metadata.xlsx"
REQUIRED_COLUMNS = ("image_path", "mask_path", "label")
OPTIONAL_COLUMNS = ("patient_id", "image_id", "label_name")
CANONICAL_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
_NAME_TO_LABEL = {name.lower(): i for i, name in enumerate(CLASS_NAMES)}


@dataclass(frozen=True)
class Record:
    """One image of the dataset. Paths are relative to the dataset directory and known safe."""

    image_id: str
    image_path: str
    mask_path: str | None
    label: int
    patient_id: str
    row: int  # xlsx row number as Excel shows it (header = row 1)

    @property
    def label_name(self) -> str:
        return CLASS_NAMES[self.label]

    def where(self) -> str:
        """Context for messages: "row 14, image b12"."""
        return f"row {self.row}, image {self.image_id}"


@dataclass(frozen=True)
class DatasetIndex:
    """All records of a dataset directory plus the hash of the metadata they came from."""

    root: Path
    records: tuple[Record, ...]
    metadata_hash: str  # sha256 (short) of the xlsx bytes + column mapping
    has_patient_ids: bool = True

    def __len__(self) -> int:
        return len(self.records)

    def ids(self) -> list[str]:
        return [r.image_id for r in self.records]

    def by_id(self) -> dict[str, Record]:
        return dict(self._by_id)

    @cached_property
    def _by_id(self) -> dict[str, Record]:
        return {r.image_id: r for r in self.records}

    def labels(self) -> np.ndarray:
        return np.array([r.label for r in self.records], dtype=np.int64)

    def patients(self) -> list[str]:
        return [r.patient_id for r in self.records]

    def class_counts(self) -> dict[str, int]:
        """Images per class name, in the paper's label order."""
        labels = self.labels()
        return {name: int((labels == i).sum()) for i, name in enumerate(CLASS_NAMES)}

    def image_file(self, record: Record) -> Path:
        return self.root / record.image_path

    def mask_file(self, record: Record) -> Path | None:
        return None if record.mask_path is None else self.root / record.mask_path

    def subset(self, image_ids: Iterable[str]) -> DatasetIndex:
        """The records with these ids, in the order given (same root and metadata hash)."""
        lookup = self._by_id
        ids = list(image_ids)
        unknown = [i for i in ids if i not in lookup]
        if unknown:
            shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise DataError(
                f"{len(unknown)} image id(s) not in {self.root / METADATA_FILE}: {shown}."
                + did_you_mean(unknown[0], lookup)
            )
        return DatasetIndex(self.root, tuple(lookup[i] for i in ids), self.metadata_hash, self.has_patient_ids)


@dataclass
class ParsedMetadata:
    """Outcome of reading the workbook: the records that parsed and every problem found."""

    index: DatasetIndex | None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    table: pd.DataFrame | None = None
    columns: dict[str, str] = field(default_factory=dict)  # canonical -> actual, resolved


# ---------------------------------------------------------------------------------------------
# Cells


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (
        isinstance(value, str) and not value.strip()
    )


def cell_text(value: Any) -> str:
    """A cell as text: 12.0 -> "12", NaN/None -> ""."""
    if _blank(value):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, np.generic):
        return cell_text(value.item())
    return str(value).strip()


def parse_label(value: Any) -> int | None:
    """0/1/2 as int, float (1.0), string ("1", "1.0") or class name (case-insensitive); else None."""
    if isinstance(value, bool) or _blank(value):
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (int, float)):
        return int(value) if float(value).is_integer() and int(value) in (0, 1, 2) else None
    text = str(value).strip()
    if text.lower() in _NAME_TO_LABEL:
        return _NAME_TO_LABEL[text.lower()]
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if number.is_integer() and int(number) in (0, 1, 2) else None


MAX_ID_BYTES = 200
"""An id becomes a file name (``pred_masks/<id>.png``); most file systems allow 255 bytes."""


def quoted(text: str, limit: int = 80) -> str:
    """``"text"`` for messages, or its repr when it holds line breaks or other control characters."""
    short = text if len(text) <= limit else text[: limit - 3] + "..."
    return f'"{short}"' if short.isprintable() else repr(short)


def id_problem(image_id: str) -> str | None:
    """Why ``image_id`` cannot name a file inside a directory (``pred_masks/<id>.png``), or None.

    Refused: path separators (so ``../../x`` and absolute ids), ``.``/``..``, control characters
    (line breaks, NUL) and ids longer than :data:`MAX_ID_BYTES` bytes.
    """
    if "/" in image_id or "\\" in image_id:
        return "contains a path separator"
    if image_id in (".", ".."):
        return "is a directory name"
    if not image_id.isprintable():
        return "contains a line break or another control character"
    if len(image_id.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        return f"is longer than {MAX_ID_BYTES} bytes"
    return None


def metadata_hash(data: bytes, columns: dict[str, str]) -> str:
    """Short sha256 of the workbook bytes and the column mapping."""
    h = hashlib.sha256(data)
    effective = sorted((k, v) for k, v in columns.items() if k != v)  # label=label maps nothing
    h.update(json.dumps(effective).encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Columns and rows


def resolve_columns(actual: list[str], columns: dict[str, str] | None) -> tuple[dict[str, str], list[str]]:
    """Map canonical names to the workbook's columns; return (mapping, errors)."""
    mapping = dict(columns or {})
    errors: list[str] = []
    shown = ", ".join(actual) or "none"
    for key, col in mapping.items():
        if key not in CANONICAL_COLUMNS:
            errors.append(
                f'column mapping {key}={col}: "{key}" is not a known column name '
                f"({', '.join(CANONICAL_COLUMNS)}).{did_you_mean(key, CANONICAL_COLUMNS)}"
            )
        elif col not in actual:
            errors.append(
                f'column mapping {key}={col}: {METADATA_FILE} has no column "{col}" (columns: {shown}).'
                f"{did_you_mean(col, actual)} Fix the mapping (--columns or data.columns)."
            )
    resolved: dict[str, str] = {}
    for name in CANONICAL_COLUMNS:
        col = mapping.get(name, name)
        if col in actual:
            resolved[name] = col
        elif name in REQUIRED_COLUMNS and name not in mapping:
            errors.append(
                f'{METADATA_FILE}: required column "{name}" is missing (columns: {shown}).'
                f"{did_you_mean(name, actual)} Rename it or map it with --columns {name}=<column>."
            )
    return resolved, errors


def _path_cell(root: Path, text: str, what: str, where: str, errors: list[str]) -> str | None:
    if not text.isprintable():
        errors.append(f"{METADATA_FILE} {where}: {what} {quoted(text)} contains a line break or another control "
                      "character; fix the cell. Refused, not opened.")
        return None
    try:
        safe_join(root, text)
    except PathEscapeError as e:
        errors.append(f"{METADATA_FILE} {where}: {what} {e.problems[0]} Refused, not opened.")
        return None
    return normalize_rel(text)


def parse_rows(root: Path, table: pd.DataFrame, cols: dict[str, str]) -> tuple[list[Record], list[str], list[str]]:
    """Turn workbook rows into records; rows with id/label/path problems are reported and dropped."""
    errors: list[str] = []
    warnings: list[str] = []
    records: list[Record] = []
    first_row: dict[str, int] = {}
    has_pid = "patient_id" in cols

    def get(row: pd.Series, name: str) -> Any:
        return row[cols[name]] if name in cols else None

    for i, row in table.iterrows():
        excel_row = int(i) + 2
        if all(_blank(v) for v in row.tolist()):
            continue
        image_path = cell_text(get(row, "image_path"))
        image_id = cell_text(get(row, "image_id")) or (Path(image_path.replace("\\", "/")).stem if image_path else "")
        bad_id = id_problem(image_id) if image_id else None
        where = f"row {excel_row}" + (f" (image {image_id})" if image_id and not bad_id else "")
        bad = False
        if not image_path:
            errors.append(f"{METADATA_FILE} {where}: image_path is empty; "
                          "give the image's path relative to the dataset directory.")
            continue
        if bad_id:
            column = f"column {cols['image_id']}" if "image_id" in cols else "taken from image_path"
            errors.append(
                f"{METADATA_FILE} {where}: image_id {quoted(image_id)} {bad_id} ({column}); image ids become file "
                "names (pred_masks/<id>.png), so use a plain name of letters, digits, '_', '-' and '.'.")
            continue
        if _path_cell(root, image_path, "image_path", where, errors) is None:
            bad = True
        raw_mask = cell_text(get(row, "mask_path"))
        mask_path = _path_cell(root, raw_mask, "mask_path", where, errors) if raw_mask else None
        bad |= bool(raw_mask) and mask_path is None
        raw_label = get(row, "label")
        label = parse_label(raw_label)
        if label is None:
            shown = "empty" if _blank(raw_label) else quoted(cell_text(raw_label))
            errors.append(
                f"{METADATA_FILE} {where}: label {shown} is not one of 0/1/2 or "
                f"Benign/Malignant/Normal (column {cols['label']}); fix the cell."
            )
            bad = True
        if image_id in first_row:
            errors.append(
                f"{METADATA_FILE} {where}: image id \"{image_id}\" is already used on row {first_row[image_id]}; "
                f"image ids must be unique (fix image_id or image_path)."
            )
            continue
        first_row[image_id] = excel_row
        patient = image_id
        if has_pid:
            patient = cell_text(get(row, "patient_id"))
            if not patient:
                errors.append(
                    f"{METADATA_FILE} {where}: patient_id is empty (column {cols['patient_id']}); "
                    "fill it in (a patient-wise split needs every image's patient)."
                )
                patient = image_id
        if "label_name" in cols and label is not None:
            name = cell_text(get(row, "label_name"))
            if name and name.lower() != CLASS_NAMES[label].lower():
                warnings.append(
                    f"{METADATA_FILE} {where}: label {label} ({CLASS_NAMES[label]}) disagrees with "
                    f"label_name {quoted(name)}; the label column is used."
                )
        if not bad and label is not None:
            records.append(Record(image_id, normalize_rel(image_path), mask_path, label, patient, excel_row))
    if has_pid:
        errors.extend(_mixed_label_patients(records))
    return records, errors, warnings


def _mixed_label_patients(records: list[Record]) -> list[str]:
    by_patient: dict[str, list[Record]] = {}
    for r in records:
        by_patient.setdefault(r.patient_id, []).append(r)
    out = []
    for pid, recs in by_patient.items():
        if len({r.label for r in recs}) > 1:
            shown = ", ".join(f"{r.image_id} (row {r.row}, {r.label_name})" for r in recs[:6])
            out.append(
                f"{METADATA_FILE}: patient {quoted(pid)} has images with different labels: {shown}; "
                "fix the labels or the patient id."
            )
    return out


def parse_metadata(root: Path, columns: dict[str, str] | None = None) -> ParsedMetadata:
    """Read and parse ``root/training_metadata.xlsx`` once, collecting every metadata problem."""
    root = Path(root)
    if not root.is_dir():
        return ParsedMetadata(None, [f"{root}: no such dataset directory; "
                                     f"give a directory with images/, masks/ and {METADATA_FILE}."])
    try:
        table, data = read_metadata(root / METADATA_FILE)
    except DataError as e:
        return ParsedMetadata(None, list(e.problems))
    if table.dropna(how="all").empty:
        return ParsedMetadata(
            None, [f"{METADATA_FILE}: no data rows under the header; add one row per image."], table=table)
    cols, errors = resolve_columns(list(table.columns), columns)
    repeated = set(table.attrs.get("repeated_columns", ()))
    errors += [f'{METADATA_FILE}: column "{col}" ({name}) appears more than once in the header; rename or delete '
               "the extra one." for name, col in cols.items() if col in repeated]
    if any(c not in cols for c in REQUIRED_COLUMNS) or errors:
        return ParsedMetadata(None, errors, table=table, columns=cols)
    warnings = []
    if "patient_id" not in cols:
        warnings.append(
            f"{METADATA_FILE}: no patient_id column; every image is treated as its own patient, so a "
            "patient-wise split cannot be guaranteed (map it with --columns patient_id=<column>, or use "
            "--group-duplicates)."
        )
    records, row_errors, row_warnings = parse_rows(root, table, cols)
    index = DatasetIndex(root, tuple(records), metadata_hash(data, dict(columns or {})), "patient_id" in cols)
    return ParsedMetadata(index, errors + row_errors, warnings + row_warnings, table, cols)
