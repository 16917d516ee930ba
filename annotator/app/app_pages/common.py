"""What every page shares: the sidebar (study, prompt version, settings), the study's cached
facts and results, empty states, paginated tables, charts, and literal text.

Text from a conversation or a label (a model's free value can be anything) is never handed to
Markdown: dialogue goes through `dialogue_html`, which escapes every character that HTML gives
a meaning to and adds only its own `<mark>` tags; labels go to dataframes and charts, which show
text as text.
"""

from __future__ import annotations

import functools
import hmac
import html
import re
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import altair as alt
import pandas as pd
import pyarrow as pa
import streamlit as st

from annotator import config
from annotator.app import conversation_search, precompute, queries, summary_cache
from annotator.app.conversation_search import ConversationHit
from annotator.measure import findings, progress
from annotator.measure.summaries import Bundle
from annotator.review.instances import task_url

WAIT_SECONDS = 3.0  # how long a page waits for a result before showing "computing"
DEFAULT_BOOT = precompute.DEFAULT_BOOT
PAGE_SIZE = 25


# --- Markdown and HTML --------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~:$&=\"'@/])")


# Streamlit's Markdown links bare emails and web addresses in text after escapes are read
# (`ada\@example\.org` and `ada&#64;example.org` are still linked: measured in Chromium), so a
# WORD JOINER, which shows nothing and keeps the text on one line, is put where a link would
# start: after an email's "@", inside "www." and inside "://".
_WJ = "\u2060"
_AUTOLINK = re.compile(r"@(?=[\w-])|(?<!\w)w(?=ww\.)|:(?=//)", re.IGNORECASE)


def md(text: Any) -> str:
    """`text` escaped for Markdown: every ASCII punctuation mark that could start markup (links,
    emphasis, HTML, Streamlit's `:color[...]` and `:icon:` directives, LaTeX) is backslashed,
    and emails and web addresses are not turned into links."""
    plain = _AUTOLINK.sub(lambda m: m.group(0) + _WJ, str(text))
    return _MD_SPECIAL.sub(r"\\\1", plain).replace("\n", "  \n")


PALETTE = ("#fde68a", "#bfdbfe", "#bbf7d0", "#fbcfe8", "#ddd6fe", "#fed7aa", "#a5f3fc", "#e5e7eb")


def _find_spans(text: str, quote: str) -> list[tuple[int, int]]:
    """Where `quote` occurs in `text`: exactly, else ignoring case."""
    spans: list[tuple[int, int]] = []
    for haystack, needle in ((text, quote), (text.casefold(), quote.casefold())):
        if len(haystack) != len(text):  # casefold changed lengths: offsets would not map
            break
        start = haystack.find(needle)
        while start >= 0 and needle:
            spans.append((start, start + len(needle)))
            start = haystack.find(needle, start + len(needle))
        if spans:
            break
    return spans


def _marked(text: str, quotes: Sequence[tuple[str, str]], colours: dict[str, str]) -> tuple[
    str, set[int]
]:
    """Escaped `text` with each quote wrapped in <mark>; the indices of the quotes found."""
    cover: list[list[str]] = [[] for _ in text]
    found: set[int] = set()
    for i, (value, quote) in enumerate(quotes):
        for start, end in _find_spans(text, quote.strip()):
            found.add(i)
            for pos in range(start, end):
                if value not in cover[pos]:
                    cover[pos].append(value)
    out: list[str] = []
    pos = 0
    while pos < len(text):
        end = pos
        while end < len(text) and cover[end] == cover[pos]:
            end += 1
        chunk = html.escape(text[pos:end], quote=True)
        values = cover[pos]
        if values:
            title = html.escape("; ".join(values), quote=True)
            colour = colours.get(values[0], PALETTE[-1])
            out.append(f'<mark title="{title}" style="background:{colour};padding:0 1px">'
                       f"{chunk}</mark>")
        else:
            out.append(chunk)
        pos = end
    return "".join(out), found


