"""Errors the library raises for conditions a user can fix; the CLI prints them as one line."""

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import ValidationError

# One wording wherever a command needs human labels and the study has none (agreement, report,
# export), naming both ways in.
NO_ANNOTATIONS = (
    "no annotations yet: import or pull some (`annotator import-labels FILE` or `annotator pull`)"
)


class AnnotatorError(Exception):
    """A problem the user can act on; the message says what to do."""


class InputError(AnnotatorError):
    """A file or argument that cannot be read as asked."""


class NotAStudyError(AnnotatorError, sqlite3.DatabaseError):
    """A path that holds a file, but not an SQLite study database. Also a DatabaseError, so
    code that guards a read against a bad file catches it as before."""


def invalid_reason(exc: ValidationError) -> str:
    """Why pydantic refused a value, in a line: its first three errors, by field (the values
    themselves are not repeated)."""
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])


# What reading a stored row that another program changed can raise: JSON that does not parse
# (a ValueError, as is a field pydantic refuses or a time that is not one), a field of another
# shape (a number where a list was: TypeError; a list where an object was: AttributeError; an
# object without its name: KeyError).
UNREADABLE_ROW = (ValueError, TypeError, AttributeError, KeyError)


# How an error names a stored row (`unreadable_row`), the same wherever it is read.
def annotation_row(ident: object, conversation_id: object) -> str:
    return f"annotation {ident!r} of conversation {conversation_id!r}"


def gold_row(conversation_id: object) -> str:
    return f"the gold of conversation {conversation_id!r}"


def extraction_row(conversation_id: object, prompt_id: object) -> str:
    return f"the extraction of conversation {conversation_id!r} by prompt {prompt_id!r}"


def conversation_row(conversation_id: object) -> str:
    return f"conversation {conversation_id!r}"


def unreadable_row(what: str, exc: Exception) -> AnnotatorError:
    """A stored row the study cannot read (changed by hand or by another program), named in one
    line instead of a traceback. `what` names the row: "annotation 'a1' of conversation 'c1'"."""
    why = invalid_reason(exc) if isinstance(exc, ValidationError) else str(exc)
    return AnnotatorError(f"{what} holds what the study cannot read ({why}): correct or "
                          "delete that row, then run this again")


@contextmanager
def reading_row(what: str) -> Iterator[None]:
    """Read one stored row inside: what it cannot read is `unreadable_row(what, ...)`."""
    try:
        yield
    except UNREADABLE_ROW as exc:
        raise unreadable_row(what, exc) from exc
