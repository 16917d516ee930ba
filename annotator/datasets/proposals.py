"""The model's proposals as export records: every extraction (conversation, prompt version,
model) with its values, evidence quotes, status, error, tokens, cost and model calls.

A row in the shape the study stores (`db.extraction_to_row`) becomes a `PlainProposal`: its
fields checked and written as they are, without an `Extraction` and a `ProposalRecord` model
a row (a third of a proposals export's time; one half at 300,000 conversations went from
17.5 s to 11.5 s). A row in any other shape goes through the models, which coerce it or say
why it is refused, as before.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

import orjson
import sqlite_utils
from pydantic import ValidationError

from annotator.datasets.plain import RESPONSE_TYPES, plain_turns
from annotator.datasets.records import (
    ExportedValue,
    PlainProposal,
    ProposalRecord,
)
from annotator.datasets.values import proposal_fields, proposed_value
from annotator.db import EVERY_ID, IdRange, id_range_sql, loads, optional_bool, row_to_extraction
from annotator.errors import invalid_reason
from annotator.extract.prompts import NOT_SCRUB
from annotator.models import ExtractionStatus

NOT_IN_STUDY = "proposal of a conversation that is not in the study"
STATUSES = {status.value: status for status in ExtractionStatus}


def model_calls(db: sqlite_utils.Database, ids: IdRange
                ) -> dict[tuple[str, str, str], tuple[int, float]]:
    """Requests sent and their time, per (conversation, prompt, model), in one pass."""
    in_range, params = id_range_sql("conversation_id", ids)
    return {
        (cid, pid, model): (n, ms or 0.0)
        for cid, pid, model, n, ms in db.execute(
            "select conversation_id, prompt_id, model, count(*), sum(duration_ms) "
            f"from model_calls where {in_range} group by 1, 2, 3", params
        )
    }


# the extraction's columns a proposal writes, in `_plain_proposal`'s order
_COLUMNS = ("conversation_id", "prompt_id", "model", "extractor", "status", "error",
            "subjective", "response_type", "task", "task_description", "ai_values",
            "human_values", "input_tokens", "output_tokens", "cache_read_tokens",
            "cache_write_tokens", "cost_usd", "attempts", "created_at")
# The raw reply is not written: whether the model would accept it is read, not the text.
_SQL = (
    f"select e.rowid, {', '.join(f'e.{name}' for name in _COLUMNS)}, "
    "e.raw_reply is null or typeof(e.raw_reply) = 'text', "
    "c.id, c.source, c.external_id, c.turns, p.name, p.version from extractions e "
    "left join conversations c on c.id = e.conversation_id "
    "left join prompts p on p.id = e.prompt_id "
    f"where e.{NOT_SCRUB} and {{in_range}} order by e.conversation_id, e.prompt_id, e.model"
)

ValueOfRef = Callable[[str | None, str], tuple[ExportedValue, dict[str, Any]]]


def proposal_records(db: sqlite_utils.Database, ids: IdRange = EVERY_ID
                     ) -> Iterator[PlainProposal | ProposalRecord | tuple[str, str]]:
    """Every extraction (of the conversations in `ids`), sorted by conversation, prompt and
    model; `(id, reason)` if invalid."""
    calls = model_calls(db, ids)
    value_of: ValueOfRef = functools.cache(_value_and_fields)
    in_range, params = id_range_sql("e.conversation_id", ids)
    for row in db.execute(_SQL.format(in_range=in_range), params):
        if row[21] is None:  # no such conversation: named, never left out unsaid
            yield (row[1], NOT_IN_STUDY)
            continue
        n_calls, ms = calls.get((row[1], row[2], row[3]), (0, 0.0))
        yield (_plain_proposal(row, n_calls, ms, value_of)
               or _proposal_record(db, row, n_calls, ms, value_of))


def _value_and_fields(node_id: str | None, name: str) -> tuple[ExportedValue, dict[str, Any]]:
    fields = proposal_fields(node_id, name)
    return ExportedValue(**fields), fields


def _plain_values(text: str | None, value_of: ValueOfRef
                  ) -> tuple[list[ExportedValue], list[dict[str, Any]]] | None:
    """A stored list of values (`ValueRef`s) as `ProposedValue` rows and the resolved values;
    None: not in the stored shape (the model decides)."""
    if not text:
        return [], []
    try:
        refs = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if type(refs) is not list:
        return None
    values, rows = [], []
    for ref in refs:
        if type(ref) is not dict:
            return None
        get = ref.get
        name, node_id, path = get("name"), get("node_id"), get("path", [])
        evidence, score = get("evidence"), get("score")
        if not (type(name) is str and (node_id is None or type(node_id) is str)
                and type(path) is list and all(map(str.__instancecheck__, path))
                and (evidence is None or type(evidence) is str)
                and (score is None or type(score) is float)):
            return None
        value, fields = value_of(node_id, name)
        values.append(value)
        rows.append({**fields, "evidence": evidence, "score": score})
    return values, rows


def _text(*values: Any) -> bool:
    return all(value is None or type(value) is str for value in values)


def _plain_proposal(row: Sequence[Any], n_calls: int, ms: float | int, value_of: ValueOfRef
                    ) -> PlainProposal | None:
    """The proposal of an extraction row (`_SQL`) in the stored shape; None: another shape."""
    (_, cid, prompt_id, model, extractor, status, error, subjective, named, task, description,
     ai_text, human_text, input_tokens, output_tokens, read_tokens, write_tokens, cost,
     attempts, created_at, reply_ok, _, source, external_id, turns_text, prompt_name,
     prompt_version) = row
    response_type = RESPONSE_TYPES.get(named) if type(named) is str else None
    ai = _plain_values(ai_text, value_of)
    human = _plain_values(human_text, value_of)
    turns = plain_turns(loads(turns_text, []), min_turns=0)
    source = source or ""
    if not (ai is not None and human is not None and turns is not None and reply_ok
            and type(cid) is str and type(prompt_id) is str and type(model) is str
            and type(extractor) is str and type(source) is str
            and _text(error, task, description, external_id, prompt_name, prompt_version)
            and (response_type is not None or named is None)
            and all(type(n) is int for n in (input_tokens, output_tokens, read_tokens,
                                             write_tokens, attempts, n_calls))
            and type(cost) is float and type(ms) in (float, int) and type(created_at) is str
            and (status := STATUSES.get(status)) is not None
            and _canonical_time(created_at)):
        return None
    subjective = optional_bool(subjective)
    row_out = {
        "conversation_id": cid, "source": source, "external_id": external_id, "turns": turns,
        "prompt_id": prompt_id, "prompt_name": prompt_name, "prompt_version": prompt_version,
        "model": model, "extractor": extractor, "status": status.value, "error": error,
        "subjective": subjective,
        "response_type": None if response_type is None else response_type.value,
        "task": task, "task_description": description, "ai_values": ai[1],
        "human_values": human[1], "input_tokens": input_tokens, "output_tokens": output_tokens,
        "cache_read_tokens": read_tokens, "cache_write_tokens": write_tokens,
        "cost_usd": cost, "attempts": attempts, "model_calls": n_calls, "call_ms": float(ms),
        "created_at": created_at,
    }
    return PlainProposal(cid, source, response_type, subjective, task, status, prompt_id,
                         ai[0], row_out)


def _canonical_time(text: str) -> bool:
    """A time as the study writes it (`isoformat`), which the model reads to the same time."""
    try:
        return datetime.fromisoformat(text).isoformat() == text
    except ValueError:
        return False


def _proposal_record(db: sqlite_utils.Database, row: Sequence[Any], n_calls: int,
                     ms: float | int, value_of: ValueOfRef) -> ProposalRecord | tuple[str, str]:
    """The proposal of an extraction row not in the stored shape, through the models."""
    def fields(node_id: str | None, name: str) -> dict[str, Any]:
        return value_of(node_id, name)[1]

    cursor = db.execute("select * from extractions where rowid = ?", [row[0]])
    stored = dict(zip([d[0] for d in cursor.description], cursor.fetchone(), strict=True))
    source, external_id, turns, prompt_name, prompt_version = row[22:]
    try:
        extraction = row_to_extraction(stored)
        return ProposalRecord(
            **extraction.model_dump(exclude={"ai_values", "human_values", "raw_reply",
                                             "created_at"}),
            source=source or "",
            external_id=external_id,
            turns=loads(turns, []),  # validated as the record's
            prompt_name=prompt_name,
            prompt_version=prompt_version,
            ai_values=[proposed_value(v, fields) for v in extraction.ai_values],
            human_values=[proposed_value(v, fields) for v in extraction.human_values],
            model_calls=n_calls,
            call_ms=ms,
            created_at=extraction.created_at.isoformat(),
        )
    except ValidationError as exc:
        return (stored["conversation_id"], invalid_reason(exc))

