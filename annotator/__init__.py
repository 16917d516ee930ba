"""annotator: a human-in-the-loop workbench for the values an AI expresses in conversations."""

__version__ = "0.1.0"
