"""Versioned extraction prompts: load `prompts/`, a version's id is a hash of its content, render.

A prompt file is YAML front matter (model, temperature, max_tokens, output) and a body. The body
is the static system prompt; the part after a line `<!-- user -->` is the user-turn template, in
which `{conversation}` is replaced by the rendered conversation. Everything static comes first so
that prompt caching applies to it; only the user turn differs between conversations.

A version's id is a hash of the whole file, so any edit is a new version; a used version is
never edited (DESIGN.md): a change is a new file (`v2.md`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import sqlite_utils
import yaml

from . import config
from .db import loads, open_existing_db, prompt_to_row, row_to_prompt
from .errors import InputError
from .models import Conversation, PromptVersion

DEFAULT_NAME = "values"
USER_MARKER = "<!-- user -->"
CONVERSATION_SLOT = "{conversation}"
REQUIRED_FRONT_MATTER = ("model", "max_tokens")
OUTPUT_MODES = ("tool", "json")
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


def parse_prompt(text: str, name: str, version: str) -> PromptVersion:
    """A PromptVersion from file content; checks the front matter a run needs."""
    front, body = split_front_matter(text)
    missing = [k for k in REQUIRED_FRONT_MATTER if k not in front]
    if missing:
        raise InputError(f"prompt {name}/{version}: front matter lacks {', '.join(missing)}")
    output = front.setdefault("output", "tool")
    if output not in OUTPUT_MODES:
        raise InputError(f"prompt {name}/{version}: output must be one of {OUTPUT_MODES}")
    if CONVERSATION_SLOT not in body.partition(USER_MARKER)[2]:
        raise InputError(
            f"prompt {name}/{version}: needs a `{USER_MARKER}` line followed by a user template "
            f"containing {CONVERSATION_SLOT}"
        )
    return PromptVersion(
        id=prompt_id(text),
        name=str(front.get("name", name)),
        version=str(front.get("version", version)),
        text=text,
        front_matter=front,
    )


def read_prompt_file(path: Path, root: Path | None = None) -> PromptVersion:
    """Load one file; its name is its folder under `root` (prompts/values/v1.md -> values, v1)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read prompt {path}: {exc}") from exc
    name = path.parent.name if root is None or path.parent != root else DEFAULT_NAME
    return parse_prompt(text, name=name, version=path.stem)


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


def load_prompt(
    ref: str | Path | None = None,
    directory: Path | None = None,
    db: sqlite_utils.Database | None = None,
) -> PromptVersion:
    """Find a prompt version by file path, `name/version`, `name@version`, version, or id prefix.

    None means the latest version of the `values` prompt. A version no longer on disk (its file
    was edited or removed) is still found by id in the study database, if one is given.
    """
    if ref is not None and Path(ref).suffix == ".md" and Path(ref).is_file():
        return read_prompt_file(Path(ref).resolve(), Path(directory or config.prompts_dir()))
    available = prompt_files(directory)
    if ref is None:
        named = [p for p in available if p.name == DEFAULT_NAME] or available
        if not named:
            raise InputError(f"no prompt files under {directory or config.prompts_dir()}")
        return named[-1]
    text = str(ref).strip()
    name, sep, version = text.replace("@", "/").rpartition("/")
    if not sep:
        name, version = DEFAULT_NAME, text
    for p in available:
        if (p.name, p.version) == (name, version):
            return p
    by_id = [p for p in available if p.id.startswith(text)]
    if db is not None and "prompts" in db.table_names():
        known = {p.id for p in available}
        by_id += [
            row_to_prompt(r)
            for r in db["prompts"].rows_where("id like ?", [text + "%"])
            if r["id"] not in known
        ]
    if len(by_id) == 1 and len(text) >= 4:
        return by_id[0]
    if len(by_id) > 1:
        raise InputError(f"prompt id prefix {text!r} is ambiguous: {[p.id for p in by_id]}")
    choices = ", ".join(f"{p.name}/{p.version} ({p.id})" for p in available) or "none"
    raise InputError(f"no prompt {text!r}; available: {choices}")


# --- rendering ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    """The two parts sent to a model: the static system prompt and this conversation's turn."""

    system: str
    user: str


def body_parts(prompt: PromptVersion) -> tuple[str, str]:
    """(system text, user template) of a prompt version."""
    return _body_parts(prompt.text)


@lru_cache(maxsize=64)
def _body_parts(text: str) -> tuple[str, str]:
    # Cached: rendering runs once per conversation, the YAML parse only once per version.
    _, body = split_front_matter(text)
    system, _, user = body.partition(USER_MARKER)
    return system.strip(), user.strip()


def render_conversation(conversation: Conversation) -> str:
    """Turns as tagged blocks, numbered so evidence quotes can be traced to a turn."""
    lines = ["<conversation>"]
    for i, turn in enumerate(conversation.turns, start=1):
        lines.append(f'<turn index="{i}" role="{turn.role.value}">')
        lines.append(turn.text.strip())
        lines.append("</turn>")
    lines.append("</conversation>")
    return "\n".join(lines)


def render(prompt: PromptVersion, conversation: Conversation) -> Rendered:
    system, template = body_parts(prompt)
    return Rendered(
        system=system,
        user=template.replace(CONVERSATION_SLOT, render_conversation(conversation)),
    )


# --- the study database ----------------------------------------------------------------------


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
