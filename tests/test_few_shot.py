"""Few-shot examples from a gold file (issue 11, item 6): a seeded choice covering response
types and top categories, rendered into the system text, part of the version's identity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from annotator import config, taxonomy
from annotator.errors import InputError
from annotator.extract import few_shot
from annotator.extract.prompts import (
    body_parts,
    few_shot_ids,
    parse_prompt,
    prompt_files,
    prompt_id,
)
from annotator.gold_file import read_gold

DEMO = Path(__file__).resolve().parents[1] / "gold" / "demo.jsonl"
V1 = (config.default_prompts_dir() / "values" / "v1.md").read_text(encoding="utf-8")


def records():
    return [r for r in read_gold(DEMO) if not r.gold.missing_fields()]


def with_few_shot(spec: str, text: str = V1) -> str:
    return text.replace("output: tool\n", f"output: tool\nfew_shot: {spec}\n")


def categories(record) -> set[str]:
    tree = taxonomy.load_taxonomy()
    found = set()
    for name in record.gold.ai_values:
        node = tree.resolve(name)
        if node is not None:
            found.add(tree.ancestor(node, 3).short_name)
    return found


def test_the_choice_is_seeded_and_repeatable():
    pool = records()
    first = [r.conversation_id for r in few_shot.choose(pool, 4, seed=1)]
    assert first == [r.conversation_id for r in few_shot.choose(list(reversed(pool)), 4, seed=1)]
    assert len(set(first)) == 4
    others = {tuple(r.conversation_id for r in few_shot.choose(pool, 4, seed=s))
              for s in range(2, 8)}
    assert len(others | {tuple(first)}) > 1  # the seed matters


@pytest.mark.parametrize("seed", range(5))
def test_the_choice_covers_response_types_then_top_categories(seed):
    pool = records()
    types = {str(r.gold.response_type) for r in pool}
    tops = set().union(*(categories(r) for r in pool))
    chosen = few_shot.choose(pool, len(types), seed)
    assert {str(r.gold.response_type) for r in chosen} == types
    assert set().union(*(categories(r) for r in chosen)) == tops
    few = few_shot.choose(pool, 3, seed)
    assert len({str(r.gold.response_type) for r in few}) == 3  # three picks, three types


def test_examples_are_rendered_into_the_system_text_with_gold_labels():
    prompt = parse_prompt(with_few_shot("{gold: demo.jsonl, k: 3, seed: 1}"), "values", "v1")
    ids = few_shot_ids(prompt)
    assert len(ids) == 3
    system, user = body_parts(prompt)
    plain_system, plain_user = body_parts(parse_prompt(V1, "values", "v1"))
    assert user == plain_user and system.startswith(plain_system)
    by_id = {r.conversation_id: r for r in records()}
    for cid in ids:
        gold = by_id[cid].gold
        labels = json.dumps(gold.ai_values, ensure_ascii=False)
        assert labels in system and by_id[cid].turns[0].text.split("\n")[0][:60] in system
    slot = parse_prompt(with_few_shot("{gold: demo.jsonl, k: 3, seed: 1}").replace(
        "# Worked examples", "{examples}\n\n# Worked examples"), "values", "v1")
    slotted = body_parts(slot)[0]
    assert "{examples}" not in slotted
    assert slotted.index("Worked examples from adjudicated gold") < slotted.index(
        "# Worked examples\n")


def test_ids_and_examples_are_part_of_the_version_identity(tmp_path):
    plain = parse_prompt(V1, "values", "v1")
    assert plain.id == prompt_id(V1)  # versions without examples keep their ids
    base = parse_prompt(with_few_shot("{gold: demo.jsonl, k: 4, seed: 1}"), "values", "v1")
    again = parse_prompt(with_few_shot("{gold: demo.jsonl, k: 4, seed: 1}"), "values", "v1")
    assert base.id == again.id and base.id != plain.id
    ids = {base.id}
    for spec in ("{gold: demo.jsonl, k: 5, seed: 1}", "{gold: demo.jsonl, k: 4, seed: 2}"):
        changed = parse_prompt(with_few_shot(spec), "values", "v1")
        assert changed.id not in ids
        ids.add(changed.id)
    # another gold file: the same records but one example's labels edited
    edited = tmp_path / "demo.jsonl"
    lines = DEMO.read_text(encoding="utf-8").splitlines()
    chosen = set(few_shot_ids(base))
    for i, line in enumerate(lines):
        data = json.loads(line)
        if data["conversation_id"] in chosen:
            data["gold"]["ai_values"] = [*data["gold"]["ai_values"], "honesty"]
            lines[i] = json.dumps(data)
            break
    edited.write_text("\n".join(lines) + "\n", encoding="utf-8")
    other = parse_prompt(with_few_shot(f"{{gold: {edited}, k: 4, seed: 1}}"), "values", "v1")
    assert few_shot_ids(other) == few_shot_ids(base) and other.id not in ids


def test_the_gold_file_is_found_beside_the_prompt_first(tmp_path):
    folder = tmp_path / "values"
    folder.mkdir()
    subset = [line for line in DEMO.read_text().splitlines() if line.strip()][:10]
    (folder / "mine.jsonl").write_text("\n".join(subset) + "\n")
    (folder / "v1.md").write_text(with_few_shot("{gold: mine.jsonl, k: 2}"))
    (prompt,) = prompt_files(tmp_path)
    mine = {json.loads(line)["conversation_id"] for line in subset}
    assert few_shot_ids(prompt) <= mine and prompt.front_matter["few_shot"]["seed"] == 0


@pytest.mark.parametrize(("spec", "said"), [
    ("{gold: nowhere.jsonl, k: 2}", "'nowhere.jsonl' not found"),
    ("{gold: demo.jsonl, k: 0}", "few_shot.k"),
    ("{gold: demo.jsonl, k: 500}", "few_shot.k"),
    ("{gold: demo.jsonl}", "few_shot.k"),
    ("{gold: demo.jsonl, k: 2, colour: red}", "few_shot.colour"),
    ("demo.jsonl", "few_shot must be a mapping"),
])
def test_a_bad_few_shot_spec_is_a_one_line_error(spec, said):
    with pytest.raises(InputError) as raised:
        parse_prompt(with_few_shot(spec), "values", "v9")
    assert said in str(raised.value) and "values/v9" in str(raised.value)
    assert "\n" not in str(raised.value)


def test_more_examples_than_gold_is_an_error(tmp_path):
    small = tmp_path / "small.jsonl"
    small.write_text("\n".join(DEMO.read_text().splitlines()[:3]) + "\n")
    with pytest.raises(InputError, match="asks for 4 examples; the gold file has 3"):
        parse_prompt(with_few_shot(f"{{gold: {small}, k: 4}}"), "values", "v1")


def test_the_shipped_few_shot_prompt_loads_and_excludes_demo_conversations():
    shipped = [p for p in prompt_files(config.default_prompts_dir()) if few_shot_ids(p)]
    assert shipped, "prompts/ ships an example few-shot version"
    demo_ids = {r.conversation_id for r in records()}
    for prompt in shipped:
        assert few_shot_ids(prompt) <= demo_ids
        assert prompt.name != "values"  # not the default `extract` prompt
