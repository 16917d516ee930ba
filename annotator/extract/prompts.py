"""Versioned extraction prompts: load `prompts/`, a version's id is a hash of its content, render.

A prompt file is YAML front matter (model, temperature, max_tokens, output) and a body. The body
is the static system prompt; the part after a line `<!-- user -->` is the user-turn template, in
which `{conversation}` is replaced by the rendered conversation. Everything static comes first so
that prompt caching applies to it; only the user turn differs between conversations.

A version's id is a hash of the whole file, so any edit is a new version; a used version is
never edited: a change is a new file (`v2.md`). A prompt whose front matter asks for
few-shot examples from a gold file (`few_shot: {gold: demo.jsonl, k: 4, seed: 1}`, see
`few_shot`) has them rendered into its system text; the chosen conversation ids and the rendered
examples are hashed into its id too, and those conversations are left out of its scores
(`few_shot_ids`).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import sqlite_utils
import yaml

from annotator import config
from annotator.db import loads, open_existing_db, prompt_to_row, row_to_prompt
from annotator.errors import InputError
from annotator.extract import few_shot, tasks
from annotator.models import Conversation, PromptVersion

DEFAULT_NAME = "values"
USER_MARKER = "<!-- user -->"
CONVERSATION_SLOT = "{conversation}"
REQUIRED_FRONT_MATTER = ("model", "max_tokens")
OUTPUT_MODES = ("tool", "json")
# `labels:` in the front matter: every label (default), or only `subjective` (a first-stage
# filter for `extract --only-subjective`), or `scrub` (names and addresses to replace, no labels:
# `scrub_pass`); `extractors.REPLY_SHAPES` has their shapes.
LABEL_SETS = ("all", "subjective", "scrub")
# SQL: the study's scrub-pass prompt versions, and a condition on `prompt_id` leaving them out
# (they propose no labels: never predictions, never scored, never exported as proposals).
SCRUB_PROMPT_IDS = "select id from prompts where json_extract(front_matter, '$.labels') = 'scrub'"
NOT_SCRUB = f"prompt_id not in ({SCRUB_PROMPT_IDS})"
ID_LENGTH = 16

_FRONT = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*\r?\n", re.DOTALL)
_VERSION_NUMBER = re.compile(r"(\d+)")


def prompt_id(text: str) -> str:
    """The version id: a hash of the file's exact content."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:ID_LENGTH]


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """(front matter, body); a file without front matter has an empty dict."""
    match = _FRONT.match(text)
    if not match:
        return {}, text
    try:
        data = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"the prompt's front matter is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError("the prompt's front matter must be a YAML mapping")
    return data, text[match.end() :]


def parse_prompt(text: str, name: str, version: str, base: Path | None = None) -> PromptVersion:
    """A PromptVersion from file content; checks the front matter a run needs. `base`: the
    prompt file's folder, where a `few_shot` gold file is looked for first."""
    front, body = split_front_matter(text)
    missing = [k for k in REQUIRED_FRONT_MATTER if k not in front]
    if missing:
        raise InputError(f"prompt {name}/{version}: front matter lacks {', '.join(missing)}")
    output = front.setdefault("output", "tool")
    if output not in OUTPUT_MODES:
        raise InputError(f"prompt {name}/{version}: output must be one of {OUTPUT_MODES}")
    if front.get("labels", "all") not in LABEL_SETS:
        raise InputError(f"prompt {name}/{version}: labels must be one of {LABEL_SETS}")
    if CONVERSATION_SLOT not in body.partition(USER_MARKER)[2]:
        raise InputError(
            f"prompt {name}/{version}: needs a `{USER_MARKER}` line followed by a user template "
            f"containing {CONVERSATION_SLOT}"
        )
    identity = text
    spec = few_shot.spec_of(front, f"{name}/{version}")
    if spec is not None:
        chosen = few_shot.resolve(spec, f"{name}/{version}", base)
        front["few_shot"] = chosen.model_dump()
        # The examples shape every reply: which ones, and how they read, make the version.
        identity += f"\n<!-- few-shot {json.dumps(chosen.ids)} -->\n{chosen.examples}"
    if "tasks" in front:
        # The task categories the model chooses from are part of the version: an edited list
        # (a study's own tasks.yaml) is a new version.
        listed = _task_list(front["tasks"], f"{name}/{version}", base)
        front["tasks"] = listed.to_front_matter()
        identity += f"\n<!-- tasks -->\n{tasks.render_categories(listed)}"
    return PromptVersion(
        id=prompt_id(identity),
        name=str(front.get("name", name)),
        version=str(front.get("version", version)),
        text=text,
        front_matter=front,
    )


