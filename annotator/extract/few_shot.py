"""Few-shot examples drawn from a gold file, for a prompt whose front matter asks for them.

```yaml
few_shot: {gold: demo.jsonl, k: 4, seed: 1}
```

`choose` picks k adjudicated conversations, seeded: the gold file's complete records in a
shuffled order (`seed`), then greedily the one adding the most response types and top categories
(of its gold AI values) not yet covered, response types first; once everything present is
covered, coverage starts again. `render_examples` writes them as worked examples (the turns, then
the gold labels a reply should give), scrubbed like any ingested text, since they are sent to the
model.

The chosen ids are part of the prompt version's identity (`prompts.parse_prompt`), and those
conversations are left out of that version's scores against gold: a model that saw an example's
labels in its prompt is not scored on it (`prompts.few_shot_ids`).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from annotator import config
from annotator.errors import InputError
from annotator.models import GoldRecord, RejectedRecord, Turn

EXAMPLES_SLOT = "{examples}"  # where the system text wants them; else they end it


class FewShotSpec(BaseModel):
    """What a prompt's `few_shot` front matter asks for."""

    model_config = ConfigDict(extra="forbid")

    gold: str = Field(min_length=1, description="A gold JSONL file: beside the prompt file, "
                      "else in the project's gold/ folder, or an absolute path.")
    k: int = Field(ge=1, le=50, description="How many worked examples.")
    seed: int = Field(0, description="Seed of the choice: same file, k and seed, same examples.")


class FewShot(BaseModel):
    """A resolved `few_shot`: the spec, the chosen conversation ids and the rendered examples.
    Kept in the prompt version's front matter, so a version read back from a study (its file
    edited or gone) renders and excludes exactly what it did."""

    gold: str
    k: int
    seed: int
    ids: list[str]
    examples: str


def spec_of(front: dict[str, Any], label: str) -> FewShotSpec | None:
    """The `few_shot` front matter of prompt `label`, checked; None when it asks for none."""
    raw = front.get("few_shot")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InputError(f"prompt {label}: few_shot must be a mapping like "
                         "{gold: demo.jsonl, k: 4, seed: 1}")
    try:
        return FewShotSpec.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"]))
        raise InputError(f"prompt {label}: few_shot.{where}: {first['msg']}") from None


def gold_path(spec: FewShotSpec, label: str, base: Path | None) -> Path:
    """The gold file a spec names: absolute, else beside the prompt (`base`), else in gold/."""
    named = Path(spec.gold).expanduser()
    candidates = [named] if named.is_absolute() else [
        *([base / named] if base is not None else []), config.gold_dir() / named]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise InputError(f"prompt {label}: few_shot gold file {spec.gold!r} not found (looked in "
                     f"{', '.join(str(c.parent) for c in candidates)})")


def resolve(spec: FewShotSpec, label: str, base: Path | None = None) -> FewShot:
    """Choose and render the examples a spec asks for."""
    path = gold_path(spec, label, base)
    stat = path.stat()
    return _resolve(str(path), stat.st_mtime_ns, stat.st_size, spec.k, spec.seed, spec.gold,
                    label)


@lru_cache(maxsize=32)
def _resolve(path: str, _mtime: int, _size: int, k: int, seed: int, named: str,
             label: str) -> FewShot:
    # Cached per file state: every prompt lookup reads the prompt folder.
    records = _complete_records(Path(path), label)
    chosen = choose(records, k, seed)
    return FewShot(gold=named, k=k, seed=seed, ids=[r.conversation_id for r in chosen],
                   examples=render_examples(chosen))


def _complete_records(path: Path, label: str) -> list[GoldRecord]:
    from annotator.gold_file import read_gold

    records = []
    for record in read_gold(path):
        if isinstance(record, RejectedRecord):
            raise InputError(f"prompt {label}: few_shot gold file {path}, line {record.line}: "
                             f"{record.reason}")
        if not record.gold.missing_fields():
            records.append(record)
    return records


def _features(record: GoldRecord) -> tuple[set[str], set[str]]:
    """(response types, top categories of the gold AI values) of a record."""
    from annotator.taxonomy import load_taxonomy

    tree = load_taxonomy()
    categories = set()
    for name in record.gold.ai_values:
        node = tree.resolve(name)
        top = tree.ancestor(node, 3) if node is not None else None
        if top is not None:
            categories.add(top.short_name)
    return {str(record.gold.response_type)}, categories


def choose(records: Iterable[GoldRecord], k: int, seed: int) -> list[GoldRecord]:
    """k records, seeded, covering response types first, then top categories (module doc)."""
    pool = sorted(records, key=lambda r: r.conversation_id)
    if k > len(pool):
        raise InputError(f"few_shot asks for {k} examples; the gold file has {len(pool)} "
                         "adjudicated conversations")
    random.Random(seed).shuffle(pool)
    features = {r.conversation_id: _features(r) for r in pool}
    all_types = set().union(*(f[0] for f in features.values()))
    all_categories = set().union(*(f[1] for f in features.values()))
    types, categories = set(all_types), set(all_categories)
    chosen: list[GoldRecord] = []
    while len(chosen) < k:
        if not types and not categories:
            types, categories = set(all_types), set(all_categories)

        gains = [(len(features[r.conversation_id][0] & types),
                  len(features[r.conversation_id][1] & categories)) for r in pool]
        # the first of equals in the shuffled order: seeded
        best = pool[max(range(len(pool)), key=gains.__getitem__)]
        pool.remove(best)
        chosen.append(best)
        t, c = features[best.conversation_id]
        types -= t
        categories -= c
    return chosen


def _labels(record: GoldRecord) -> str:
    gold = record.gold
    return json.dumps({"subjective": gold.subjective, "ai_values": gold.ai_values,
                       "human_values": gold.human_values,
                       "response_type": str(gold.response_type)}, ensure_ascii=False)


def render_examples(records: list[GoldRecord]) -> str:
    """The chosen records as worked examples: turns, then the gold labels (names only: a reply
    also quotes evidence for each value)."""
    from annotator.ingest.privacy import scrub_text

    blocks = ["# Worked examples from adjudicated gold", "",
              "People labelled these conversations and their labels were adjudicated. The "
              "labels are what a correct reply records; a reply also quotes evidence for each "
              "value.", ""]
    for i, record in enumerate(records, start=1):
        turns = [Turn(role=t.role, text=scrub_text(t.text)) for t in record.turns]
        blocks += [f'<example index="{i}">', render_turns(turns),
                   f"<labels>{_labels(record)}</labels>", "</example>", ""]
    return "\n".join(blocks).strip()


def render_turns(turns: list[Turn]) -> str:
    """`render_conversation` of bare turns (a gold record's, for few-shot examples)."""
    lines = ["<conversation>"]
    for i, turn in enumerate(turns, start=1):
        lines.append(f'<turn index="{i}" role="{turn.role.value}">')
        lines.append(turn.text.strip())
        lines.append("</turn>")
    lines.append("</conversation>")
    return "\n".join(lines)
