"""What every command of the `annotator` command line shares: the Typer app, the `--db` and
`--json` options, tables, progress bars and the app's summaries after a change.

Library errors become CLI errors only here (`cli_errors`): `AnnotatorError` (and its
subclasses) print one line and exit non-zero, without a stack trace.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from annotator import config
from annotator.errors import AnnotatorError

if TYPE_CHECKING:
    from annotator.extract.run_report import ExtractProgress


app = typer.Typer(
    help=(
        "annotator: a human-in-the-loop workbench for the values an AI expresses in "
        "conversations.\n\nExample: annotator init && annotator ingest chats.jsonl"
    ),
    no_args_is_help=True,
    rich_markup_mode="markdown",  # docstring paragraphs reflow to the terminal width
    pretty_exceptions_enable=False,
)



def _print_version(value: bool) -> None:
    if value:
        from annotator.models import tool_version

        typer.echo(f"annotator {tool_version()}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print the annotator version and exit.")] = False,
) -> None:
    """annotator: a human-in-the-loop workbench for the values an AI expresses in
    conversations.

    Example: annotator init && annotator ingest chats.jsonl"""
    from annotator.db import collect_garbage_rarely

    collect_garbage_rarely()


# Characters that steer a terminal instead of showing: C0 controls but newline and tab (ESC
# starts CSI/OSC sequences: clear screen, colours, window titles, the clipboard, hyperlinks;
# BEL, backspace and carriage return rewrite what is shown), DEL, the C1 controls U+0080-U+009F
# (U+009B is a one-character CSI on many terminals) and the bidirectional overrides that
# reorder what a line seems to say. The line separators end a line where data says.
_STEERING = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e"
    "\u2066-\u2069]"
)


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal_safe(text: str) -> str:
    """`text` with every character that would steer a terminal shown as its escape (ESC as
    `\\x1b`, U+009B as `\\x9b`); newline and tab kept for layout. Every line this command
    line prints passes through it (`SafeConsole`, `print_json`): data never controls a
    terminal."""
    return _STEERING.sub(_visible, text) if _STEERING.search(text) else text


def json_safe(text: str) -> str:
    """JSON text with the steering characters a JSON encoder leaves raw (DEL, C1, the bidi
    overrides) written as `\\uXXXX` escapes: the same JSON value, harmless in a terminal.
    Control characters below U+0020 are already escaped by every JSON encoder."""
    return _STEERING.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


class SafeConsole(Console):
    """A rich console that prints data as text: every string is made `terminal_safe` before
    markup is read (so layout measures what is shown), and every segment of text once more
    when written (a `Text` built elsewhere, a progress bar's description), while rich's own
    control segments (cursor moves of a progress bar) and styles pass."""

    def render_str(self, text: str, **kwargs: Any) -> Any:
        return super().render_str(terminal_safe(text), **kwargs)

    def _render_buffer(self, buffer: Iterable[Segment]) -> str:
        return super()._render_buffer(
            segment if segment.control else Segment(terminal_safe(segment.text), segment.style)
            for segment in buffer
        )


console = SafeConsole()


err_console = SafeConsole(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


DbOption = Annotated[
    Path | None,
    typer.Option(
        "--db",
        help="Study database file. Default: $ANNOTATOR_DB, else ./annotator.db.",
        show_default=False,
    ),
]


JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


PromptsDirOption = Annotated[
    Path | None,
    typer.Option(
        "--prompts",
        help="The study's prompt folder (`<name>/<version>.md`). Default: $ANNOTATOR_PROMPTS_DIR, "
        "else the prompts shipped with annotator.",
        show_default=False,
    ),
]


PROMPT_REF = ("id, any unique id prefix as printed (e.g. baseline-3d7), name/version, or a .md "
              "file")


SummariesOption = Annotated[
    bool,
    typer.Option(
        "--summaries/--no-summaries",
        help="Afterwards, compute the app's summaries for the changed data, so its pages open "
        "at once (at 300,000 conversations: about ten seconds after a thousand new labels, "
        "most of a minute from scratch).",
    ),
]


def db_path(db: Path | None) -> Path:
    return db if db is not None else config.default_db_path()


def print_json(data: Any, to_stderr: bool = False) -> None:
    write_json(json.dumps(data, indent=2, default=str, ensure_ascii=False), to_stderr)


def write_json(text: str, to_stderr: bool = False) -> None:
    """JSON text to standard output (or error), its steering characters escaped."""
    (sys.stderr if to_stderr else sys.stdout).write(json_safe(text) + "\n")


def cli_errors(func: F) -> F:
    """Turn library errors into one line on stderr and exit code 1."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except AnnotatorError as exc:
            # A message quotes paths and data: escaped, so brackets in them print as they are.
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False,
                              soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


SHOWN_ITEMS = 20  # a listing in the terminal stops here; --json gives every item


def print_listed(items: list[tuple[str, str]], label: str, style: str = "yellow") -> None:
    """`label conversation: reason` lines for the first SHOWN_ITEMS items, then how many more.

    Conversation ids and reasons come from data (an annotator's name is in a reason): escaped,
    so that text in brackets is printed, not read as markup.
    """
    for conversation_id, reason in items[:SHOWN_ITEMS]:
        err_console.print(f"[{style}]{label}[/] {escape(conversation_id)}: {escape(reason)}",
                          highlight=False, soft_wrap=True)
    if len(items) > SHOWN_ITEMS:
        err_console.print(f"  … and {len(items) - SHOWN_ITEMS:,} more (all of them: --json)",
                          highlight=False)


def rows_table(title: str, rows: list[dict[str, Any]]) -> Table:
    """A table of plain rows. Every string in it is escaped: table cells and titles are read
    as markup, and rows carry data (names, paths, queries). A title wider than the table (a
    long path) folds onto more lines rather than being cut short."""
    table = Table(title=Text(title, overflow="fold"))
    if rows:
        for key in rows[0]:
            table.add_column(escape(str(key)))
        for row in rows:
            table.add_row(*("" if v is None else escape(str(v)) for v in row.values()))
    return table


@contextmanager
def extract_bar(enabled: bool) -> Iterator[Callable[[ExtractProgress], None] | None]:
    """The extraction's progress bar on stderr: conversations, rate, cost, errors, time left.
    Yields the callback `extract` takes (None when disabled)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    # Only on a terminal (a redirected stderr gets no spinner frames), and only from the first
    # progress report: an error found before any work (an unknown prompt) is not printed under
    # an empty bar.
    if not live(enabled):
        yield None
        return
    rate = TextColumn("{task.fields[rate]}", style="cyan")
    bar = Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=24),
        MofNCompleteColumn(), rate, TextColumn("[green]${task.fields[cost]:.4f}"),
        TextColumn("[red]{task.fields[errors]} err"), TimeElapsedColumn(), TextColumn("eta"),
        TimeRemainingColumn(), console=err_console, transient=False,
    )  # fmt: skip
    job = bar.add_task("", total=None, cost=0.0, errors=0, rate="– conv/s")

    def update(at: ExtractProgress) -> None:
        if not bar.live.is_started:
            bar.start()
        speed = bar.tasks[job].finished_speed or bar.tasks[job].speed
        bar.update(
            job, description=escape(at.what), completed=at.done, total=at.total,
            cost=at.cost_usd, errors=at.errors,
            rate=f"{speed:.1f} conv/s" if speed else "– conv/s",
        )  # fmt: skip

    try:
        yield update
    finally:
        if bar.live.is_started:
            bar.stop()


def live(enabled: bool) -> bool:
    """Whether a live display (a progress bar, a spinner) is drawn on stderr: only when it is
    a terminal. Forced colour (FORCE_COLOR) on a pipe or a log gets styles but no animation:
    a bar's cursor movements are control codes a log keeps."""
    return enabled and err_console.is_terminal and sys.stderr.isatty()


def say(line: str) -> None:
    # soft_wrap: a URL, password or token must stay on one line to be copied. No markup: every
    # line here carries names, URLs and messages from a server or from data.
    console.print(line, highlight=False, soft_wrap=True, markup=False)


def progress_bar(label: str, enabled: bool) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress(
        f"[bold]{label}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, disable=not live(enabled), transient=True,
    )  # fmt: skip


@contextmanager
def working(label: str, enabled: bool) -> Iterator[None]:
    """A spinner and the time elapsed on stderr, on a terminal only, while uncounted work
    runs (a bar would have no total to fill)."""
    from rich.progress import Progress, SpinnerColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), f"[bold]{label}", TimeElapsedColumn(), console=err_console,
                  disable=not live(enabled), transient=True) as shown:
        shown.add_task(label, total=None)
        yield


