"""The dataset card (`README.md`) of an `hf` export: a Hub YAML header, then what the data holds.

The header gives the Hub what it indexes (license, size category, task tags) and a `configs`
entry naming the data files, so `datasets.load_dataset(FOLDER)` needs no other argument. The body
says what a reader must know before using the data: counts, agreement with 95% intervals, the
prompt versions, the taxonomy's source and license, and what scrubbing did and did not remove.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import sqlite_utils
import yaml

from annotator.datasets.records import ExportFilter, ExportReport
from annotator.datasets.writers import HF_DATA_FILE, SCHEMAS, ExportWhat
from annotator.db import loads
from annotator.ingest.privacy import PLACEHOLDERS
from annotator.measure.agreement import AgreementReport, AgreementRow, MetricKey

if TYPE_CHECKING:  # the frames module is imported when the figures are computed
    from annotator.measure.frames import StoredFigures

# The Hub's size categories, upper bounds first.
_SIZES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
          (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")]
_WHAT = {
    ExportWhat.validated: "adjudicated gold labels with each annotator's labels",
    ExportWhat.gold: "adjudicated gold labels (the annotators' own labels left out)",
    ExportWhat.proposals: "labels proposed by a model, one row per conversation, prompt "
                          "version and model, with evidence quotes, status, tokens and cost",
}
# The figures worth a reader's time, in the order shown: whose (the annotators, or a model
# against gold) and what.
_FIGURES: list[tuple[str, MetricKey]] = [
    (who, MetricKey(metric=metric, field=field, level=level))
    for who, metric, field, level in (
        ("annotators", "krippendorff_alpha_nominal", "response_type", None),
        ("annotators", "krippendorff_alpha_ordinal", "response_type", None),
        ("annotators", "fleiss_kappa", "response_type", None),
        ("annotators", "gwet_ac1", "response_type", None),
        ("annotators", "percent_agreement", "response_type", None),
        ("annotators", "krippendorff_alpha_masi", "ai_values", 0),
        ("annotators", "krippendorff_alpha_masi", "ai_values", 3),
        ("annotators", "krippendorff_alpha_masi", "human_values", 0),
        ("vs gold", "accuracy", "response_type", None),
        ("vs gold", "cohen_kappa", "response_type", None),
        ("vs gold", "micro_f1", "ai_values", 0),
        ("vs gold", "micro_f1", "ai_values", 3),
    )
]
TAXONOMY_CREDIT = (
    'The value taxonomy is Anthropic\'s, released with Huang et al. (2025), "Values in the Wild: '
    'Discovering and Analyzing Values in Real-World Language Model Interactions", dataset '
    "`Anthropic/values-in-the-wild` (revision ab3f850), under the Creative Commons Attribution "
    "4.0 license (CC BY 4.0): credit Anthropic, the paper and the dataset wherever the values, "
    "their clusters or categories are shown or shipped."
)


def size_category(n: int) -> str:
    return next((name for bound, name in _SIZES if n < bound), "n>100M")


def card_header(report: ExportReport, license: str, title: str) -> dict[str, Any]:
    by_model = report.what is ExportWhat.proposals
    return {
        "license": license,
        "pretty_name": title,
        "size_categories": [size_category(report.exported)],
        "task_categories": ["text-classification"],
        "task_ids": ["multi-class-classification", "multi-label-classification"],
        "annotations_creators": ["machine-generated" if by_model else "expert-generated"],
        "tags": ["values", "ai-values", "values-in-the-wild",
                 "model-proposals" if by_model else "human-annotated"],
        "configs": [{"config_name": "default",
                     "data_files": [{"split": "train", "path": "data/train-*"}]}],
    }


def _counts_table(title: str, counts: dict[str, int]) -> list[str]:
    if not counts:
        return []
    lines = [f"| {title} | count |", "|---|---:|"]
    lines += [f"| {key} | {n:,} |" for key, n in sorted(counts.items(), key=lambda kv: -kv[1])]
    return [*lines, ""]


def _counts(report: ExportReport) -> list[str]:
    stats = report.stats
    lines = ["## Counts", "",
             f"- records: {report.exported:,}; conversations: {stats.conversations:,}",
             f"- filtered out: {report.filtered_out:,}; left out (invalid, or annotated but not "
             f"adjudicated): {len(report.left_out):,}"]
    if report.what is not ExportWhat.proposals:
        lines.append(f"- gold decided by a person: {stats.decided_by_person:,}; by majority: "
                     f"{report.exported - stats.decided_by_person:,}")
    lines += [f"- AI values outside the taxonomy (free values): {stats.free_values:,}", ""]
    for title, counts in (("source", stats.sources), ("response type", stats.response_types),
                          ("task", stats.tasks),
                          ("AI values by top category", stats.categories),
                          ("status", stats.statuses)):
        lines += _counts_table(title, counts)
    return lines


def _figure(row: AgreementRow) -> str:
    if row.value is None or math.isnan(row.value):
        return f"| {_label(row)} | n/a | {row.note or ''} | {row.n_units:,} |"
    interval = ("n/a" if row.low is None or row.high is None
                else f"{row.low:.3f} to {row.high:.3f}")
    return f"| {_label(row)} | {row.value:.3f} | {interval} | {row.n_units:,} |"


def _label(row: AgreementRow) -> str:
    level = "" if row.level is None else f", level {row.level}"
    return f"{row.scope}: {row.metric} on {row.field}{level}"


# The card's agreement figures: its levels (the value, its top category) and resamples, and
# only the figures it shows (`_FIGURES`): the MASI distance alone, no pair of annotators, no
# model against one annotator (a third of the work; each figure is the same either way).
CARD_AGREEMENT = {"levels": (0, 3), "n_boot": 200, "top_k": 0,
                  "figures": {"distances": ("masi",), "pairwise": False, "per_annotator": False}}


class StudySections(NamedTuple):
    """The card's sections about the whole study, not the exported records: its findings
    and its agreement figures, as Markdown lines."""

    findings: list[str]
    agreement: list[str]


def study_sections(db: sqlite_utils.Database, stored: StoredFigures | None = None
                   ) -> StudySections:
    """The card's `StudySections`. The agreement figures in this one process: `export`'s
    worker (`halves.in_worker`) is daemonic, so it may not start processes of its own, and
    the records take the other core. The annotators' own figures and each version's against
    gold are read where `stored` finds them for the current labels (the app's summaries, kept
    by `annotator summarize`): the same figures without computing them again, most of the
    card's time and its memory peak."""
    from annotator.measure.frames import StoredFigures, study_agreement

    findings = _findings(db)  # first: the agreement figures' peak is the process's peak
    stored = stored or StoredFigures()
    report = (study_agreement(db, **CARD_AGREEMENT, parallel_min_annotations=2**62,
                              stored_inter_annotator=stored.inter_annotator,
                              stored_gold_scores=stored.gold_scores)
              if db["annotations"].count else None)
    return StudySections(findings, _agreement(report))


