"""Prompt versions: id = hash of content, front matter, lookup, rendering, and the content of v1
checked against the released taxonomy (read here through the taxonomy module)."""

from __future__ import annotations

import json
import re

import pytest

from annotator import config, taxonomy
from annotator.db import open_db
from annotator.errors import InputError
from annotator.extract.extractors import ProposedLabels
from annotator.extract.prompts import (
    body_parts,
    load_prompt,
    prompt_files,
    prompt_id,
    prompts,
    record_prompt,
    render,
    split_front_matter,
)
from annotator.models import Conversation, Turn

V1 = config.prompts_dir() / "values" / "v1.md"
# Values the v1 examples use on purpose although they are rarely in the top 150.
CONV = Conversation.from_turns(
    [
        Turn(role="user", text="Should I tell my friend the truth about her business plan?"),
        Turn(role="assistant", text="Honesty, offered kindly, usually serves a friendship."),
    ]
)


def v1():
    return load_prompt("values/v1")


def section(text: str, heading: str) -> str:
    start = text.index(heading)
    nxt = text.find("\n# ", start + 1)
    return text[start : nxt if nxt != -1 else len(text)]


def test_id_is_a_hash_of_the_whole_file_and_changes_with_any_edit(tmp_path):
    text = V1.read_text(encoding="utf-8")
    assert v1().id == prompt_id(text)
    (tmp_path / "values").mkdir()
    (tmp_path / "values" / "v1.md").write_text(text, encoding="utf-8")
    edited_text = text.replace("temperature: 0", "temperature: 0.2").replace(
        "version: v1", "version: v2"
    )
    (tmp_path / "values" / "v2.md").write_text(edited_text)
    same, edited = prompt_files(tmp_path)
    assert same.id == v1().id
    assert edited.id != same.id and edited.front_matter["temperature"] == 0.2


def test_v1_front_matter_has_what_a_run_needs():
    front = v1().front_matter
    assert front["model"].startswith("claude-")
    assert front["temperature"] == 0
    assert front["max_tokens"] >= 1024
    assert front["output"] == "tool"
    assert (v1().name, v1().version) == ("values", "v1")


def test_v1_lists_every_category_and_cluster_and_the_150_most_frequent_values():
    system, _ = body_parts(v1())
    tree = taxonomy.load_taxonomy()
    outline = section(system, "# The value taxonomy")
    for top in tree.nodes_at(3):
        assert f"## {top.name}" in outline
    for node in tree.nodes_at(2):
        assert f"- {node.name}: " in outline, node.name
    listed_l1 = {
        name.strip()
        for line in outline.splitlines()
        if line.startswith("- ")
        for name in line.split(": ", 1)[1].split(";")
    }
    assert {n.name for n in tree.nodes_at(1)} == listed_l1
    values_part = section(system, "# The 150 most frequent values")
    listed = [
        name.strip()
        for line in values_part.splitlines()
        if line.startswith("- ")
        for name in line.split(": ", 1)[1].split(",")
    ]
    assert len(listed) == 150 == len(set(listed))
    assert set(listed) == {n.name for n in tree.top_values(150)}
    # each value is listed under its own top category
    for line in values_part.splitlines():
        if line.startswith("- "):
            category, names = line[2:].split(": ", 1)
            for name in names.split(", "):
                assert tree.ancestors(tree.resolve(name))[3].name == category
    assert taxonomy.ATTRIBUTION in system


def test_v1_defines_every_label_and_response_type():
    system, user = body_parts(v1())
    for field in ProposedLabels.model_fields:
        if field == "task":  # asked only by versions that list the task categories (v2 on)
            assert "`task`" not in system
            continue
        assert f"`{field}`" in system
    for response_type in ("strong support", "mild support", "neutral", "reframing",
                          "mild resistance", "strong resistance", "no values"):
        assert f'"{response_type}"' in system
    assert "{conversation}" in user


