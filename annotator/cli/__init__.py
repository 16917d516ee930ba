"""The command line (`annotator`): Typer commands over the library functions of the same name.

The only importer of Typer; library errors become one line here.
"""

from annotator.cli.main import app

__all__ = ["app"]
