"""The annotations frame made from the one stored before it (`measure.frame_patch`): real
SQLite files, real Arrow files, real worker processes; no fakes.

After each kind of write the study's writers make (new labels, an edit that grows the history,
a deletion, a cancellation, an edit by someone else, a flag instead of labels, a row removed,
a row replaced under a new rowid, hostile names), the frame made from the stored one and the
changed rows reads back equal to the frame built whole, and it was indeed made so (not
rebuilt). A damaged or planted index, a change of most rows, and parts Arrow cannot join
fall back to building the frame whole, which is still equal.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pytest
import sqlite_utils
from test_frame_store import NAMES, _study

from annotator import config
from annotator.app import precompute, summary_cache
from annotator.db import LOG_PRUNED, open_db
from annotator.measure import (
    agreement,
    frame_patch,
    frame_store,
    frames,
    pair_counts,
    rating_counts,
    score_counts,
    shapes,
    summaries,
)


@pytest.fixture
def study(tmp_path: Path) -> Path:
    path = tmp_path / "study.db"
    _study(path)
    return path


def _recorded(monkeypatch, owner: object, name: str) -> list[bool]:
    """`owner.name` wrapped: each call's answer recorded, True when it was not None (the
    result was made from the stored one) and False when None (to be computed whole)."""
    made: list[bool] = []
    real = getattr(owner, name)

    def recording(*args, **kwargs):
        found = real(*args, **kwargs)
        made.append(found is not None)
        return found

    monkeypatch.setattr(owner, name, recording)
    return made


@pytest.fixture
def patches(monkeypatch) -> list[bool]:
    """Whether each frame asked for was made from the stored one (True) or built whole."""
    return _recorded(monkeypatch, frame_patch, "patched_frame")


def _frame_now(study: Path) -> pd.DataFrame:
    """The annotations frame as a command gets it (stored, else made and stored), read back."""
    db = open_db(study)
    try:
        got = frames.stored_frames(db, ["annotations"])["annotations"]
        signature = frame_store.table_signature(db, "annotations")
        pd.testing.assert_frame_equal(got, frames.annotations_frame(db))
        pd.testing.assert_frame_equal(frame_store.read_frame(study, "annotations", signature),
                                      frames.annotations_frame(db))
        return got
    finally:
        db.conn.close()


def _labels(i: int) -> str:
    return orjson.dumps({"ai_values": [NAMES[i % len(NAMES)], f"new value {i} \u202e"],
                         "human_values": [], "response_type": "strong resistance",
                         "subjective": bool(i % 2), "task": None if i % 3 else "coding"}).decode()


WRITES = {
    "new labels": ["insert into annotations (id, conversation_id, annotator, labels, lead_time, "
                   "cancelled, deleted, updated_at, history) select 'n' || id, conversation_id, "
                   "'newcomer \u2603', :labels, 1.5, 0, 0, 'later', '[]' from annotations "
                   "where rowid % 7 = 0"],
    "an edit grows the history": [
        "update annotations set labels = :labels, history = history || ' ', "
        "updated_at = 'later' where rowid % 11 = 3"],
    "one edit, between rows kept": [
        "update annotations set labels = :labels, history = history || ' ' where rowid = "
        "(select rowid from annotations where deleted = 0 and cancelled = 0 limit 1 offset 9)"],
    "deleted": ["update annotations set deleted = 1 where rowid % 13 = 1"],
    "cancelled, then restored": ["update annotations set cancelled = 1 where rowid % 5 = 2",
                                 "update annotations set cancelled = 0 where rowid % 10 = 2"],
    "edited by someone else": ["update annotations set edited_by = 'someone else' "
                               "where rowid % 9 = 4"],
    "a flag instead of labels": ["update annotations set flag = 'unclear', "
                                 "missing = '[\"ai_values\"]' where rowid % 8 = 5"],
    "rows removed": ["delete from annotations where rowid % 6 = 0"],
    "replaced under a new rowid": [
        "insert or replace into annotations (id, conversation_id, annotator, labels, "
        "lead_time, cancelled, deleted, updated_at, history) select id, conversation_id, "
        "annotator, :labels, lead_time, cancelled, deleted, 'later', history || ' ' "
        "from annotations where rowid % 10 = 9"],
}


def test_each_write_gives_the_frame_built_whole_made_from_the_stored_one(
        study: Path, patches: list[bool]) -> None:
    _frame_now(study)  # the first frame is built whole, its index kept
    assert patches == [False]
    assert frame_store.has_index(study, "annotations")
    for i, (what, statements) in enumerate(WRITES.items()):
        db = open_db(study)
        with db.conn:
            for sql in statements:
                db.execute(sql, {"labels": _labels(i)})
        db.conn.close()
        patches.clear()
        _frame_now(study)
        assert patches == [True], what
        _frame_now(study)  # now stored: read, neither made nor built
        assert patches == [True], what


def test_a_label_changed_to_one_of_the_same_length_is_in_the_next_frame(
        study: Path, patches: list[bool]) -> None:
    """Another program changes a label to one of the same length (its lengths and times, the
    rows' facts, stay the same) as another row is written: the frame made from the stored
    one holds both (the change log names every row written), as the frame built whole does.
    With the log pruned past the stored index (as another process may have), every row's
    facts are compared instead, and a change of facts is still seen."""
    _frame_now(study)
    for pruned in (False, True):
        db = open_db(study)
        (row,) = db.execute("select rowid from annotations where labels like '%neutral%' "
                            "and deleted = 0 and cancelled = 0 limit 1").fetchone()
        with db.conn:
            if not pruned:
                db.execute("update annotations set labels = replace(labels, 'neutral', "
                           "'neutrax') where rowid = ?", [row])  # the same length
            db.execute("update annotations set lead_time = ? where rowid = ?",
                        [99 + pruned, row + 1])
        if pruned:  # as another process may, past the index stored
            with db.conn:
                db.execute("delete from annotation_changes")
                db.execute("insert into table_changes (name, token) values (?, ?) on "
                           "conflict (name) do update set token = excluded.token",
                           [LOG_PRUNED, frame_patch.log_position(db) + 10**6])
        db.conn.close()
        patches.clear()
        got = _frame_now(study)  # equal to the frame built whole, or this fails
        assert patches == [True]
        assert "neutrax" in set(got["response_type"])
        assert 99 + pruned in set(got["lead_time"])


def test_the_log_is_pruned_of_what_the_stored_index_holds_and_only_then_written(
        study: Path) -> None:
    """`prune_log` drops the entries the newest stored index was read after, keeps the later
    ones (the next frame re-reads them), and leaves the file untouched when there is
    nothing to drop (the app's facts are keyed on the file)."""
    _frame_now(study)
    db = open_db(study)
    with db.conn:
        db.execute("update annotations set lead_time = 7 where rowid = 3")
    stored_at = int(frame_store.latest_index_metadata(study, "annotations")[b"annotator.logged"])
    assert frame_patch.log_position(db) > stored_at
    frame_patch.prune_log(db, str(study))
    left = [seq for (seq,) in db.execute("select seq from annotation_changes")]
    assert left and min(left) > stored_at
    untouched = summary_cache.fingerprint(study)
    frame_patch.prune_log(db, str(study))  # nothing more to drop
    assert summary_cache.fingerprint(study) == untouched
    db.conn.close()
    assert 7 in set(_frame_now(study)["lead_time"])  # the entry kept: re-read


def test_the_frame_is_built_whole_when_the_index_cannot_be_trusted(
        study: Path, patches: list[bool]) -> None:
    """A damaged index, one that does not match its frame, a link planted at its name, or a
    change of most of the table: the frame is built whole (and equal)."""
    _frame_now(study)
    frames_dir = frame_store.cache_root(study) / frame_store.FRAMES_DIR

    def index_file() -> Path:
        name = frame_store._INDEX_OF.format(table="annotations")
        return next(frames_dir.glob(f"{frame_store._digest(name)}-*.arrow"))

    def write(sql: str) -> None:
        db = open_db(study)
        with db.conn:
            db.execute(sql)
        db.conn.close()

    index_file().write_bytes(b"not an arrow file")
    write("update annotations set history = history || ' ' where rowid = 1")
    patches.clear()
    _frame_now(study)
    assert patches == [False]

    # an index of another frame: its rows do not count the stored frame's
    signature, index = frame_store.latest_index(study, "annotations")
    frame_store.store_index(study, "annotations", signature, index.slice(0, 5))
    write("update annotations set history = history || ' ' where rowid = 2")
    patches.clear()
    _frame_now(study)
    assert patches == [False]

    # a link planted at the index's name is not followed
    _frame_now(study)
    target = index_file()
    elsewhere = study.parent / "elsewhere.arrow"
    target.rename(elsewhere)
    os.symlink(elsewhere, target)
    write("update annotations set history = history || ' ' where rowid = 3")
    patches.clear()
    _frame_now(study)
    assert patches == [False]

    write("update annotations set history = history || ' '")  # every row: built whole
    patches.clear()
    _frame_now(study)
    assert patches == [False]


def test_parts_are_joined_into_the_kinds_a_frame_built_whole_has() -> None:
    """Unit, no study: parts of a frame typed by their own rows are joined into the column
    kinds the whole frame's rows give (booleans with a None beside them are objects, a column
    of None alone is objects, names stay names); whole numbers beside decimals are refused."""
    def frame(**columns) -> pd.DataFrame:
        return pd.DataFrame.from_records(list(zip(*columns.values(), strict=True)),
                                         columns=list(columns))

    parts = [frame(flag=[True, False], task=[None, None], names=[("a",), ()], n=[1.5, 2.0]),
             frame(flag=[None, True], task=["coding", None], names=[("b", "a"), ("c",)],
                   n=[None, 3.0])]
    whole = frame(**{c: [*parts[0][c].tolist(), *parts[1][c].tolist()] for c in parts[0]})
    joined = frame_store.joined_rows([frame_store.to_arrow(p) for p in parts])
    assert joined is not None
    pd.testing.assert_frame_equal(frame_store._from_arrow(joined),
                                  frame_store._from_arrow(frame_store.to_arrow(whole)))
    assert frame_store._from_arrow(joined)["flag"].dtype == object
    only_booleans = frame_store.joined_rows([frame_store.to_arrow(parts[0][["flag"]])] * 2)
    assert frame_store._from_arrow(only_booleans)["flag"].dtype == bool
    assert frame_store.joined_rows([frame_store.to_arrow(frame(n=[1, 2])),
                                    frame_store.to_arrow(frame(n=[1.5, 2.0]))]) is None


def test_summaries_in_workers_make_the_frame_from_the_stored_one(
        study: Path, monkeypatch) -> None:
    """`precompute` with two worker processes, as after `import-labels`: the annotations frame
    stored in two parts keeps its index; after new labels the command's process makes the
    next frame from it (beside one worker: `_after_new_labels`), keeps its index, and every
    summary reads the frame built whole."""
    after_labels: list[bool] = []
    real = precompute._after_new_labels
    monkeypatch.setattr(precompute, "_after_new_labels", lambda *args: (
        after_labels.append(real(*args)) or after_labels[-1]))
    precompute.precompute(study, n_boot=5, workers=2)
    assert after_labels == [False]  # the first frames built whole, in two workers
    db = open_db(study)
    first = frame_store.table_signature(db, "annotations")
    assert frame_store.latest_index(study, "annotations")[0] == first
    with db.conn:
        db.execute(WRITES["new labels"][0], {"labels": _labels(1)})
    now = frame_store.table_signature(db, "annotations")
    report = precompute.precompute(study, n_boot=5, workers=2)
    assert "inter-annotator agreement" in report.computed
    assert after_labels == [False, True]
    assert frame_store.latest_index(study, "annotations")[0] == now
    pd.testing.assert_frame_equal(frame_store.read_frame(study, "annotations", now),
                                  frames.annotations_frame(db))


def _after_each(study: Path, writes: list[list[str]], recorded: list) -> Iterator[
        tuple[list[str], sqlite_utils.Database]]:
    """The study's summaries computed (as `import-labels` ends), then each write applied and
    the summaries computed again, `recorded` cleared before; yields the write and the study."""
    precompute.precompute(study, n_boot=5, workers=1)
    for i, statements in enumerate(writes):
        db = open_db(study)
        with db.conn:
            for sql in statements:
                db.execute(sql, {"labels": _labels(i)})
        recorded.clear()
        precompute.precompute(study, n_boot=5, workers=1)
        try:
            yield statements, db
        finally:
            db.conn.close()


def _as_stored(bundle: summaries.Bundle, folder: Path) -> summaries.Bundle:
    """`bundle` stored and read back as the app's cache stores and reads a summary."""
    key = uuid.uuid4().hex
    summary_cache._save(folder, key, bundle)
    return summary_cache._read(folder / key)


def test_the_conversation_table_after_a_change_is_the_table_computed_whole(
        study: Path, tmp_path: Path, monkeypatch) -> None:
    """After each kind of write, the app's conversation table made from the one stored before
    it and the changed conversations' rows reads back as the table computed whole (stored and
    read back the same way), and it was made so: new labels, and new gold of a few
    conversations (other labels, decided by a person, gold gone, gold new); gold changed for
    a third of them, for every one, or gone from all, joins the new gold to the rows'
    columns made from the annotations, as stored (`conversations_regolded`)."""
    made = _recorded(monkeypatch, summaries, "conversations_patched")
    regolded = _recorded(monkeypatch, summaries, "conversations_regolded")
    gold_writes = {
        "other gold labels": ["update gold set response_type = 'reframing', "
                              "ai_values = '[\"care\", \"x\\u202e\"]', "
                              "decided_at = 'later' where rowid % 25 = 1"],
        "a person's decisions": ["update gold set decided_by = 'Ana ☃' where rowid % 30 = 2"],
        "gold gone": ["delete from gold where rowid % 40 = 3"],
        "gold new": ["insert or ignore into gold (conversation_id, ai_values, human_values, "
                     "response_type, subjective, decided_by, decided_at, from_annotations, "
                     "history) select distinct conversation_id, '[]', '[]', 'neutral', 1, "
                     "'Bo', 'now', '[]', '[]' from annotations"],
        "a third of gold": ["update gold set decided_at = 'z later' where rowid % 3 = 0",
                            # gold of a conversation no one annotated: a row of gold alone
                            "insert into gold (conversation_id, ai_values, human_values, "
                            "response_type, subjective, decided_by, decided_at, "
                            "from_annotations, history) values ('zz ‮ alone', '[]', "
                            "'[]', 'neutral', 1, 'Bo', 'now', '[]', '[]')"],
        "every gold label": ["update gold set ai_values = '[\"=1+1\", \"care\"]', "
                             "response_type = 'neutral', decided_by = 'majority'"],
        "all gold gone": ["delete from gold"],
    }
    many = [gold_writes[name] for name in ("a third of gold", "every gold label",
                                          "all gold gone")]
    writes = [*WRITES.values(), *gold_writes.values()]
    for statements, db in _after_each(study, writes, made):
        assert made == ([] if statements in many else [True]), statements
        assert regolded == ([True] if statements in many else []), statements
        regolded.clear()
        signatures = frame_store.table_signatures(db)
        stored = summary_cache.read_stored(study, "conversations", {}, {
            "annotations": signatures["annotations"], "gold": signatures["gold"]})
        want = _as_stored(summaries.conversations_bundle(
            frames.annotations_frame(db), frames.gold_frame(db)), tmp_path / "whole")
        pd.testing.assert_frame_equal(stored.frames["conversations"],
                                      want.frames["conversations"])
        assert {k: stored.meta[k] for k in ("n", "rt_split")} == {
            k: want.meta[k] for k in ("n", "rt_split")}


def test_the_conversation_table_says_what_each_conversations_annotators_gave(
        study: Path) -> None:
    """Unit (real frames of a real study): each annotated conversation's row of the table,
    made over groups at once, against its annotations read one conversation at a time."""
    db = open_db(study)
    with db.conn:  # two annotators of one conversation give the same set, listed otherwise
        first = db.execute("select conversation_id from annotations order by rowid limit 1"
                           ).fetchone()[0]
        db.execute("update annotations set labels = json_set(labels, '$.ai_values', "
                   "json('[\"b\", \"a\", \"a\"]')) where conversation_id = ?", [first])
    annotations = frames.annotations_frame(db)
    table = summaries.conversations_bundle(annotations, frames.gold_frame(db)).frames[
        "conversations"].set_index("conversation_id")
    checked = 0
    for cid, rows in annotations.sort_values(["conversation_id", "annotator"],
                                             kind="stable").groupby("conversation_id"):
        row = table.loc[cid]
        types = ["" if pd.isna(t) else t for t in rows["response_type"]]
        assert "nan" not in row["annotator_types"]
        sets = [frozenset(v) for v in rows["ai_values"]]
        labelled = [t for t in rows["response_type"] if not pd.isna(t)]
        top = max((labelled.count(t) for t in labelled), default=0)
        assert row["n_annotations"] == len(rows)
        assert tuple(row["annotator_types"]) == tuple(types)
        assert tuple(row["annotator_values"]) == tuple(dict.fromkeys(
            v for listed in rows["ai_values"] for v in listed))
        assert row["values_split"] == (len(set(sets)) > 1), cid
        assert row["rt_split"] == (len(labelled) >= 2 and top <= len(labelled) // 2), cid
        assert row["types_differ"] == (len(set(types)) > 1)
        checked += 1
    assert checked > 100 and not table.loc[first, "values_split"]
    assert table["values_split"].any() and not table["values_split"].all()


def test_gold_surely_changed_counts_changes_it_can_see_and_never_more_than_changed(
        study: Path) -> None:
    """Unit (real frames of a real study, no cache): the count read from the ids and times
    alone is the number of conversations whose gold is new, gone or timed otherwise, and
    never more than `gold_changed` finds comparing every column."""
    db = open_db(study)
    gold = frames.gold_frame(db)
    before = pa.Table.from_pandas(summaries.conversations_bundle(
        frames.annotations_frame(db), gold).frames["conversations"], preserve_index=False)
    relabelled = gold.copy()
    relabelled.loc[relabelled.index[:2], "ai_values"] = pd.Series([("=1+1",), ("x \\u202e",)],
                                                                  index=relabelled.index[:2])
    retimed = gold.copy()
    retimed.loc[retimed.index[:3], "decided_at"] = ["later", None, "\u202e"]
    new_row = gold.iloc[:1].assign(conversation_id="zz new", decided_at="now")
    moved = pd.concat([gold.iloc[2:], new_row], ignore_index=True)
    cases = {"unchanged": (gold, 0), "labels alone": (relabelled, 0), "retimed": (retimed, 3),
             "two gone, one new": (moved, 3), "all gone": (gold.iloc[:0], len(gold))}
    for name, (now, surely) in cases.items():
        counted = summaries.gold_surely_changed(before, now)
        assert counted == surely, name
        assert counted <= len(summaries.gold_changed(before, now)), name
    assert len(summaries.gold_changed(before, relabelled)) == 2


def test_the_gold_pages_queue_after_a_change_is_the_queue_looked_at_whole(
        study: Path, monkeypatch) -> None:
    """After each kind of write (and one that changes only what an annotation left missing),
    the Gold page's queue made from the one stored before it, the changed conversations
    looked at anew, is the queue `people_needed` gives for the whole study, in its order;
    after a person's decision it is looked at whole."""
    from annotator.datasets import gold

    asked: list[object] = []
    real = gold.people_needed

    def recording(db, min_annotations=2, conversations=None):
        asked.append(conversations)
        return real(db, min_annotations, conversations)

    monkeypatch.setattr(gold, "people_needed", recording)
    writes = [*WRITES.values(),
              ["update annotations set missing = '[\"subjective\"]' where rowid % 7 = 3"],
              ["update gold set decided_by = 'alice \u2603', decided_at = 'later' "
               "where rowid % 9 = 2"]]
    for statements, db in _after_each(study, writes, asked):
        person = "alice" in statements[0]
        assert len(asked) == 1 and (asked[0] is None) == person, statements
        signatures = frame_store.table_signatures(db)
        stored = summary_cache.read_stored(study, "people_needed", {}, {
            "annotations": signatures["annotations"], "gold:people": signatures["gold:people"]})
        want = [(p.conversation_id, p.reason) for p in real(db)]
        assert want, "the study leaves some conversations to a person"
        assert list(stored.frames["needed"].itertuples(index=False, name=None)) == want


def test_a_versions_scores_against_each_annotator_after_a_change_are_the_scores_computed_whole(
        study: Path, tmp_path: Path, monkeypatch) -> None:
    """After each kind of write, each version's scores against each annotator were made from
    the counts stored before it and the changed conversations' rows alone (no count of every
    extraction), and read back as the scores computed in one pass, pair by pair
    (`_reference_scores`, as the scores against gold are), every figure and note; their
    counts equal the counts made whole."""
    counted: list[int] = []  # the extraction rows each count was made of
    real = score_counts.score_counts

    def recording(extractions, references, maps):
        counted.append(len(extractions))
        return real(extractions, references, maps)

    monkeypatch.setattr(score_counts, "score_counts", recording)
    for statements, db in _after_each(study, list(WRITES.values()), counted):
        signatures = frame_store.table_signatures(db)
        annotations = frames.annotations_frame(db)
        assert len(counted) == 4, statements  # the rows before and now, for each version
        for prompt in ("p1", "p 2/../ü"):
            table = f"extractions:{prompt}"
            stored = summary_cache.read_stored(
                study, "prompt_annotators", {"prompt": prompt},
                {table: signatures[table], "annotations": signatures["annotations"]})
            extractions, _ = frames.without_few_shot(frames.table_frame(db, table), {})
            assert max(counted) < len(extractions), statements
            raters = {f"annotator {name}": rows
                      for name, rows in shapes.by_rater(annotations).items()}
            metrics, confusion = summaries._reference_scores(
                extractions, [(name, rows, 0) for name, rows in raters.items()],
                summaries.level_maps(), 0)
            want = _as_stored(summaries.Bundle(
                frames={"metrics": metrics, "confusion": confusion}), tmp_path / "whole")
            for name in ("metrics", "confusion"):
                assert len(want.frames[name]) > 0
                pd.testing.assert_frame_equal(stored.frames[name], want.frames[name])
            assert stored.meta["references"] == list(raters)
            whole = real(extractions, raters, summaries.level_maps())._replace(
                confusion=stored.frames["confusion"])
            kept = score_counts.ScoreCounts(*(stored.frames[n] for n in score_counts.FRAMES))
            for name, frame in whole.canonical().items():
                pd.testing.assert_frame_equal(kept.canonical()[name], frame, check_dtype=False)


def test_inter_annotator_figures_after_a_change_are_the_figures_computed_whole(
        study: Path, tmp_path: Path, monkeypatch) -> None:
    """After each kind of write, the inter-annotator summary of a study over the bootstrap
    budget, its counts made from the ones stored before the write and the changed
    conversations' rows before and now (`rating_counts`; alpha for sets from the pair counts
    stored), reads back as the summary computed whole, every figure and interval."""
    monkeypatch.setattr(agreement, "BOOT_BUDGET", 1.0)  # a small study as a large one is
    made = _recorded(monkeypatch, pair_counts, "counts_after_sets")
    monkeypatch.setattr(pair_counts, "MIN_RECORDS", 0)  # a small study: made, not counted
    for statements, db in _after_each(study, list(WRITES.values()), made):
        assert made and all(made), statements  # every field and level made from a change
        signature = frame_store.table_signature(db, "annotations")
        stored = summary_cache.read_stored(study, "annotators", {"n_boot": 5, "top_k": 20},
                                           {"annotations": signature})
        want = _as_stored(summaries.annotators_bundle(frames.annotations_frame(db), 5),
                          tmp_path / "whole")
        assert set(rating_counts.FRAMES) <= set(want.frames)
        for name, frame in want.frames.items():
            if name not in rating_counts.FRAMES:  # the counts' ids follow their history
                pd.testing.assert_frame_equal(stored.frames[name], frame)
        assert stored.meta["report"] == want.meta["report"]
        assert _canonical(stored) == _canonical(want)


def _canonical(bundle: summaries.Bundle) -> dict:
    """The rating counts a bundle keeps, by value name instead of id: equal whatever ids the
    counts made from a change gave names."""
    counts = rating_counts.from_tables(
        {name: pa.Table.from_pandas(bundle.frames[name], preserve_index=False)
         for name in rating_counts.FRAMES}, {})
    out: dict = {"types": counts.types.__dict__ | {
        "pairs": {k: v.tolist() for k, v in counts.types.pairs.items()}}}
    for key, c in counts.sets.items():
        names = np.array(c.names, dtype=object)
        used = np.flatnonzero(c.usage)
        out[key] = {
            "scalars": (c.units, c.ratings, c.pairable, c.n, c.empties),
            "usage": {names[i]: int(c.usage[i]) for i in used},
            "hits": {(names[i], m, h): int(c.hits[i, m, h]) for i, m, h in
                     zip(*np.nonzero(c.hits), strict=True)},
            "within": {k: int(c.within[k]) for k in zip(*np.nonzero(c.within), strict=True)},
            "base": {m: int(c.base[m]) for m in np.flatnonzero(c.base)},
            "sets": {tuple(sorted(names[row].tolist())): int(w) for vals, weights in
                     c.sets.values() for row, w in zip(vals, weights, strict=True)},
        }
    return out


def test_the_annotations_report_after_a_change_is_the_report_computed_whole(
        study: Path, monkeypatch) -> None:
    """After each kind of write, the study's report from the annotations, its counts made
    from the ones kept before the write (the changed conversations' counts before taken off,
    theirs now added), is the report computed whole, and so are the counts it keeps."""
    from annotator.measure import findings, report_counts

    made = _recorded(monkeypatch, report_counts.ReportCounts, "after")
    names = list(config.opposing_values())
    for statements, db in _after_each(study, list(WRITES.values()), made):
        assert made == [True], statements
        signature = frame_store.table_signature(db, "annotations")
        stored = summary_cache.read_stored(study, "findings",
                                           {"table": "annotations", "opposing": names},
                                           {"annotations": signature})
        annotations = frames.annotations_frame(db)
        want = findings.table_findings("annotations", annotations, names)
        assert stored.meta["findings"] == want.model_dump(mode="json")
        whole = findings.combined_annotations(annotations)
        assert whole.split or whole.incomplete, "the study leaves some conversations out"
        kept = report_counts.ReportCounts.from_table(
            pa.Table.from_pandas(stored.frames["report_counts"], preserve_index=False))
        pd.testing.assert_frame_equal(
            kept.canonical(), findings.annotations_counts(annotations, names).canonical())


def test_the_annotations_value_frequencies_after_a_change_are_the_ones_computed_whole(
        study: Path, tmp_path: Path, monkeypatch) -> None:
    """After each kind of write, the annotations' value frequencies, made from the counts
    stored before the write (the changed conversations' rows before taken off, theirs now
    added), read back as the frequencies computed whole, stored and read back the same way."""
    made = _recorded(monkeypatch, summaries.NameCounts, "after")
    for statements, db in _after_each(study, list(WRITES.values()), made):
        assert made == [True], statements
        signature = frame_store.table_signature(db, "annotations")
        stored = summary_cache.read_stored(study, "frequencies", {"table": "annotations"},
                                           {"annotations": signature})
        want = _as_stored(summaries.value_frequencies(frames.annotations_frame(db)),
                          tmp_path / "whole")
        def plain(meta: dict) -> dict:  # the cache's own notes left out
            return {k: v for k, v in meta.items() if not k.startswith("_")}
        assert plain(stored.meta) == plain(want.meta)
        for name in ("values", "response_types"):
            pd.testing.assert_frame_equal(stored.frames[name], want.frames[name])


def test_damaged_stored_counts_give_the_results_computed_whole(
        study: Path, tmp_path: Path) -> None:
    """A stored summary's pair counts, report counts or score counts that read as Arrow but
    are not what was stored (other columns), or score counts that are not those of the rows
    before (all zero), are not used: the summaries are computed whole, and equal."""
    from pyarrow import feather

    from annotator.measure import findings

    precompute.precompute(study, n_boot=5, workers=1)
    damaged = [file for name in ("pair_counts", "report_counts", "score_patterns")
               for file in frame_store.cache_root(study).rglob(f"{name}.arrow")]
    assert len(damaged) >= 4
    for file in damaged:
        feather.write_feather(pa.table({"not what was stored": [1, 2]}), file)
    for file in frame_store.cache_root(study).rglob("score_values.arrow"):
        counts = feather.read_table(file)  # columns as stored, every count zero
        feather.write_feather(counts.set_column(
            counts.schema.get_field_index("tp"), "tp", pa.array([0] * counts.num_rows)), file)
    db = open_db(study)
    with db.conn:
        db.execute(WRITES["new labels"][0], {"labels": _labels(0)})
    precompute.precompute(study, n_boot=5, workers=1)
    signature = frame_store.table_signature(db, "annotations")
    annotations = frames.annotations_frame(db)
    db.conn.close()
    stored = summary_cache.read_stored(study, "annotators", {"n_boot": 5, "top_k": 20},
                                       {"annotations": signature})
    want = _as_stored(summaries.annotators_bundle(annotations, 5), tmp_path / "whole")
    assert stored.meta["report"] == want.meta["report"]
    names = list(config.opposing_values())
    report = summary_cache.read_stored(study, "findings",
                                       {"table": "annotations", "opposing": names},
                                       {"annotations": signature})
    assert report.meta["findings"] == findings.table_findings(
        "annotations", annotations, names).model_dump(mode="json")
    db = open_db(study)
    signatures = frame_store.table_signatures(db)
    db.conn.close()
    for prompt in ("p1", "p 2/../ü"):
        table = f"extractions:{prompt}"
        scores = summary_cache.read_stored(
            study, "prompt_annotators", {"prompt": prompt},
            {table: signatures[table], "annotations": signature})
        extractions, _ = frames.without_few_shot(
            frame_store.read_frame(study, table, signatures[table]), {})
        metrics, _ = summaries._reference_scores(
            extractions, [(f"annotator {name}", rows, 0)
                          for name, rows in shapes.by_rater(annotations).items()],
            summaries.level_maps(), 0)
        pd.testing.assert_frame_equal(
            scores.frames["metrics"],
            _as_stored(summaries.Bundle(frames={"metrics": metrics}),
                       tmp_path / "scores").frames["metrics"])


def test_after_new_labels_no_summary_reads_the_annotations_frame_whole(
        study: Path, monkeypatch) -> None:
    """After new labels, with the frame made from the one before it and stored (as
    `precompute`'s worker stores it), every summary that reads the annotations is made from
    the change with the changed conversations' rows alone (and the inter-annotator one with
    the columns that are not labels): none reads the whole frame into Python objects (0.6 s
    a worker at 300,000 conversations). That the summaries so made equal the ones computed
    whole, the tests above check."""
    monkeypatch.setattr(agreement, "BOOT_BUDGET", 1.0)  # counts kept, as at paper scale
    precompute.precompute(study, n_boot=5, workers=1)
    db = open_db(study)
    with db.conn:
        db.execute(WRITES["new labels"][0], {"labels": _labels(0)})
    signatures = frame_store.table_signatures(db)
    db.conn.close()
    assert frames.store_patched_annotations(str(study), signatures["annotations"])
    summary_cache.clear_memory()
    whole: list[str] = []
    real = summary_cache.frame

    def recording(path, table, signature):
        whole.append(table)
        return real(path, table, signature)

    monkeypatch.setattr(summary_cache, "frame", recording)
    reading = [s for s in precompute.opening_summaries(["p1", "p 2/../ü"], 5)
               if "annotations" in s.deps and s.name not in precompute.AFTER_SCORES]
    assert {s.name for s in reading} == {"frequencies", "findings", "annotators",
                                         "conversations", "people_needed", "prompt_annotators"}
    for summary in reading:
        summary.compute(str(study), signatures)
    assert "annotations" not in whole
