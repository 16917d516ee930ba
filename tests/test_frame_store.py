"""The study's frames kept on disk (`measure.frame_store`): real SQLite files and real Arrow
files; no fakes.

- a stored frame reads back equal to the one built from the study (hostile names, tasks,
  missing and boolean cells), and a changed table is built afresh, its old file removed;
- a damaged file, a link planted at a frame's name and a folder nobody may write are not
  trusted or fatal: the frame is built from the study;
- `study_agreement` from stored frames equals the report from frames built in memory, with
  two prompt versions' extractions interleaved in the table.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest

from annotator.db import MIGRATIONS, open_db
from annotator.measure import frame_store, frames
from annotator.taxonomy import load_taxonomy

NAMES = ["honesty", "care", "Ünïcode ☃", "a \"quoted\" name", "", "x" * 300, "emoji 🙂",
         "new\nline", "back\\slash", "nul \u0000 inside", "=cmd|' /C calc'!A0", "free value"]
TABLES = ["annotations", "gold", "extractions:p1", "extractions:p 2/../ü"]


def _pick(rng: np.random.Generator) -> list[str]:
    return [NAMES[j] for j in rng.integers(0, len(NAMES), int(rng.integers(0, 5)))]


def _study(path: Path, n: int = 300) -> None:
    db = open_db(path)
    rng = np.random.default_rng(5)
    annotations, extractions, gold = [], [], []
    for i in range(n):
        cid = f"c{i:04d}"
        for k in range(int(rng.integers(0, 4))):
            labels = {"ai_values": _pick(rng), "human_values": _pick(rng)[:1],
                      "response_type": ["neutral", "reframing", None][k % 3],
                      "subjective": [True, False, None][i % 3]}
            if i % 4 == 0:
                labels["task"] = NAMES[i % len(NAMES)]
            annotations.append((f"a{i}-{k}", cid, f"annotator {k} ☃", orjson.dumps(labels).decode(),
                                None if i % 5 == 0 else float(i), int(i % 17 == 0), f"t{i}"))
        for prompt in ("p1", "p 2/../ü") if i % 2 else ("p 2/../ü", "p1"):  # interleaved
            ai = [{"name": v, "node_id": None, "path": [v], "evidence": None} if j % 2 else v
                  for j, v in enumerate(_pick(rng))]
            extractions.append((cid, prompt, orjson.dumps(ai).decode(),
                                orjson.dumps(_pick(rng)[:2]).decode(),
                                [1, 0, None][i % 3], None if i % 3 else "travel"))
        gold.append((cid, orjson.dumps(_pick(rng)).decode(), [1, 0, None][i % 3],
                     None if i % 2 else "coding"))
    with db.conn:
        db.conn.executemany(
            "insert into annotations (id, conversation_id, annotator, labels, lead_time, "
            "cancelled, deleted, updated_at, history) values (?, ?, ?, ?, ?, ?, 0, ?, '[]')",
            annotations)
        db.conn.executemany(
            "insert into extractions (conversation_id, prompt_id, model, extractor, ai_values, "
            "human_values, subjective, task, response_type, status, input_tokens, "
            "output_tokens, cache_read_tokens, cache_write_tokens, cost_usd, attempts, "
            "created_at) values (?, ?, 'm', 'x', ?, ?, ?, ?, 'neutral', 'ok', 0, 0, 0, 0, 0.0, "
            "1, 't')", extractions)
        db.conn.executemany(
            "insert into gold (conversation_id, ai_values, human_values, response_type, "
            "subjective, task, decided_by, decided_at, from_annotations, history) values "
            "(?, ?, '[]', 'neutral', ?, ?, 'majority', 't', '[]', '[]')", gold)
    db.conn.close()


@pytest.fixture
def study(tmp_path: Path) -> Path:
    path = tmp_path / "study.db"
    _study(path)
    return path


def _frames_dir(path: Path) -> Path:
    return frame_store.cache_root(path) / frame_store.FRAMES_DIR


def test_stored_frames_read_back_equal_to_built_ones(study: Path) -> None:
    db = open_db(study)
    built = {table: frames.table_frame(db, table) for table in TABLES}
    first = frames.stored_frames(db, TABLES)  # built and stored
    files = sorted(_frames_dir(study).glob("*.arrow"))
    assert len(files) == len(TABLES) + 1  # and the annotations' row index (`frame_patch`)
    second = frames.stored_frames(db, TABLES)  # read from disk
    for table in TABLES:
        assert len(built[table]) > 0
        pd.testing.assert_frame_equal(first[table], built[table])
        pd.testing.assert_frame_equal(second[table], built[table])
    # private like the study itself
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in files)
    # a write that died long ago leaves nothing for good; one in progress is left alone
    dead, alive = _frames_dir(study) / ".dead.tmp", _frames_dir(study) / ".alive.tmp"
    dead.write_bytes(b"half")
    alive.write_bytes(b"half")
    long_ago = dead.stat().st_mtime - frame_store.STALE_WRITE_SECONDS - 60
    os.utime(dead, (long_ago, long_ago))
    with db.conn:
        db.conn.execute("update gold set task = 'changed' where conversation_id = 'c0000'")
    frames.stored_frames(db, ["gold"])
    assert not dead.exists() and alive.exists()
    assert _frames_dir(study).stat().st_mode & 0o777 == 0o700
    # the same value name is one string object, not one per occurrence: in a frame read back
    # and in one just built (returned as it reads back)
    for frame in (first["annotations"], second["annotations"]):
        names = [n for values in frame["ai_values"] for n in values]
        assert len({id(n) for n in names}) == len(set(names)) < len(names)


def test_columns_arrow_would_not_give_back_are_not_stored(tmp_path: Path) -> None:
    """Unit (plain frames, no study): a frame is stored only if it reads back the same."""
    frames_dir = tmp_path / "folder"
    odd = {
        "tuples and a missing cell": pd.Series([("a",), None], dtype=object),
        "a list among tuples": pd.Series([("a",), ["b"]], dtype=object),
        "a number among names": pd.Series([("a", 1)], dtype=object),
        "NaN beside strings": pd.Series(["a", float("nan")], dtype=object),
        "a dict": pd.Series([{"name": "a"}], dtype=object),
    }
    for i, (why, column) in enumerate(odd.items()):
        frame = pd.DataFrame({"conversation_id": ["c1", "c2"][:len(column)], "x": column})
        got = frame_store.stored_frame(frames_dir / "s.db", f"t{i}", "sig",
                                       lambda frame=frame: (frame, "sig"))
        assert got is frame, why
        assert frame_store.read_frame(frames_dir / "s.db", f"t{i}", "sig") is None, why
    fine = pd.DataFrame({"names": pd.Series([("a", "b"), ()], dtype=object),
                         "flags": pd.Series([True, None], dtype=object),
                         "text": pd.Series(["x", None], dtype="str"),
                         "n": [1.5, float("nan")]})
    frame_store.stored_frame(frames_dir / "s.db", "fine", "sig", lambda: (fine, "sig"))
    pd.testing.assert_frame_equal(frame_store.read_frame(frames_dir / "s.db", "fine", "sig"),
                                  fine)


def test_a_changed_table_is_built_afresh_and_its_old_file_removed(study: Path) -> None:
    db = open_db(study)
    frames.stored_frames(db, TABLES)
    before = {f.name for f in _frames_dir(study).glob("*.arrow")}
    with db.conn:
        db.conn.execute("update annotations set edited_by = 'someone else' where id = 'a1-0'")
        db.conn.execute("insert into annotations (id, conversation_id, annotator, labels, "
                        "lead_time, cancelled, deleted, updated_at, history) values "
                        "('new', 'c0001', 'late', '{\"ai_values\": [\"late value\"]}', 1.0, 0, 0, "
                        "'t', '[]')")
    got = frames.stored_frames(db, TABLES)["annotations"]
    pd.testing.assert_frame_equal(got, frames.annotations_frame(db))
    assert "new" in set(got["annotation_id"]) and "a1-0" not in set(got["annotation_id"])
    after = {f.name for f in _frames_dir(study).glob("*.arrow")}
    # only annotations changed: its frame, its row index and the changed conversations' rows
    # before (`frame_patch`)
    assert len(after) == len(TABLES) + 2 and len(after - before) == 3


def _sums(path: Path) -> tuple[object, ...]:
    """What the signatures summed before change tokens: writes that keep these went unseen."""
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute("select count(*), max(decided_at) >= '', total(length(ai_values)), "
                            "total(length(history)) from gold").fetchone()


def test_any_write_by_another_program_gives_its_table_a_new_signature(study: Path,
                                                                     tmp_path: Path) -> None:
    """Another program (plain sqlite3, no annotator code) writes what sums over the columns
    would not see: each write moves its own table's signature and no other's, and what is
    derived from the table is built afresh from the new rows."""
    db = open_db(study)
    with db.conn:
        db.conn.execute("insert into conversations (id, source, turns, metadata, scrubbed, "
                        "ingested_at) values ('c0000', 's', '[]', '{}', 0, 't')")
    frames.stored_frames(db, TABLES)
    with closing(sqlite3.connect(study)) as conn:
        one, two = conn.execute("select conversation_id, ai_values from gold where "
                                "length(ai_values) > 2 order by conversation_id limit 2").fetchall()
    assert one[1] != two[1]
    writes = {
        "gold": [("update gold set ai_values = ? where conversation_id = ?", (two[1], one[0])),
                 ("update gold set ai_values = ? where conversation_id = ?", (one[1], two[0]))],
        "gold, decided earlier": [("update gold set decided_at = 's' where conversation_id = "
                                   "'c0003'", ())],
        "gold:people": [("update gold set decided_by = 'alice' where conversation_id = 'c0004'",
                         ())],
        "conversations": [("update conversations set turns = '[{\"x\": 1}]'", ())],
        "annotations": [("update annotations set labels = replace(labels, 'neutral', "
                         "'neutrax') where id = 'a1-0'", ())],
        "extractions:p1": [("update extractions set model = 'n' where prompt_id = 'p1' and "
                            "conversation_id = 'c0001'", ())],
        "tasks": [("insert into tasks (conversation_id, server, project_id, task_id, pushed_at) "
                   "values ('c0001', 's', 1, 1, 't')", ())],
    }
    for what, statements in writes.items():
        before, sums = frame_store.table_signatures(db), _sums(study)
        with closing(sqlite3.connect(study)) as conn, conn:
            for sql, params in statements:
                assert conn.execute(sql, params).rowcount == 1, what
        after = frame_store.table_signatures(db)
        moved = {table for table in after if after[table] != before[table]}
        table = what.split(",")[0]
        assert moved == ({"gold", "gold:people"} if table == "gold:people" else {table}), what
        if table == "gold" and what == "gold":
            assert _sums(study) == sums  # the old signature would not have moved
    got = frames.stored_frames(db, TABLES)
    gold = got["gold"].set_index("conversation_id")["ai_values"]
    assert list(gold[one[0]]) == orjson.loads(two[1]) and list(gold[two[0]]) == orjson.loads(one[1])
    pd.testing.assert_frame_equal(got["annotations"], frames.annotations_frame(db))
    # a copy restored and written again, as often as the study was: a signature never seen
    copy = tmp_path / "copy.db"
    shutil.copy(study, copy)
    write = "update gold set task = ? where conversation_id = 'c0002'"
    with closing(sqlite3.connect(study)) as conn, conn:
        conn.execute(write, ["one"])
    written = frame_store.table_signature(db, "gold")
    shutil.copy(copy, study)
    with closing(sqlite3.connect(study)) as conn, conn:
        conn.execute(write, ["another"])
    assert frame_store.table_signature(open_db(study), "gold") != written


def test_a_study_from_before_change_tokens_gets_them_when_opened(tmp_path: Path) -> None:
    before_tokens = [name for name, _ in MIGRATIONS].index("0015_change_tokens")
    old = open_db(tmp_path / "old.db", migrations=MIGRATIONS[:before_tokens])
    assert "table_changes" not in old.table_names()
    before = frame_store.table_signatures(old)  # read all the same: no token yet
    assert before["gold"] == "0:"
    old.conn.close()
    db = open_db(tmp_path / "old.db")
    after = frame_store.table_signatures(db)
    assert after["gold"].startswith("0:") and after["gold"] != before["gold"]
    assert set(after) == set(before)


def test_damaged_linked_or_unwritable_stores_fall_back_to_the_study(study: Path,
                                                                     tmp_path: Path) -> None:
    db = open_db(study)
    want = frames.annotations_frame(db)
    frames.stored_frames(db, ["annotations"])
    stored = frame_store._file(study, "annotations", frame_store.table_signature(db, "annotations"))
    stored.write_bytes(stored.read_bytes()[:1000])  # cut short, as by a crash or a full disk
    pd.testing.assert_frame_equal(frames.stored_frames(db, ["annotations"])["annotations"], want)

    # someone else's rows linked in at the frame's name are not read, and the link stays
    other = tmp_path / "other.db"
    _study(other)
    with open_db(other).conn as conn:
        conn.execute("update annotations set labels = '{\"ai_values\": [\"planted\"]}'")
    frames.stored_frames(open_db(other), ["annotations"])
    planted = frame_store._file(other, "annotations",
                                frame_store.table_signature(open_db(other), "annotations"))
    stored.unlink()
    stored.symlink_to(planted)
    pd.testing.assert_frame_equal(frames.stored_frames(db, ["annotations"])["annotations"], want)
    assert stored.is_symlink()

    if os.geteuid() != 0:  # root writes anywhere: the read-only case cannot be made
        stored.unlink()
        _frames_dir(study).chmod(0o500)
        try:
            got = frames.stored_frames(db, ["annotations"])["annotations"]
        finally:
            _frames_dir(study).chmod(0o700)
        pd.testing.assert_frame_equal(got, want)


def test_a_stored_frame_whose_names_are_not_lists_of_names_is_not_read(tmp_path: Path) -> None:
    """A frame file whose column said to hold names holds something else (another version's
    layout, a planted file) reads as not stored, as tuples and as Arrow lists alike: the
    frame is built again, never its characters taken for names."""
    import pyarrow as pa

    frame = pd.DataFrame({"conversation_id": ["c1", "c2"], "ai_values": [("care",), ()]})
    table = frame_store.to_arrow(frame)
    path = tmp_path / "study.db"
    frame_store.store_table(path, "gold", "sig", table)
    assert frame_store.read_frame(path, "gold", "sig", arrow_lists=True) is not None
    strings = table.set_column(1, "ai_values", pa.array(["care", ""], pa.large_string()))
    frame_store.store_table(path, "gold", "sig", strings)
    for lists in (False, True):
        assert frame_store.read_frame(path, "gold", "sig", arrow_lists=lists) is None


def test_agreement_from_stored_frames_equals_frames_built_in_memory(study: Path) -> None:
    db = open_db(study)
    direct = frames.agreement_report(
        frames.annotations_frame(db), frames.gold_frame(db), frames.extractions_frame(db),
        {0: load_taxonomy().level_map(0)}, levels=(0,), n_boot=20, top_k=3)
    # the inter-annotator figures as the app's summary stores them: with more of them
    fuller = frames.agreement_report(frames.annotations_frame(db), level_maps={
        0: load_taxonomy().level_map(0)}, levels=(0,), n_boot=20, top_k=5)
    asked: list[str] = []

    def stored(path: Path, signature: str) -> frames.AgreementReport:
        asked.append(signature)
        return fuller

    # stored, then read back; then the inter-annotator part in a second process; then, on a
    # study never seen, the second process also builds the annotations frame meanwhile; then
    # with the inter-annotator figures stored, in one process, and with the second process
    # scoring the later prompt version
    for parallel_from, seen, given in ((10**9, False, None), (10**9, True, None),
                                       (1, True, None), (1, False, None),
                                       (10**9, True, stored), (1, True, stored),
                                       (1, False, stored)):
        if not seen:
            shutil.rmtree(_frames_dir(study), ignore_errors=True)
        report = frames.study_agreement(db, levels=(0,), n_boot=20, top_k=3,
                                        parallel_min_annotations=parallel_from,
                                        stored_inter_annotator=given)
        assert frame_store.has_frame(study, "annotations",
                                     frame_store.table_signature(db, "annotations"))
        # repr: a NaN figure equals itself
        assert [repr(r.model_dump()) for r in report.rows] == [
            repr(r.model_dump()) for r in direct.rows]
        assert report.confusion == direct.confusion
        assert report.prompt_ids == direct.prompt_ids
        assert {k: report.settings[k] for k in direct.settings} == direct.settings
    assert any((r.model or "").startswith("p 2/../ü") for r in report.rows)
    assert asked == [frame_store.table_signature(db, "annotations")] * 3
    # the model rows of a later version, in a second process: from the frames stored at the
    # signatures it is given, else None (the first process scores it)
    study_frames = frames._study_frames(db)
    settings = {"levels": (0,), "n_boot": 20, "top_k": 3, "seed": 0}
    later = frames._models_part(str(study), study_frames.signatures, ["p1"], {}, settings)
    assert later is not None and later[0].prompt_ids == ["p1"] and later[1] == {}
    assert [repr(r.model_dump()) for r in later[0].rows] == [
        repr(r.model_dump()) for r in direct.rows if (r.model or "").startswith("p1")]
    assert frames._models_part(str(study), {**study_frames.signatures, "gold": "another"},
                               ["p1"], {}, settings) is None
    # what the second process computes: from the stored frame of the signature it is given
    signature = frame_store.table_signature(db, "annotations")
    part = frames._inter_annotator_part(str(study), signature, (0,), 20, 3, 0)
    assert part is not None and part.rows and all(r.scope.startswith("annotators")
                                                  for r in part.rows)
    assert [repr(r.model_dump()) for r in part.rows] == [
        repr(r.model_dump()) for r in direct.rows[:len(part.rows)]]
    assert frames._inter_annotator_part(str(study), "another signature", (0,), 20, 3, 0) is None


def test_the_annotations_frame_built_in_two_halves_is_the_frame_built_whole(study: Path) -> None:
    """Real SQLite: the annotations frame built in two parts (rowid halves, each by
    `store_frame_part`, as two summary workers build it) and joined by the store
    (`store_joined`) reads back as the frame built whole, hostile names included; also when
    Arrow typed a column of one part as null (a half where no annotation names a task). Parts
    of different columns are refused, and nothing is stored."""
    db = open_db(study)
    signature = frame_store.table_signature(db, "annotations")
    halves = frames.table_halves(db, "annotations")
    assert len(halves) == 2 and halves[0][1] == halves[1][0]
    with frame_store.parts_folder(study) as folder:
        assert folder is not None and folder.stat().st_mode & 0o777 == 0o700
        parts = [folder / f"{i}.arrow" for i in range(2)]
        read_at = [frames.store_frame_part(str(study), "annotations", rowids, str(part))
                   for rowids, part in zip(halves, parts, strict=True)]
        assert read_at == [signature, signature]
        assert frame_store.store_joined(study, "annotations", signature, parts)
    assert not folder.exists()
    joined = frame_store.read_frame(study, "annotations", signature)
    assert joined is not None and len(joined) > 300
    pd.testing.assert_frame_equal(joined, frames.annotations_frame(db))

    with db.conn:  # no task in the first half: that part's task column is typed null
        db.execute("update annotations set labels = json_remove(labels, '$.task') "
                   "where rowid < ?", [halves[0][1]])
    signature = frame_store.table_signature(db, "annotations")
    with frame_store.parts_folder(study) as folder:
        parts = [folder / f"{i}.arrow" for i in range(2)]
        for rowids, part in zip(halves, parts, strict=True):
            frames.store_frame_part(str(study), "annotations", rowids, str(part))
        assert frame_store.write_part(frames.gold_frame(db), folder / "gold.arrow")
        assert not frame_store.store_joined(study, "annotations", "other",
                                            [parts[0], folder / "gold.arrow"])
        assert frame_store.read_frame(study, "annotations", "other") is None
        assert frame_store.store_joined(study, "annotations", signature, parts)
    pd.testing.assert_frame_equal(frame_store.read_frame(study, "annotations", signature),
                                  frames.annotations_frame(db))


def test_the_gold_frame_built_in_two_halves_is_the_frame_built_whole(study: Path) -> None:
    """Real SQLite: the gold frame built in two rowid halves (`store_frame_part`, as two
    summary workers build it after `adjudicate`) and joined reads back as the frame built
    whole, hostile names and a row with no task or time included."""
    db = open_db(study)
    with db.conn:
        db.execute("update gold set ai_values = ?, task = null, decided_at = null "
                   "where rowid = (select max(rowid) from gold)",
                   [orjson.dumps(["=1+1", "\u202eevil", "a\x00b"]).decode()])
    signature = frame_store.table_signature(db, "gold")
    halves = frames.table_halves(db, "gold")
    assert len(halves) == 2 and halves[0][1] == halves[1][0]
    with frame_store.parts_folder(study) as folder:
        parts = [folder / f"gold-{i}" for i in range(2)]
        read_at = [frames.store_frame_part(str(study), "gold", rowids, str(part))
                   for rowids, part in zip(halves, parts, strict=True)]
        assert read_at == [signature, signature]
        assert frame_store.store_joined(study, "gold", signature, parts)
    joined = frame_store.read_frame(study, "gold", signature)
    assert joined is not None and len(joined) == db["gold"].count
    pd.testing.assert_frame_equal(joined, frames.gold_frame(db))


def test_versions_scored_in_two_processes_leave_out_their_few_shot_examples(
        study: Path, monkeypatch) -> None:
    """With the annotators' figures stored, the second process scores the later version: each
    version's few-shot examples are left out of its own figures, and the counts are reported
    in the order one process reports them (the study's few-shot map, not the versions')."""
    db = open_db(study)
    examples = {"p1": frozenset({"c0001", "c0003", "c0005"}), "p 2/../ü": frozenset({"c0002"})}
    monkeypatch.setattr(frames, "few_shot_map", lambda _db: examples)
    one = frames.study_agreement(db, levels=(0,), n_boot=20, top_k=3,
                                 parallel_min_annotations=10**9)
    fuller = frames.agreement_report(frames.annotations_frame(db), level_maps={
        0: load_taxonomy().level_map(0)}, levels=(0,), n_boot=20, top_k=5)
    two = frames.study_agreement(db, levels=(0,), n_boot=20, top_k=3,
                                 parallel_min_annotations=1,
                                 stored_inter_annotator=lambda path, signature: fuller)
    assert list(one.settings["few_shot_left_out"].items()) == [("p1", 3), ("p 2/../ü", 1)]
    assert list(two.settings["few_shot_left_out"].items()) == list(
        one.settings["few_shot_left_out"].items())
    assert [repr(r.model_dump()) for r in two.rows] == [repr(r.model_dump()) for r in one.rows]
    assert two.prompt_ids == one.prompt_ids == ["p 2/../ü", "p1"]


def test_the_later_half_is_scored_here_when_its_stored_frame_is_gone(study: Path) -> None:
    """The second process finds the later version's frame gone (another command replaced it):
    this process reads it from the study and scores that half itself, the same rows. The
    worker here is a thread running the real code (a process would not change what it does)."""
    db = open_db(study)
    one = frames.study_agreement(db, levels=(0,), n_boot=20, top_k=3,
                                 parallel_min_annotations=10**9)
    signatures = frames._study_signatures(db)
    frame_store._file(study, "extractions:p1", signatures["extractions:p1"]).unlink()
    settings = {"levels": (0,), "n_boot": 20, "top_k": 3, "seed": 0}
    with ThreadPoolExecutor(1) as worker, frame_store.snapshot(db):
        models, left_out = frames._models_in_halves(db, worker, signatures,
                                                    (["p 2/../ü"], ["p1"]), {}, settings)
    assert [repr(r.model_dump()) for r in models.rows] == [
        repr(r.model_dump()) for r in one.rows if r.model]
    assert models.prompt_ids == one.prompt_ids and left_out == {}