def study_sections_of_file(path: str, stored: StoredFigures | None = None) -> StudySections:
    """`study_sections` from the study file: what `export` computes in a worker process while
    it writes the records."""
    from annotator.db import worker_study

    with worker_study(path) as db:
        return study_sections(db, stored)


def _agreement(report: AgreementReport | None) -> list[str]:
    lines = ["## Agreement", ""]
    if report is None:
        return [*lines, "The study has no annotations: no agreement figures.", ""]
    wanted = {figure: i for i, figure in enumerate(_FIGURES)}
    rows = sorted(
        (r for r in report.rows if (_whose(r), r.key) in wanted),
        key=lambda r: (wanted[(_whose(r), r.key)], r.scope),
    )
    lines += [
        "Over the whole study's annotations (not only the exported records), with 95% bootstrap "
        f"intervals over conversations ({report.settings.get('n_boot')} resamples). Level 0 is "
        "the value itself, level 3 its top category. Alpha of .800 or more is reliable, .667 to "
        ".800 allows tentative conclusions; below .667 do not rely on the labels.", "",
        "| figure | value | 95% interval | conversations |", "|---|---:|---|---:|",
        *(_figure(r) for r in rows), "",
    ]
    return lines


def _findings(db: sqlite_utils.Database) -> list[str]:
    """The study's headline figures, as `annotator report` and the app's Overview print them
    (`Findings.headline`): each share with its named denominator and Wilson interval."""
    from annotator.errors import AnnotatorError
    from annotator.measure.findings import findings_from_labels, source_labels

    lines = ["## Findings", ""]
    try:
        frame, left_out, reason, about = source_labels(db)
    except AnnotatorError as exc:
        return [*lines, f"No figures: {exc}", ""]
    found = findings_from_labels(frame, about, left_out=left_out, left_out_reason=reason)
    lines += [
        f"Over the whole study's labels from {_cell(about.label)} (what `annotator report` "
        "reads by default; the app's Overview shows the same figures): each share with its 95% "
        "Wilson interval and its denominator, beside the published study's figure "
        "(Huang et al. 2025).", "",
        "| figure | share [95% interval] (k of n) | published |", "|---|---|---|",
        *(f"| {h.figure} | {_cell(h.text)} | {h.published} |" for h in found.headline()), "",
    ]
    return lines