def dialogue_html(
    turns: Sequence[dict[str, str]], quotes: Sequence[tuple[str, str]] = ()
) -> tuple[str, list[tuple[str, str]]]:
    """The dialogue as escaped HTML with each (value, evidence quote) highlighted.

    Returns the HTML and the quotes that were not found in the text (shown separately, so a
    reviewer sees that the model quoted something the conversation does not contain).
    """
    values = list(dict.fromkeys(v for v, _ in quotes))
    colours = {v: PALETTE[i % (len(PALETTE) - 1)] for i, v in enumerate(values)}
    found: set[int] = set()
    parts = ['<div class="annotator-dialogue">']
    for turn in turns:
        body, hits = _marked(str(turn.get("text", "")), quotes, colours)
        found |= hits
        role = html.escape(str(turn.get("role", "")).capitalize(), quote=True)
        parts.append(
            '<div style="margin:0 0 0.9rem 0">'
            f'<div style="font-weight:600;opacity:0.75">{role}</div>'
            f'<div style="white-space:pre-wrap;line-height:1.5">{body}</div></div>'
        )
    if values:
        legend = " ".join(
            f'<mark style="background:{colours[v]};padding:0 4px">{html.escape(v, quote=True)}'
            "</mark>"
            for v in values
        )
        parts.append(f'<div style="font-size:0.85rem">Evidence of: {legend}</div>')
    parts.append("</div>")
    missing = [q for i, q in enumerate(quotes) if i not in found and q[1].strip()]
    return "".join(parts), missing


# --- the study ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Study:
    path: str
    fp: summary_cache.Fingerprint
    sigs: dict[str, str]

    def sig(self, table: str) -> str:
        return self.sigs.get(table, "")

    @property
    def prompt_ids(self) -> list[str]:
        return list(prompts(self)["prompt_id"])


def _facts(study: Study) -> dict[str, Any]:
    return summary_cache.facts(study.path, study.fp)


def prompts(study: Study) -> pd.DataFrame:
    return pd.DataFrame(_facts(study)["prompts"],
                        columns=["prompt_id", "name", "version", "ok", "errors", "first_used"])


def stage_counts(study: Study) -> pd.DataFrame:
    return pd.DataFrame(_facts(study)["stages"], columns=["stage", "detail", "conversations"])


def sources(study: Study) -> dict[str, int]:
    return dict(_facts(study)["sources"])


def n_conversations(study: Study) -> int:
    return int(study.sig("conversations").split(":", 1)[0] or 0)


def prompt_label(study: Study, prompt_id: str | None) -> str:
    if prompt_id is None:
        return "none"
    frame = prompts(study)
    row = frame.loc[frame["prompt_id"] == prompt_id]
    if row.empty:
        return prompt_id
    name = f"{row.iloc[0]['name']} {row.iloc[0]['version']}".strip()
    return f"{name} · {prompt_id}" if name and name != prompt_id else prompt_id


def open_study() -> Study | None:
    """The study named in the sidebar, or None when there is no database at that path."""
    path = str(st.session_state.get("db_path") or "").strip()
    if not path:
        return None
    fp = summary_cache.fingerprint(path)
    if fp is None or Path(path).is_dir():
        return None
    try:
        return Study(path=path, fp=fp, sigs=summary_cache.signatures(path, fp))
    except sqlite3.DatabaseError as exc:  # not SQLite, or not readable
        st.error(f"{md(path)} is not a study database ({md(exc)}).", icon=":material/error:")
        stop()


def require_study() -> Study:
    """The open study, or an empty state that says what to run, and the page stops."""
    study = open_study()
    if study is None:
        path = str(st.session_state.get("db_path") or "")
        st.info(
            "No study database at this path yet. Create one, then reload:\n\n"
            f"- the demo study: `annotator demo --db {path or 'annotator.db'}`\n"
            f"- your own: `annotator init --db {path or 'annotator.db'}` then "
            "`annotator ingest FILE...`\n\n"
            "or type another path in the sidebar (the default comes from `ANNOTATOR_DB`).",
            icon=":material/database:",
        )
        stop()
    if n_conversations(study) == 0:
        st.info(
            "This study has no conversations yet: run `annotator ingest FILE...` "
            "(or `annotator demo` for the bundled demo set).",
            icon=":material/inbox:",
        )
        stop()
    return study


def selected_prompt(study: Study) -> str | None:
    ids = study.prompt_ids
    chosen = st.session_state.get("prompt")
    return chosen if chosen in ids else (ids[-1] if ids else None)


def n_boot() -> int:
    return int(st.session_state.get("n_boot", DEFAULT_BOOT))


# --- results computed in the background ----------------------------------------------------------


def _wait() -> float:
    return float(st.session_state.get("wait_seconds", WAIT_SECONDS))


