"""Labels made outside Label Studio (a spreadsheet, another tool), read into the study.

A file is JSONL (one object a line) or CSV (a header row). Fields: `conversation` (the full id,
a unique id prefix, or the conversation's `external_id`), `annotator`, `ai_values` and
`human_values` (lists in JSONL; `;`-separated in CSV), `response_type`, `subjective` (true,
false, yes, no) and optionally `notes`, `task` (a category of the study's task list,
`prompts/tasks.yaml`; case and spacing ignored) and `task_description`. Value names resolve
against the taxonomy as `pull` resolves typed names; names outside it are kept as free values,
counted and flagged.

Each row becomes an annotation `import:<file name>:<conversation>:<annotator>` of source
`import:<file name>`: importing the same file again changes only rows of that source (the
labels a row replaces go to its history), never another source's. A row without a response
type or `subjective` is stored incomplete (`missing` names the fields). A bad line is reported
with file, line and reason; the good ones land.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import sqlite_utils
from pydantic import BaseModel, Field

from annotator.datasets.show import SHOWN_CANDIDATES, id_candidates
from annotator.db import dumps, loads
from annotator.errors import InputError
from annotator.extract.tasks import TaskList, load_task_list
from annotator.models import Labels, RejectedRecord, ResponseType, utc_now
from annotator.taxonomy import Taxonomy, load_taxonomy

SOURCE_PREFIX = "import:"
_TRUE = {"true", "yes", "y", "1"}
_FALSE = {"false", "no", "n", "0"}


class ImportLabelsReport(BaseModel):
    files: list[str] = Field(default_factory=list)
    read: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    incomplete: int = 0
    free_values: int = 0  # names outside the taxonomy, kept as given (each kept once a row)
    free_value_names: dict[str, int] = Field(default_factory=dict)
    rejected: list[RejectedRecord] = Field(default_factory=list)

    @property
    def landed(self) -> int:
        return self.new + self.updated + self.unchanged


class _Bad(ValueError):
    """A line that cannot be imported; the message is the reason."""


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, record or the reason it is unreadable) for each line of data."""
    if path.suffix.lower() == ".csv":
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            try:
                for row in reader:
                    if None in row:
                        yield reader.line_num, "more cells than the header has columns"
                        continue
                    if not any((v or "").strip() for v in row.values()):
                        continue
                    yield reader.line_num, {k.strip(): v for k, v in row.items() if k}
            except csv.Error as exc:
                yield reader.line_num, f"unreadable CSV: {exc}"
        return
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                yield line_no, f"not JSON: {exc}"
                continue
            if not isinstance(record, dict):
                yield line_no, "not a JSON object"
                continue
            yield line_no, record


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _names(value: Any, field: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        parts = value.split(";")
    elif isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            raise _Bad(f"{field}: every value must be a name (text)")
        parts = value
    else:
        raise _Bad(f"{field}: expected a list of names or `;`-separated names")
    return [p.strip() for p in parts if p.strip()]


def _response_type(value: Any) -> ResponseType | None:
    text = " ".join(_text(value).lower().replace("_", " ").replace("-", " ").split())
    if not text:
        return None
    try:
        return ResponseType(text)
    except ValueError:
        known = ", ".join(r.value for r in ResponseType)
        raise _Bad(f"response_type {_text(value)!r} is not one of: {known}") from None


def _subjective(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    text = _text(value).lower()
    if not text:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _Bad(f"subjective {_text(value)!r} is not true, false, yes or no")


class _Conversations:
    """Turns a reference (full id, unique prefix, external_id) into a conversation id."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db
        self._external: dict[str, list[str]] | None = None

    def external(self, ref: str) -> list[str]:
        if self._external is None:  # one scan, only for files that name external ids
            self._external = {}
            for cid, ext in self.db.execute(
                "select id, external_id from conversations where external_id is not null"
            ):
                self._external.setdefault(str(ext), []).append(cid)
        return self._external.get(ref, [])

    def find(self, ref: str) -> str:
        if not ref:
            raise _Bad("no conversation")
        if self.db.execute("select 1 from conversations where id = ?", [ref]).fetchone():
            return ref
        by_external = self.external(ref)
        if len(by_external) == 1:
            return by_external[0]
        if by_external:
            shown = ", ".join(by_external[:SHOWN_CANDIDATES])
            raise _Bad(f"external id {ref!r} names {len(by_external)} conversations ({shown}): "
                       "give the conversation id")
        hits = id_candidates(self.db, ref, SHOWN_CANDIDATES + 1)
        if len(hits) == 1:
            return hits[0]
        if hits:
            more = " …" if len(hits) > SHOWN_CANDIDATES else ""
            raise _Bad(f"conversation {ref!r} is ambiguous: "
                       f"{', '.join(hits[:SHOWN_CANDIDATES])}{more}")
        raise _Bad(f"no conversation {ref!r} in this study (by id, id prefix or external id)")


def _task(value: Any, task_list: TaskList) -> str | None:
    try:
        return task_list.require(_text(value) or None)
    except InputError as exc:
        raise _Bad(str(exc)) from None


def _labels(
    record: dict[str, Any], taxonomy: Taxonomy, free: list[str], task_list: TaskList
) -> Labels:
    def resolved(field: str) -> list[str]:
        out: list[str] = []
        for name in _names(record.get(field), field):
            node = taxonomy.resolve(name)
            if node is None:
                free.append(name)
            value = node.name if node is not None else name
            if value not in out:
                out.append(value)
        return out

    notes = _text(record.get("notes")) or None
    return Labels(
        ai_values=resolved("ai_values"),
        human_values=resolved("human_values"),
        response_type=_response_type(record.get("response_type")),
        subjective=_subjective(record.get("subjective")),
        notes=notes,
        task=_task(record.get("task"), task_list),
        task_description=_text(record.get("task_description"))[:200] or None,
    )


def _existing(db: sqlite_utils.Database, source: str) -> dict[str, dict[str, Any]]:
    return {row["id"]: row for row in db.query(
        "select * from annotations where source = ?", [source])}


def import_labels(
    db: sqlite_utils.Database,
    paths: Iterable[str | Path],
    annotator: str | None = None,
    taxonomy: Taxonomy | None = None,
) -> ImportLabelsReport:
    """Read label files into the study's annotations (see the module's docstring).

    `annotator` names the annotator of rows that do not name one. A missing file is an
    InputError before anything is imported.
    """
    files = [Path(p) for p in paths]
    for path in files:
        if not path.is_file():
            raise InputError(f"{path}: no such file")
    tree = taxonomy or load_taxonomy()
    task_list = load_task_list()
    report = ImportLabelsReport()
    conversations = _Conversations(db)
    free_counts: Counter[str] = Counter()
    for path in files:
        report.files.append(str(path))
        source = f"{SOURCE_PREFIX}{path.name}"
        existing = _existing(db, source)
        now = utc_now().isoformat()
        seen: dict[str, int] = {}
        rows: list[dict[str, Any]] = []
        for line_no, record in _records(path):
            report.read += 1

            def reject(reason: str, file: str = str(path), line: int = line_no) -> None:
                report.rejected.append(RejectedRecord(file=file, line=line, reason=reason))

            if isinstance(record, str):
                reject(record)
                continue
            try:
                ref = _text(record.get("conversation", record.get("conversation_id")))
                cid = conversations.find(ref)
                who = _text(record.get("annotator")) or (annotator or "").strip()
                if not who:
                    raise _Bad("no annotator (add an annotator field, or --annotator NAME)")
                free: list[str] = []
                labels = _labels(record, tree, free, task_list)
            except _Bad as exc:
                reject(str(exc))
                continue
            ident = f"{source}:{cid}:{who}"
            if ident in seen:
                reject(f"conversation {cid} by {who} is already on line {seen[ident]}")
                continue
            seen[ident] = line_no
            for name in free:
                free_counts[name] += 1
            report.free_values += len(free)
            missing = labels.missing_fields()
            report.incomplete += bool(missing)
            row = {
                "id": ident, "conversation_id": cid, "annotator": who,
                "labels": labels.model_dump_json(), "source": source,
                "source_id": f"{cid}:{who}", "missing": dumps(missing), "edited_by": None,
                "lead_time": None, "cancelled": 0, "deleted": 0, "updated_at": now,
                "history": "[]",
            }  # fmt: skip
            old = existing.get(ident)
            if old is None and db.execute("select 1 from annotations where id = ?",
                                          [ident]).fetchone():
                reject(f"annotation {ident} exists from another source: left as it is")
                continue
            if old is None:
                report.new += 1
            elif (Labels.same_json(old["labels"], row["labels"])
                  and loads(old["missing"], []) == missing and not old["deleted"]):
                report.unchanged += 1
                continue
            else:
                report.updated += 1
                history = loads(old["history"], [])
                history.append({"labels": loads(old["labels"], {}),
                                "missing": loads(old["missing"], []),
                                "deleted": bool(old["deleted"]),
                                "updated_at": old["updated_at"], "replaced_at": now})
                row["history"] = dumps(history)
            rows.append(row)
        with db.conn:
            db["annotations"].upsert_all(rows, pk="id")
    report.free_value_names = dict(free_counts.most_common())
    return report