def _cell(text: str) -> str:
    """Text in a Markdown table cell: a bar would end the cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _whose(row: AgreementRow) -> str:
    """Whose figure: "vs gold" for any model against gold, else the scope ("annotators", ...)."""
    return "vs gold" if row.reference == "gold" else row.scope


def _prompts(db: sqlite_utils.Database, report: ExportReport) -> list[str]:
    rows = list(db.query(
        "select e.prompt_id, p.name, p.version, e.model, count(*) as n, "
        "sum(e.status = 'ok') as ok from extractions e left join prompts p on p.id = e.prompt_id "
        "group by e.prompt_id, e.model order by p.name, p.version, e.model"
    ))
    if report.what is ExportWhat.proposals:
        rows = [r for r in rows if r["prompt_id"] in set(report.stats.prompt_ids)]
    lines = ["## Prompt versions", ""]
    if not rows:
        return [*lines, "No model proposals in this study.", ""]
    lines += ["A prompt version's id is a hash of its text: the same id, the same prompt.", "",
              "| prompt id | name/version | model | proposals | ok |", "|---|---|---|---:|---:|"]
    lines += [f"| `{r['prompt_id']}` | {r['name']}/{r['version']} | {r['model']} | {r['n']:,} | "
              f"{r['ok']:,} |" for r in rows]
    return [*lines, ""]


def _scrubbed_counts(db: sqlite_utils.Database, ids: list[str]) -> tuple[int, int]:
    scrubbed = total = 0
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        for flag, n in db.execute(
            f"select scrubbed, count(*) from conversations where id in "
            f"({','.join('?' * len(chunk))}) group by scrubbed", chunk,
        ):
            total += n
            scrubbed += n if flag else 0
    return scrubbed, total


def _scrubbing(db: sqlite_utils.Database, report: ExportReport) -> list[str]:
    scrubbed, total = _scrubbed_counts(db, sorted(report.stats.conversation_ids()))
    placeholders = ", ".join(f"`{p}`" for p in PLACEHOLDERS.values())
    lines = [
        "## Personal data", "",
        f"{scrubbed:,} of the {total:,} conversations were scrubbed when they entered the "
        "study" + ("." if scrubbed == total else
                   "; the others were ingested with scrubbing turned off and hold their text "
                   "as given."), "",
        f"Scrubbing replaced, with typed placeholders ({placeholders}): email addresses; phone "
        "numbers that Google's libphonenumber validates (numbers without a country code read as "
        "US numbers); URLs; IPv4 and IPv6 addresses; payment card numbers passing the Luhn "
        "check; US social security numbers; IBANs passing the mod-97 check.", "",
        "It did **not** remove: names of people, places or organisations; street addresses; "
        "dates, including birth dates; ages; identity numbers of other kinds (passports, "
        "national ids other than US SSNs, licence plates, account numbers other than cards and "
        "IBANs); phone numbers libphonenumber rejects; personal details told in words. Read "
        "the text before publishing it.", "",
    ]
    replaced = _replaced(db)
    if replaced:
        lines += [f"The study's ingest runs replaced: {replaced}.", ""]
    if report.what is ExportWhat.validated:
        lines += ["Annotators are named as they signed in to review (an email address, if "
                  "that is what they used).", ""]
    if report.what is ExportWhat.proposals:
        lines += ["Evidence quotes and errors come from the model and may repeat text of "
                  "the conversation.", ""]
    return lines


def _replaced(db: sqlite_utils.Database) -> str:
    """What scrubbing replaced over the study's ingest runs, e.g. "EMAIL 3, PHONE 1"."""
    totals: dict[str, int] = {}
    if "ingest_runs" in db.table_names():
        for (counts,) in db.execute("select scrub_counts from ingest_runs"):
            for kind, n in loads(counts, {}).items():
                totals[kind] = totals.get(kind, 0) + n
    return ", ".join(f"{kind} {n:,}" for kind, n in sorted(totals.items()) if n)