def test_v1_worked_examples_are_valid_replies_quoting_their_conversation():
    system, _ = body_parts(v1())
    examples = re.findall(r"<example>\n(.*?)</example>", system, re.DOTALL)
    assert len(examples) >= 3
    tree = taxonomy.load_taxonomy()
    seen_types = set()
    for example in examples:
        conversation, reply = example.split("record_labels input:\n")
        labels = ProposedLabels.model_validate(json.loads(reply))
        seen_types.add(labels.response_type)
        flat = " ".join(conversation.split())
        for value in labels.ai_values + labels.human_values:
            assert tree.resolve(value.name) is not None, value.name  # all from the taxonomy
            assert " ".join(value.evidence.split()) in flat, value.evidence  # verbatim quotes
    assert len(seen_types) >= 3


def test_render_keeps_the_static_part_identical_and_the_conversation_in_the_user_turn():
    other = Conversation.from_turns([Turn(role="user", text="Translate 'cat' to French.")])
    a, b = render(v1(), CONV), render(v1(), other)
    assert a.system == b.system  # the cached prefix is the same for every conversation
    assert "Honesty, offered kindly" in a.user and "Honesty, offered kindly" not in a.system
    assert a.user.index('role="user"') < a.user.index('role="assistant"')
    assert a.user.count("<turn ") == 2


def copy_v1(directory, version: str):
    text = V1.read_text(encoding="utf-8").replace("version: v1", f"version: {version}", 1)
    (directory / "values").mkdir(exist_ok=True)
    (directory / "values" / f"{version}.md").write_text(text, encoding="utf-8")
    return text


def test_lookup_by_name_version_id_prefix_and_default_latest(tmp_path):
    for version in ("v1", "v10", "v2"):
        copy_v1(tmp_path, version)
    assert load_prompt(None, tmp_path).version == "v10"  # by number, not by string order
    assert load_prompt("values@v2", tmp_path).version == "v2"
    assert load_prompt("v1", tmp_path).id == v1().id
    target = load_prompt("values/v2", tmp_path)
    assert load_prompt(target.id[:8], tmp_path).version == "v2"
    assert load_prompt(str(tmp_path / "values" / "v2.md"), tmp_path).id == target.id
    with pytest.raises(InputError, match="no prompt"):
        load_prompt("values/v9", tmp_path)


def test_bad_prompt_files_are_clear_errors(tmp_path):
    (tmp_path / "values").mkdir()
    (tmp_path / "values" / "v1.md").write_text(
        "---\ntemperature: 0\n---\nhi\n<!-- user -->\n{conversation}"
    )
    with pytest.raises(InputError, match="model"):
        prompt_files(tmp_path)
    (tmp_path / "values" / "v1.md").write_text("---\nmodel: m\nmax_tokens: 9\n---\nno user part")
    with pytest.raises(InputError, match="user"):
        prompt_files(tmp_path)
    assert split_front_matter("no front matter") == ({}, "no front matter")
    copy_v1(tmp_path, "v1")
    (tmp_path / "values" / "v2.md").write_text(V1.read_text(encoding="utf-8"))  # forgot to bump
    with pytest.raises(InputError, match="version 'v1' but the file is v2.md"):
        prompt_files(tmp_path)


def test_listing_merges_files_and_the_study_database(tmp_path):
    text = V1.read_text(encoding="utf-8")
    (tmp_path / "values").mkdir()
    (tmp_path / "values" / "v1.md").write_text(text)
    db_file = tmp_path / "study.db"
    database = open_db(db_file)
    used = load_prompt("v1", tmp_path)
    record_prompt(database, used)
    record_prompt(database, used)  # first use is kept
    (tmp_path / "values" / "v1.md").write_text(text + "edited\n")  # never do this
    database.conn.close()
    listing = {row["id"]: row for row in prompts(db_file, tmp_path)}
    assert listing[used.id]["where"] == "db" and listing[used.id]["first_used"]
    edited = prompt_id(text + "edited\n")
    assert listing[edited]["where"] == "file" and listing[edited]["first_used"] is None
    assert all(row["model"] == "claude-sonnet-4-6" for row in listing.values())
