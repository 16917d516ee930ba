"""Stored labels, votes and gold read as plain tuples, for the passes over every conversation
(`export`, `adjudicate`).

A label as the study stores it (`Labels.model_dump_json`) is read with `orjson` and a few type
checks: `Labels.model_validate_json` took 8.6 us a label, and an `Annotation` model around it
as much again, a third of an export at 300,000 conversations. A row in any other shape (a
field of another type, JSON `orjson` refuses) is read through the models, which coerce it as
before: both ways give the same values. A row the models refuse (written by another program,
or by hand) is a one-line `AnnotatorError` naming it, not a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from itertools import groupby
from operator import itemgetter
from typing import Any, NamedTuple

import orjson
import sqlite_utils
from pydantic import ValidationError

from annotator.db import (
    EVERY_ID,
    VOTE_COLUMNS,
    VOTES,
    IdRange,
    id_range_sql,
    loads,
    optional_bool,
    row_to_gold,
    vote_to_annotation,
)
from annotator.errors import annotation_row, gold_row, unreadable_row
from annotator.models import Annotation, Labels, ResponseType, Role

RESPONSE_TYPES: dict[str, ResponseType] = {t.value: t for t in ResponseType}
ROLES = frozenset(role.value for role in Role)  # a turn's roles, as `Turn` accepts them


def plain_turns(turns: Any, min_turns: int) -> list[dict[str, str]] | None:
    """Stored turns as a record's `list[Turn]` dumps them (role and text; other keys, which
    the model ignores, dropped), or None when the model would refuse them or has fewer than
    `min_turns`."""
    if type(turns) is not list or len(turns) < min_turns:
        return None
    plain = []
    for turn in turns:
        if type(turn) is not dict:
            return None
        role, text = turn.get("role"), turn.get("text")
        if type(role) is not str or role not in ROLES or type(text) is not str:
            return None
        plain.append({"role": role, "text": text})
    return plain


class PlainLabels(NamedTuple):
    """`Labels`' fields, in its order, as the model would hold them."""

    ai_values: list[str]
    human_values: list[str]
    response_type: ResponseType | None
    subjective: bool | None
    notes: str | None
    task: str | None
    task_description: str | None


_IS_STR = str.__instancecheck__  # a C call per name, no Python frame: this runs per value


def _names(value: Any) -> bool:
    return type(value) is list and all(map(_IS_STR, value))


def _text(value: Any) -> bool:
    return value is None or type(value) is str


def plain_labels(raw: str | bytes) -> PlainLabels:
    """`Labels.model_validate_json(raw)` as a tuple; raises as it does."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:  # the model says what is wrong, or reads what orjson won't
        data = None
    if type(data) is dict:  # keys the model does not know, it ignores too
        get = data.get
        ai_values, human_values = get("ai_values", []), get("human_values", [])
        named, subjective = get("response_type"), get("subjective")
        notes, task, description = get("notes"), get("task"), get("task_description")
        response_type = RESPONSE_TYPES.get(named) if type(named) is str else None
        if (_names(ai_values) and _names(human_values)
                and (response_type is not None or named is None)
                and (subjective is True or subjective is False or subjective is None)
                and (notes is None or type(notes) is str)
                and (task is None or type(task) is str)
                and (description is None or type(description) is str)):
            return PlainLabels(ai_values, human_values, response_type, subjective, notes, task,
                               description)
    return _plain_of(Labels.model_validate_json(raw))


def _plain_of(labels: Labels) -> PlainLabels:
    return PlainLabels(*(getattr(labels, name) for name in PlainLabels._fields))


class Vote(NamedTuple):
    """What deciding by majority reads of one annotation: who, the two required fields, and
    what its source marked missing. Read straight from SQL for a whole study (`people_needed`):
    a full `Annotation` per row costs about 90 us, 80 s at 900,000 annotations."""

    annotator: str
    response_type: Any
    subjective: Any
    missing: tuple[str, ...] = ()


class PlainVote(NamedTuple):
    """One live annotation (`VOTE_COLUMNS`, as the cursor gave them) with its labels read."""

    row: tuple[Any, ...]
    labels: PlainLabels
    missing: tuple[str, ...]

    @property
    def annotator(self) -> str:
        return self.row[2]

    @property
    def edited_by(self) -> str | None:
        return self.row[7]

    @property
    def own(self) -> bool:
        """Its author's labels (`Annotation.edited_by_other` is False)."""
        return not self.edited_by or self.edited_by == self.annotator

    def vote(self) -> Vote:
        return Vote(self.annotator, self.labels.response_type, self.labels.subjective,
                    self.missing)

    def exported(self) -> dict[str, Any]:
        """The annotation as an export writes it (`ExportedAnnotation`'s `model_dump(mode=
        "json")`: the labels' fields, then who wrote them and who last changed them)."""
        labels = self.labels
        named = labels.response_type
        return {"ai_values": labels.ai_values, "human_values": labels.human_values,
                "response_type": None if named is None else named.value,
                "subjective": labels.subjective, "notes": labels.notes, "task": labels.task,
                "task_description": labels.task_description, "annotator": self.row[2],
                "edited_by": self.row[7]}

    def annotation(self) -> Annotation:
        """The model, for the few readers that need all of it (a person's decision's digest,
        why a conversation has no gold)."""
        return vote_to_annotation(self.row)