def _show_status(result: summary_cache.Result, what: str) -> None:
    if result.error:
        st.error(f"Could not compute {what}: {md(result.error)}", icon=":material/error:")
    elif result.pending:
        st.session_state["_pending"] = True
        since = f" (started {time.time() - result.started:.0f} s ago)" if result.started else ""
        if result.stale:
            st.caption(f":material/sync: Updating {what} for the latest changes{since}: "
                       "showing the previous results until then.")
        else:
            st.info(f"Computing {what}{since}. This page refreshes when it is ready; results "
                    "are kept until the study changes. For a large study, `annotator summarize` "
                    "computes them ahead (`extract`, `pull` and `adjudicate` do it when they "
                    "finish).", icon=":material/hourglass_top:")


def get_bundle(study: Study, summary: precompute.Summary) -> Bundle | None:
    """The summary for the study's current data; computed in the background if missing (the
    commands that change a study store it ahead: `precompute`)."""
    result = summary_cache.get(
        study.path, summary.name, summary.params, summary.dep_signatures(study.sigs),
        lambda: summary.compute(study.path, study.sigs), _wait(),
    )
    _show_status(result, summary.what)
    return result.bundle


def annotators_result(study: Study) -> Bundle | None:
    return get_bundle(study, precompute.annotators(n_boot()))


def prompt_result(study: Study, prompt_id: str) -> Bundle | None:
    return get_bundle(study, precompute.prompt_scores(prompt_id, n_boot()))


def conversations_result(study: Study) -> Bundle | None:
    return get_bundle(study, precompute.conversations())


def frequencies_result(study: Study, table: str) -> Bundle | None:
    return get_bundle(study, precompute.frequencies(table))


def findings_result(study: Study, table: str) -> findings.Findings | None:
    """The study's report from one source's table (`findings`), computed like the summaries."""
    bundle = get_bundle(study, precompute.findings(table))
    if bundle is None:
        return None
    return summary_cache.memo(("findings", study.path, table, study.sig(table),
                               bundle.meta.get("_saved_at")),
                              lambda: findings.Findings.model_validate(bundle.meta["findings"]))


def flagged_task_links(study: Study, conversation_ids: list[str]) -> dict[str, list[str]]:
    """Label Studio links of the flagged conversations' tasks (a few rows of `tasks`)."""
    def read() -> dict[str, list[str]]:
        with summary_cache.study_db(study.path) as database:
            return findings.task_links(database, conversation_ids, Path(study.path))

    return summary_cache.memo(("flagged-links", study.path, study.sig("tasks"),
                               tuple(conversation_ids)), read)


def review_progress(study: Study) -> progress.ReviewProgress:
    """Each reviewer's progress and the flagged and skipped annotations (`measure.progress`),
    recomputed when annotations, tasks or the last pull change."""
    with summary_cache.study_db(study.path) as database:
        pulled = progress.last_pulled(database)

        def read() -> progress.ReviewProgress:
            return progress.review_progress(database)

        return summary_cache.memo(("review-progress", study.path, study.sig("annotations"),
                                   study.sig("tasks"), pulled), read)


@st.fragment(run_every=1.0)
def _poll() -> None:
    if summary_cache.pending_jobs() == 0:
        st.rerun(scope="app")


def finish_run() -> None:
    """After the page: if something is still computing, refresh when it is done."""
    if st.session_state.pop("_pending", False):
        _poll()


def stop() -> NoReturn:
    """End the page here. Use it instead of `st.stop()`: after `st.stop()` no Streamlit call
    runs, so the refresh of a page waiting for a result has to be set up first."""
    finish_run()
    st.stop()
    raise AssertionError("st.stop() returned")  # for type checkers: st.stop never returns


# --- sidebar ------------------------------------------------------------------------------------


SIDEBAR_KEYS = ("db_path", "prompt", "n_boot")


def signed_in() -> bool:
    """True when the app may show the study: no password is set (served on loopback), or this
    session gave it. Otherwise it draws the password form, and nothing of the study."""
    expected = config.app_password()
    if expected is None or st.session_state.get("_signed_in"):
        return True
    st.title("annotator")
    with st.form("sign-in"):
        given = st.text_input("Password", type="password",
                              help="The app's password: `annotator app --host` printed it.")
        submitted = st.form_submit_button("Open the study")
    if submitted:
        if hmac.compare_digest(given.encode(), expected.encode()):
            st.session_state["_signed_in"] = True
            st.rerun()
        st.error("That is not the app's password.")
    return False


