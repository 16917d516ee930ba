"""Errors the library raises for conditions a user can fix; the CLI prints them as one line."""


class AnnotatorError(Exception):
    """A problem the user can act on; the message says what to do."""


class InputError(AnnotatorError):
    """A file or argument that cannot be read as asked."""