def plain_vote(row: tuple[Any, ...]) -> PlainVote:
    """A `PlainVote` of a `VOTE_COLUMNS` row, the fields it reads as `vote_to_annotation`
    reads them; a row the models refuse is a one-line error naming it."""
    try:
        stored = row[6]
        missing = () if stored in (None, "", "[]") else loads(stored, [])
        if not isinstance(missing, tuple):
            if not _names(missing):
                return _vote_of(vote_to_annotation(row), row)
            missing = tuple(missing)
        if not (type(row[2]) is str and _text(row[7])):
            return _vote_of(vote_to_annotation(row), row)
        return PlainVote(row, plain_labels(row[3]), missing)
    except (ValidationError, orjson.JSONDecodeError) as exc:
        raise unreadable_row(annotation_row(row[0], row[1]), exc) from None


def _vote_of(annotation: Annotation, row: tuple[Any, ...]) -> PlainVote:
    return PlainVote(row, _plain_of(annotation.labels), tuple(annotation.missing))


def vote_rows_in_order(db: sqlite_utils.Database, ids: IdRange = EVERY_ID
                       ) -> Iterator[tuple[str, Iterator[tuple[Any, ...]]]]:
    """The `VOTE_COLUMNS` rows of `live_annotations_in_order`, a conversation's at a time (an
    iterator each, used up before the next)."""
    in_range, params = id_range_sql("conversation_id", ids)
    rows = db.execute(f"select {', '.join(VOTE_COLUMNS)} from annotations where {VOTES} and "
                      f"{in_range} order by conversation_id, annotator", params)
    return groupby(rows, key=itemgetter(1))


def plain_votes_in_order(db: sqlite_utils.Database, ids: IdRange = EVERY_ID
                         ) -> Iterator[tuple[str, list[PlainVote]]]:
    """`gold.live_annotations_in_order` as plain votes."""
    for conversation_id, rows in vote_rows_in_order(db, ids):
        yield conversation_id, [plain_vote(row) for row in rows]


def own_votes(votes: Sequence[PlainVote]) -> tuple[list[PlainVote], int]:
    """The votes whose labels are their author's, and how many were set aside
    (`gold.own_annotations` of plain votes)."""
    own = [vote for vote in votes if vote.own]
    return own, len(votes) - len(own)


def annotations_of(votes: Sequence[PlainVote]) -> list[Annotation]:
    return [vote.annotation() for vote in votes]


class PlainGold(NamedTuple):
    """What an export reads of a gold row, as `GoldLabel` would hold it."""

    ai_values: list[str]
    human_values: list[str]
    response_type: ResponseType | None
    subjective: bool | None
    task: str | None
    task_description: str | None
    decided_by: str
    decided_at: datetime | None


# the gold columns `plain_gold` reads, in its order
GOLD_COLUMNS = ("ai_values", "human_values", "response_type", "subjective", "task",
                "task_description", "decided_by", "decided_at", "from_annotations")


def plain_gold(conversation_id: str, values: Sequence[Any]) -> PlainGold:
    """The gold of a conversation from its `GOLD_COLUMNS` values, as `row_to_gold` reads them;
    values the models refuse are a one-line error naming the conversation."""
    try:
        return _plain_gold(conversation_id, values)
    except ValueError as exc:  # a refused field (`ValidationError`), JSON or time
        raise unreadable_row(gold_row(conversation_id), exc) from None


def _plain_gold(conversation_id: str, values: Sequence[Any]) -> PlainGold:
    ai, human, named, subjective, task, description, decided_by, decided_at, sources = values
    ai_values, human_values = loads(ai, []), loads(human, [])
    response_type = RESPONSE_TYPES.get(named) if type(named) is str else None
    if (_names(ai_values) and _names(human_values) and _names(loads(sources, []))
            and (named is None or response_type is not None) and _text(task)
            and _text(description) and type(decided_by) is str):
        return PlainGold(ai_values, human_values, response_type, optional_bool(subjective),
                         task, description, decided_by,
                         datetime.fromisoformat(decided_at) if decided_at else None)
    gold = row_to_gold({"conversation_id": conversation_id,
                        **dict(zip(GOLD_COLUMNS, values, strict=True))})
    return PlainGold(gold.ai_values, gold.human_values, gold.response_type, gold.subjective,
                     gold.task, gold.task_description, gold.decided_by, gold.decided_at)