def sidebar() -> None:
    st.session_state.pop("_pending", None)
    st.session_state["_run"] = st.session_state.get("_run", 0) + 1  # see `paginated`
    # Streamlit forgets a widget's value when a run ends in `st.switch_page` (a click on a
    # conversation id, `paginated`) unless the key is written by the script itself: the study,
    # prompt version and resamples chosen stay chosen on the page that opens.
    for key in SIDEBAR_KEYS:
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]
    if "db_path" not in st.session_state:
        st.session_state["db_path"] = str(config.settings().db_path)
    if "n_boot" not in st.session_state:
        st.session_state["n_boot"] = DEFAULT_BOOT
    with st.sidebar:
        st.text_input(
            "Study database",
            key="db_path",
            help="Path of the study's SQLite file; the default comes from ANNOTATOR_DB.",
        )
        study = open_study()
        if study is not None and study.prompt_ids:
            ids = study.prompt_ids
            if st.session_state.get("prompt") not in ids:
                st.session_state["prompt"] = ids[-1]
            st.selectbox(
                "Prompt version",
                ids,
                key="prompt",
                format_func=lambda p: prompt_label(study, p),
                help="The extraction prompt the pages show; the newest is chosen first.",
            )
        with st.expander("Settings"):
            st.number_input(
                "Bootstrap resamples", min_value=0, max_value=2000, step=50, key="n_boot",
                help="For the 95% intervals (0: no intervals). Results are kept per value.",
            )


# --- tables and charts -------------------------------------------------------------------------


# by absolute path: the app runs the same from the packaged script or the checkout's top-level
# streamlit_app.py, and Streamlit reads a relative page path from the script it started on
READ_PAGE = Path(__file__).resolve().parent / "disagreements.py"


def _clicked(table_key: str, key: str, column: str, ids: list[str]) -> None:
    # A click selects one cell: one in `column` opens that conversation, on the next run (a
    # callback cannot change page).
    for row, col in st.session_state[table_key].selection.cells:
        if col == column and 0 <= row < len(ids):
            st.session_state[f"{key}-open"] = ids[row]