def _task_list(spec: Any, where: str, base: Path | None) -> tasks.TaskList:
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(f"prompt {where}: `tasks:` names the task list file (tasks.yaml)")
    return tasks.load_task_list(tasks.find_task_file(spec.strip(), base))


def read_prompt_file(path: Path, root: Path | None = None) -> PromptVersion:
    """Load one file; its name is its folder under `root` (prompts/values/v1.md -> values, v1)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read prompt {path}: {exc}") from exc
    name = path.parent.name if root is None or path.parent != root else DEFAULT_NAME
    return parse_prompt(text, name=name, version=path.stem, base=path.parent)


def _version_key(p: PromptVersion) -> tuple[str, int, str]:
    number = _VERSION_NUMBER.search(p.version)
    return (p.name, int(number.group(1)) if number else -1, p.version)


def prompt_files(directory: Path | None = None) -> list[PromptVersion]:
    """Every prompt under `directory` (default `prompts/`), ordered by name then version number."""
    root = Path(directory or config.prompts_dir())
    if not root.exists():
        return []
    found = []
    for path in sorted(root.rglob("*.md")):
        if path.name.startswith(("_", ".")) or path.name.lower() == "readme.md":
            continue
        prompt = read_prompt_file(path, root)
        # A copied file whose front matter still names the old version would shadow it.
        if prompt.version != path.stem:
            raise InputError(
                f"{path}: front matter says version {prompt.version!r} but the file is "
                f"{path.name}; make them agree"
            )
        found.append(prompt)
    return sorted(found, key=_version_key)


MIN_PREFIX = 4  # a shorter id prefix matches too much by chance to be taken as meant
SHOWN_CANDIDATES = 8  # an error names at most this many versions
BASELINE_PREFIX = "baseline-"  # the baseline's ids; its short form drops it ("· 3d7a1c")


def resolve_prompt(
    ref: str | Path | None = None,
    directory: Path | None = None,
    db: sqlite_utils.Database | None = None,
    *,
    used: bool = False,
) -> PromptVersion:
    """The one prompt resolver, for every command that takes `--prompt`.

    `ref` is a full id, a unique id prefix of at least MIN_PREFIX characters as printed anywhere
    (`baseline-3d7`, or the short `3d7a1c` after "offline baseline v1 ·"), `name/version` or
    `name@version` (a bare version means the `values` prompt), or a `.md` file. None means the
    newest version of `values` on disk. Candidates are the files under `directory` (default:
    `config.prompts_dir()`) and the versions the study `db` has recorded; with `used`, only
    versions with extractions in the study (what `push` and `agreement` can select). An unknown
    or ambiguous reference is an InputError of one line naming the candidates.
    """
    if ref is None:
        return _newest_default(directory)
    text = str(ref).strip()
    if text.endswith(".md"):
        return _prompt_file(text, directory, db if used else None)
    pool = _used_versions(db) if used else _all_versions(directory, db)
    found = _match(text, pool)
    if found is not None:
        return found
    if used:
        _not_used(text, directory, db, pool)
        raise InputError(f"no prompt {text!r} among the versions used in this study: "
                         f"{_listing(pool)}")
    raise InputError(f"no prompt {text!r}{_guess(text, pool)}; known: {_listing(pool)}")


def load_prompt(
    ref: str | Path | None = None,
    directory: Path | None = None,
    db: sqlite_utils.Database | None = None,
) -> PromptVersion:
    """A prompt version to run (`resolve_prompt` against files and the study's versions)."""
    return resolve_prompt(ref, directory, db)


def resolve_used_ids(
    db: sqlite_utils.Database, refs: list[str] | None
) -> list[str] | None:
    """Ids of the study's used prompt versions named by `refs` (`resolve_prompt`); None: all."""
    if not refs:
        return None
    return list(dict.fromkeys(resolve_prompt(ref, db=db, used=True).id for ref in refs))


def _newest_default(directory: Path | None) -> PromptVersion:
    available = prompt_files(directory)
    named = [p for p in available if p.name == DEFAULT_NAME] or available
    if not named:
        raise InputError(f"no prompt files under {directory or config.prompts_dir()}")
    return named[-1]


def _prompt_file(
    text: str, directory: Path | None, used_in: sqlite_utils.Database | None
) -> PromptVersion:
    """A prompt given as a file; with `used_in`, it must have extractions in that study."""
    path = Path(text).expanduser()
    if not path.is_file():
        raise InputError(f"no prompt file {text!r}")
    prompt = read_prompt_file(path.resolve(), Path(directory or config.prompts_dir()).resolve())
    if used_in is not None and prompt.id not in {p.id for p in _used_versions(used_in)}:
        raise InputError(f"prompt file {text!r} ({_label(prompt)}) has no extractions in this "
                         f"study; used: {_listing(_used_versions(used_in))}")
    return prompt


def _match(text: str, pool: list[PromptVersion]) -> PromptVersion | None:
    """By exact id, then `name/version`, then unique id prefix; None when nothing matches."""
    for p in pool:
        if p.id == text:
            return p
    name, sep, version = text.replace("@", "/").rpartition("/")
    if not sep:
        name, version = DEFAULT_NAME, text
    named = [p for p in pool if (p.name, p.version) == (name, version)]
    if named:
        return _one(text, named)
    prefixed = [p for p in pool
                if p.id.startswith(text) or p.id.removeprefix(BASELINE_PREFIX).startswith(text)]
    if prefixed and len(text) < MIN_PREFIX:
        raise InputError(f"prompt {text!r} is too short to be an id prefix: give at least "
                         f"{MIN_PREFIX} characters of one of {_listing(prefixed)}")
    return _one(text, prefixed) if prefixed else None


def _one(text: str, hits: list[PromptVersion]) -> PromptVersion:
    if len(hits) > 1:
        # e.g. a file edited after use: the edit and the used version share a name/version
        raise InputError(f"prompt {text!r} is ambiguous, it names {len(hits)} versions: "
                         f"{_listing(hits)}; give more of the id")
    return hits[0]


def _all_versions(
    directory: Path | None, db: sqlite_utils.Database | None
) -> list[PromptVersion]:
    """Prompt files, then versions only the study knows (recorded, or bare ids in extractions)."""
    pool = list(prompt_files(directory))
    known = {p.id for p in pool}
    if db is not None and "prompts" in db.table_names():
        pool += [row_to_prompt(r) for r in db["prompts"].rows if r["id"] not in known]
    return pool + [p for p in _used_versions(db) if p.id not in {q.id for q in pool}]


def _used_versions(db: sqlite_utils.Database | None) -> list[PromptVersion]:
    """Versions with extractions in the study, described by their `prompts` row where there
    is one (older or hand-made studies may hold ids without one)."""
    if db is None or "extractions" not in db.table_names():
        return []
    ids = [pid for (pid,) in db.execute("select distinct prompt_id from extractions order by 1")]
    recorded = ({r["id"]: row_to_prompt(r) for r in db["prompts"].rows}
                if "prompts" in db.table_names() else {})
    return [recorded.get(pid) or PromptVersion(id=pid, name="", version="", text="")
            for pid in ids]


def _not_used(
    text: str, directory: Path | None, db: sqlite_utils.Database | None,
    used: list[PromptVersion],
) -> None:
    """Raise the clearer error when `text` names a version that exists but was never run."""
    try:
        other = _match(text, _all_versions(directory, db))
    except InputError:
        other = None  # a bad prompt folder or an ambiguity there: the study's answer stands
    if other is not None:
        raise InputError(f"prompt {text!r} ({_label(other)}) has no extractions in this study; "
                         f"used: {_listing(used)}")


def _label(p: PromptVersion) -> str:
    return f"{p.name}/{p.version} {p.id}" if p.name else p.id


def _guess(text: str, pool: list[PromptVersion]) -> str:
    """"; did you mean values/v2 ?" for a mistyped name/version or id, else ""."""
    names = {f"{p.name}/{p.version}": p for p in pool if p.name} | {p.id: p for p in pool}
    close = difflib.get_close_matches(text.replace("@", "/"), list(names), n=1, cutoff=0.75)
    return f"; did you mean {close[0]} ?" if close else ""


def _listing(pool: list[PromptVersion]) -> str:
    shown = ", ".join(_label(p) for p in pool[:SHOWN_CANDIDATES]) or "none"
    more = len(pool) - SHOWN_CANDIDATES
    return shown + (f" and {more} more (`annotator prompts`)" if more > 0 else "")


# --- rendering ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    """The two parts sent to a model: the static system prompt and this conversation's turn."""

    system: str
    user: str


def body_parts(prompt: PromptVersion) -> tuple[str, str]:
    """(system text, user template) of a prompt version; few-shot examples go where the system
    text has `{examples}`, else at its end (static: cached with the rest)."""
    system, user = _body_parts(prompt.text)
    examples = (prompt.front_matter.get("few_shot") or {}).get("examples")
    if examples:
        if few_shot.EXAMPLES_SLOT in system:
            system = system.replace(few_shot.EXAMPLES_SLOT, examples)
        else:
            system = f"{system}\n\n{examples}"
    listed = tasks.from_front_matter(prompt.front_matter)
    if listed is not None:
        system = system.replace(tasks.TASKS_SLOT, tasks.render_categories(listed))
    return system, user


@lru_cache(maxsize=64)
def _body_parts(text: str) -> tuple[str, str]:
    # Cached: rendering runs once per conversation, the YAML parse only once per version.
    _, body = split_front_matter(text)
    system, _, user = body.partition(USER_MARKER)
    return system.strip(), user.strip()


def render_conversation(conversation: Conversation) -> str:
    """Turns as tagged blocks, numbered so evidence quotes can be traced to a turn."""
    return few_shot.render_turns(conversation.turns)


def render(prompt: PromptVersion, conversation: Conversation) -> Rendered:
    system, template = body_parts(prompt)
    return Rendered(
        system=system,
        user=template.replace(CONVERSATION_SLOT, render_conversation(conversation)),
    )


# --- the study database ----------------------------------------------------------------------


def few_shot_ids(prompt: PromptVersion) -> frozenset[str]:
    """The conversations a version shows as few-shot examples: never scored for it."""
    return frozenset((prompt.front_matter.get("few_shot") or {}).get("ids") or ())


def few_shot_map(db: sqlite_utils.Database) -> dict[str, frozenset[str]]:
    """`few_shot_ids` of each version the study recorded that has examples, by prompt id."""
    if "prompts" not in db.table_names():
        return {}
    versions = (row_to_prompt(r) for r in db["prompts"].rows)
    return {p.id: ids for p in versions if (ids := few_shot_ids(p))}


def record_prompt(db: sqlite_utils.Database, prompt: PromptVersion) -> None:
    """Store a version the first time it is used (its first-used time is kept thereafter)."""
    db["prompts"].insert(prompt_to_row(prompt), pk="id", ignore=True)


def prompts(
    db_path: str | Path | None = None, directory: Path | None = None
) -> list[dict[str, Any]]:
    """Every prompt version: on disk and/or used in the study database, newest use last.

    Rows: name, version, id, model, first used (None if never), where: `file`, `file+db`
    (used), `builtin` (the baseline's rules) or `db` (its file was edited or removed after use).
    """
    rows: dict[str, dict[str, Any]] = {}
    for p in prompt_files(directory):
        rows[p.id] = _listing_row(p, None, "file")
    path = Path(db_path) if db_path is not None else None
    if path is not None and path.exists():
        db = open_existing_db(path)  # listing must not turn an empty file into a study
        for r in db["prompts"].rows:
            if r["id"] in rows:
                rows[r["id"]]["first_used"] = r["first_used_at"]
                rows[r["id"]]["where"] = "file+db"
            else:
                front = loads(r["front_matter"], {})
                rows[r["id"]] = {
                    "name": r["name"],
                    "version": r["version"],
                    "id": r["id"],
                    "model": front.get("model"),
                    "first_used": r["first_used_at"],
                    # The baseline's rules are versioned like a prompt but live in code.
                    "where": "builtin" if front.get("extractor") == "baseline" else "db",
                }
    return sorted(rows.values(), key=lambda r: (r["name"], str(r["version"]), r["id"]))


def _listing_row(p: PromptVersion, first_used: str | None, where: str) -> dict[str, Any]:
    return {
        "name": p.name,
        "version": p.version,
        "id": p.id,
        "model": p.front_matter.get("model"),
        "first_used": first_used,
        "where": where,
    }