def _provenance(report: ExportReport) -> list[str]:
    made = report.provenance
    if made is None:
        return []
    prompts = ", ".join(f"`{p}`" for p in made.prompt_ids) or "none"
    return ["## Provenance", "",
            "| | |", "|---|---|",
            f"| tool | {made.tool} {made.tool_version} |",
            f"| study fingerprint | `{made.study_fingerprint or 'none (no key yet)'}` |",
            f"| label source | {made.label_source or '-'} |",
            f"| prompt ids | {prompts} |",
            f"| exported at | {made.generated_at} |", "",
            "Each record's `external_id` is the conversation's id in the file it was ingested "
            "from, to join the labels back to the source.", ""]


def _columns(what: ExportWhat) -> list[str]:
    lines = ["## Columns", "", "| column | type |", "|---|---|"]
    lines += [f"| `{f.name}` | `{f.type}` |" for f in SCHEMAS[what]]
    return [*lines, ""]


def _filters(filters: ExportFilter) -> str:
    chosen = {k: v for k, v in filters.model_dump(mode="json").items()
              if v not in ([], False, 0) and k != "include_annotations"}
    if not chosen:
        return "No filter: every record of the study."
    return "Filters: " + "; ".join(f"{k} = {v}" for k, v in chosen.items()) + "."


def card_text(
    db: sqlite_utils.Database, report: ExportReport, filters: ExportFilter, license: str,
    title: str, sections: StudySections | None = None,
    stored: StoredFigures | None = None,
) -> str:
    """The card's text; `sections`: the whole study's (`study_sections`), computed here when
    not given."""
    sections = sections or study_sections(db, stored)
    header = yaml.safe_dump(card_header(report, license, title), sort_keys=False,
                            allow_unicode=True)
    body = [
        f"# {title}", "",
        f"Conversations with {_WHAT[report.what]}: which values an AI assistant expresses, "
        "which values the user expresses, how the assistant responds to them (strong support, "
        "mild support, neutral, reframing, mild resistance, strong resistance, no values) and "
        "whether the conversation involves values at all (`subjective`). Made with `annotator "
        f"export --what {report.what} --format hf`. {_filters(filters)}", "",
        f"The data is `{HF_DATA_FILE}`; read it with `datasets.load_dataset(\"parquet\", "
        "data_dir=\"FOLDER/data\")`, `datasets.load_dataset(\"FOLDER\")` or "
        f"`pandas.read_parquet(\"FOLDER/{HF_DATA_FILE}\")`.", "",
        f"License of this data: `{license}`"
        + (" (not chosen when it was exported: the conversations' own terms apply)."
           if license == "unknown" else "."), "",
        *_provenance(report), *_counts(report), *sections.findings, *sections.agreement,
        *_prompts(db, report),
        "## Taxonomy", "", TAXONOMY_CREDIT, "", *_scrubbing(db, report), *_columns(report.what),
    ]
    return f"---\n{header}---\n\n" + "\n".join(body)


def write_card(
    db: sqlite_utils.Database, folder: Path, report: ExportReport, filters: ExportFilter,
    license: str, name: str, sections: StudySections | None = None,
    stored: StoredFigures | None = None,
) -> None:
    """Write `README.md` into `folder`; `name` is the export's (the folder's final name);
    `sections`: the whole study's (`study_sections`), computed here when not given."""
    title = f"{name} ({report.what})"
    (folder / "README.md").write_text(
        card_text(db, report, filters, license, title, sections, stored),
        encoding="utf-8")