def precompute_summaries(
    path: Path, enabled: bool, quiet: bool, n_boot: int | None = None,
    workers: int | None = None, must_succeed: bool = False,
) -> dict[str, Any] | None:
    """The app's summaries for what a command changed (see `annotator summarize`).

    After `extract`, `pull` or `adjudicate` their work is saved whatever happens here: a
    failure is reported (the app then computes them when opened), not raised.
    """
    if not enabled:
        return None
    from annotator.app.precompute import DEFAULT_BOOT, precompute

    try:
        with progress_bar("App summaries", not quiet) as bar:
            job = bar.add_task("summaries", total=None)
            done = precompute(
                path, n_boot=DEFAULT_BOOT if n_boot is None else n_boot, workers=workers,
                progress=lambda what, i, total: bar.update(job, completed=i, total=total),
            )  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - reported; the command's own work is saved
        reason = f"{type(exc).__name__}: {exc}"
        if must_succeed:
            if isinstance(exc, OSError):  # a full disk or an unwritable folder: say so plainly
                raise AnnotatorError(f"could not compute the app's summaries ({reason})") from exc
            raise
        err_console.print(f"[yellow]Could not compute the app's summaries[/] "
                          f"({escape(reason)}); the "
                          "app computes them when opened, or run `annotator summarize`.",
                          highlight=False)
        return {"error": reason}
    if not quiet:
        console.print(
            f"App summaries: {len(done.computed)} computed, {done.already_stored} of "
            f"{done.summaries} already up to date ({done.seconds:.1f} s)"
        )
    return done.model_dump()


def figure(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.3f}"  # NaN != NaN