def paginated(
    frame: pd.DataFrame, key: str, page_size: int = PAGE_SIZE, rows: Any = None,
    opens: str | None = None, **dataframe_args: Any,
) -> pd.DataFrame:
    """A table shown one page at a time (a wide or long table never loads whole in the browser).

    `rows`, if given, are the positions in `frame` to show (a filter's result): only the page's
    rows are copied. With `opens`, the name of a column of conversation ids, a click on an id
    reads that conversation on the Disagreements page. Returns the rows shown.

    Not a LinkColumn: Streamlit's grid follows a link only if the pointer moved over it before
    the click (it measures the link's text while drawing the hover), so a click after scrolling
    the page under a still pointer, or a tap, only selected the cell. And a grid that a rerun
    redrew with the same key (after choosing a prompt version, say) loses the first click
    after it, link or selection: measured in Chromium, the second click opened the link. So
    the table is a new element on every run (its key names the run) and a click on an id is
    a selection the page follows, in the same session, on the first click.
    """
    target = st.session_state.pop(f"{key}-open", None)
    if target is not None:
        st.switch_page(READ_PAGE, query_params={"c": target})
    total = len(frame) if rows is None else len(rows)
    pages = max(1, -(-total // page_size))
    if st.session_state.get(f"{key}-page", 1) > pages:  # the filters shrank the table
        st.session_state[f"{key}-page"] = 1
    page = st.pagination(pages, key=f"{key}-page", max_visible_pages=7) if pages > 1 else 1
    window = slice((page - 1) * page_size, page * page_size)
    shown = displayable(frame.iloc[window] if rows is None else frame.iloc[rows[window]])
    # a new element on every run: see the docstring (a LinkColumn in it gains from this too)
    table_key = f"{key}-table-{st.session_state.get('_run', 0)}"
    if opens is None:
        st.dataframe(shown, hide_index=True, key=table_key, **dataframe_args)
    else:
        config = {opens: st.column_config.TextColumn(
            help="Click an id to read the conversation"), **dataframe_args.pop(
            "column_config", {})}
        st.dataframe(
            shown, hide_index=True, key=table_key, column_config=config,
            on_select=functools.partial(_clicked, table_key, key, opens,
                                        [str(x) for x in shown[opens]]),
            selection_mode="single-cell", **dataframe_args,
        )  # fmt: skip
    first = (page - 1) * page_size + 1 if total else 0
    st.caption(f"Rows {first:,}–{(page - 1) * page_size + len(shown):,} of {total:,}")
    return shown


def displayable(frame: pd.DataFrame) -> pd.DataFrame:
    """Arrow list columns (value names) as plain lists, for the rows about to be shown."""
    out = frame.copy()
    for col in out.columns:
        dtype = out[col].dtype
        if isinstance(dtype, pd.ArrowDtype) and pa.types.is_list(dtype.pyarrow_dtype):
            out[col] = pd.Series(out[col].tolist(), index=out.index, dtype=object)
    return out


def interval(low: Any, high: Any) -> str:
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return ""
    return f"[{low:.3f}, {high:.3f}]"


def stat_table(frame: pd.DataFrame, name_col: str, names: dict[str, str] | None = None) -> (
    pd.DataFrame
):
    """value / 95% interval / n / note columns from agreement rows, for display."""
    out = pd.DataFrame({
        name_col: frame[name_col].map(lambda m: (names or {}).get(m, m)),
        "value": frame["value"].astype(float).round(4),
        "95% interval": [interval(lo, hi) for lo, hi in zip(frame["low"], frame["high"],
                                                             strict=True)],
        "n": frame["n_units"].astype("Int64"),
        "note": frame["note"].fillna(""),
    })
    return out.reset_index(drop=True)


# An x-axis label longer than this is shown on two lines, split at the space nearest its middle
# (Vega's expressions cannot loop, hence one split): value and cluster names run to 40
# characters and, at a fixed angle, would run into their neighbours.
WRAP_AT = 16
_MIDDLE = "floor(length(datum.label) / 2)"
_AFTER = f"indexof(substring(datum.label, {_MIDDLE}), ' ')"
_SPLIT = (f"({_AFTER} >= 0 ? {_MIDDLE} + {_AFTER} : lastindexof(datum.label, ' '))")
WRAP_LABEL = (
    f"length(datum.label) > {WRAP_AT} && indexof(datum.label, ' ') > 0 ? "
    f"[substring(datum.label, 0, {_SPLIT}), substring(datum.label, {_SPLIT} + 1)] : datum.label"
)


def chart(spec: alt.TopLevelMixin, key: str) -> None:
    """An Altair chart across the page, with every axis label shown whole: no length limit
    (Vega cuts labels at 180 px, Streamlit's theme sooner, with an ellipsis) and long x labels
    on two lines."""
    spec = (spec.configure_axis(labelLimit=0).configure_axisX(labelExpr=WRAP_LABEL)
            .configure_legend(labelLimit=0))
    st.altair_chart(spec, key=key, width="stretch")


def share(x: Any) -> str:
    """A share (0 to 1) as a percent with one decimal: exactly 0 is "0%", a share too small
    to show is "<0.1%" (not a misleading 0.0%), no figure is "unavailable"."""
    if x is None or pd.isna(x):
        return "unavailable"
    pct = 100 * float(x)
    if pct == 0:
        return "0%"
    if abs(pct) < 0.05:
        return "<0.1%" if pct > 0 else ">-0.1%"
    return f"{pct:.1f}%"


# --- one conversation ---------------------------------------------------------------------------


def conversation_detail(study: Study, conversation_id: str) -> dict[str, Any] | None:
    def read() -> dict[str, Any] | None:
        with summary_cache.study_db(study.path) as database:
            return queries.conversation_detail(database, conversation_id)

    return summary_cache.memo(("detail", study.path, study.fp, conversation_id), read)


def labels_row(source: str, labels: dict[str, Any] | None) -> dict[str, Any]:
    labels = labels or {}

    def names(values: Any) -> str:
        return ", ".join(v["name"] if isinstance(v, dict) else str(v) for v in values or [])

    subjective = labels.get("subjective")
    return {
        "source": source,
        "response type": labels.get("response_type") or "",
        "AI values": names(labels.get("ai_values")),
        "human values": names(labels.get("human_values")),
        "subjective": "" if subjective is None else ("yes" if subjective else "no"),
    }


def annotation_name(a: dict[str, Any]) -> str:
    """"annotator ada", or "annotator ada, edited by bob" when someone else changed it last:
    its labels are then not ada's (no vote, agreement or anchoring counts them)."""
    edited = f", edited by {a['edited_by']}" if a.get("edited_by") else ""
    return f"annotator {a['annotator']}{edited}"


def show_conversation(study: Study, conversation_id: str, prompt: str | None) -> dict | None:
    """The dialogue, literally, with the chosen prompt's evidence quotes highlighted, and every
    source's labels side by side. Returns the conversation's detail."""
    detail = conversation_detail(study, conversation_id)
    if detail is None:
        st.warning("This conversation is not in the study.")
        return None
    extraction = next((e for e in detail["extractions"] if e["prompt_id"] == prompt), None)
    st.markdown(f"**Conversation** `{conversation_id}` · source {md(detail['source'] or '-')}")
    urls = [url for task in detail["tasks"] if (url := task_url(Path(study.path), task))]
    for n, url in enumerate(urls, 1):
        of = f" ({n} of {len(urls)})" if len(urls) > 1 else ""
        label = "Open the task in Label Studio" + of
        st.link_button(label, url, icon=":material/open_in_new:")
    if not detail["tasks"]:
        st.caption("Not pushed to Label Studio yet (`annotator push`).")
    elif not urls:
        st.caption("Pushed to Label Studio; start the server (`annotator labelstudio start`) or "
                   "set LABEL_STUDIO_URL for a link.")

    rows = []
    if detail["gold"] is not None:
        gold = detail["gold"]
        rows.append(labels_row(f"gold ({gold['decided_by']})", gold))
    for e in detail["extractions"]:
        if e["status"] == "ok":
            rows.append(labels_row(f"model {e['prompt_id']}", e))
    for a in detail["annotations"]:
        rows.append(labels_row(annotation_name(a), a))
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, key=f"labels-{conversation_id}")

    quotes: list[tuple[str, str]] = []
    if extraction is not None:
        for fld in ("ai_values", "human_values"):
            for v in extraction[fld]:
                if v.get("evidence"):
                    quotes.append((str(v.get("name", "")), str(v["evidence"])))
    body, missing = dialogue_html(detail["turns"], quotes)
    st.html(body)
    if extraction is None and prompt:
        st.caption(f"No extraction by {md(prompt)} for this conversation: nothing highlighted.")
    if missing:
        st.warning(f"{len(missing)} evidence quote(s) of {md(prompt)} do not occur in the "
                   "conversation:", icon=":material/search_off:")
        st.dataframe(pd.DataFrame(missing, columns=["value", "quote"]), hide_index=True,
                     key=f"missing-{conversation_id}")
    return detail


def search_conversations(study: Study, query: str) -> dict[str, ConversationHit]:
    """Every conversation of the study matching `query` (id prefix, task number, text), by id:
    one SQL query with a LIMIT, kept in memory until the study changes."""
    def read() -> dict[str, ConversationHit]:
        with summary_cache.study_db(study.path) as database:
            hits = conversation_search.search_conversations(database, query)
        return {h.conversation_id: h for h in hits}

    return summary_cache.memo(("search", study.path, study.fp, query), read)


def conversation_snippets(study: Study, ids: Sequence[str]) -> dict[str, ConversationHit]:
    """The snippet and task number of each conversation in `ids`, in that order."""
    def read() -> dict[str, ConversationHit]:
        with summary_cache.study_db(study.path) as database:
            found = conversation_search.conversation_snippets(database, ids)
        return {cid: found[cid] for cid in ids if cid in found}

    return summary_cache.memo(("snippets", study.path, study.fp, tuple(ids)), read)


def hit_label(conversation_id: str, hit: ConversationHit | None) -> str:
    """A picker's option: the id's first characters, the task number and a snippet. Options
    are shown as text, never as Markdown; the snippet is one line of the dialogue."""
    if hit is None:
        return conversation_id
    parts = [conversation_id[:12]]
    if hit.task_id is not None:
        parts.append(f"task {hit.task_id}")
    if hit.snippet:
        parts.append(hit.snippet)
    return " · ".join(parts)


def prompt_caption(study: Study, prompt: str | None) -> None:
    """Which prompt version's labels the page shows (changed in the sidebar)."""
    if prompt:
        st.caption(f"Model labels: prompt version {md(prompt_label(study, prompt))}")
