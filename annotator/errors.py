"""Errors the library raises for conditions a user can fix; the CLI prints them as one line."""

import sqlite3

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
