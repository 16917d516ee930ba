"""The task categories: what a conversation is for (its primary purpose), a fixed, editable list.

The study reads values by task: which values come up disproportionately in coding, in advice,
in creative work. Each conversation gets a task: a short description and one category from the
list in `prompts/tasks.yaml` (or a study's own `tasks.yaml` in its `--prompts DIR`). The list
is the one place categories are named: the prompt version that renders it (front matter
`tasks: tasks.yaml`), the model's reply schema, the offline baseline's keyword rule, the Label
Studio form, import-labels and gold files all read it. A bad list is an `InputError` of one line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from annotator import config
from annotator.errors import InputError

FILE_NAME = "tasks.yaml"
DEFAULT_FALLBACK = "other"
MAX_NAME = 60
MAX_DESCRIPTION = 200
TASKS_SLOT = "{tasks}"  # where a prompt's system text lists the categories


@dataclass(frozen=True)
class TaskCategory:
    name: str
    description: str
    keywords: tuple[str, ...] = ()


@dataclass(frozen=True)
class TaskList:
    """The categories in the list's order, the fallback among them, and where they came from."""

    categories: tuple[TaskCategory, ...]
    fallback: str
    source: str = ""

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.categories]

    def category(self, name: str | None) -> str | None:
        """The list's spelling of `name` (case and spacing ignored), None if it is not one."""
        if name is None:
            return None
        key = " ".join(str(name).lower().replace("_", " ").split())
        return next((c.name for c in self.categories if c.name == key), None)

    def require(self, name: str | None) -> str | None:
        """`category(name)`, or an InputError naming the categories; None and "" stay None."""
        if name is None or not str(name).strip():
            return None
        found = self.category(name)
        if found is None:
            raise InputError(f"task {str(name)[:80]!r} is not one of the task categories: "
                             f"{', '.join(self.names)} ({self.source})")
        return found

    def to_front_matter(self) -> dict[str, Any]:
        """What a prompt version records of the list: names, descriptions and the fallback."""
        return {
            "file": self.source,
            "fallback": self.fallback,
            "categories": [{"name": c.name, "description": c.description}
                           for c in self.categories],
        }


def _fail(where: str, why: str) -> InputError:
    return InputError(f"task categories {where}: {why}")


def parse_task_list(text: str, where: str = FILE_NAME) -> TaskList:
    """A TaskList from YAML text (`prompts/tasks.yaml`'s shape); a bad list raises one line."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = " ".join(str(exc).split())[:160]
        raise _fail(where, f"not valid YAML ({first})") from None
    if not isinstance(data, dict) or not isinstance(data.get("categories"), list):
        raise _fail(where, "needs a mapping with a `categories:` list")
    categories: list[TaskCategory] = []
    for index, item in enumerate(data["categories"], start=1):
        categories.append(_category(item, f"{where}, category {index}"))
    if len(categories) < 2:
        raise _fail(where, "needs at least two categories")
    names = [c.name for c in categories]
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        raise _fail(where, f"category {doubled[0]!r} is listed twice")
    fallback = " ".join(str(data.get("fallback") or DEFAULT_FALLBACK).lower().split())
    if fallback not in names:
        raise _fail(where, f"fallback {fallback!r} is not one of the categories")
    return TaskList(categories=tuple(categories), fallback=fallback, source=where)


def _category(item: Any, where: str) -> TaskCategory:
    if not isinstance(item, dict):
        raise InputError(f"task categories {where}: needs `name` and `description`")
    name = " ".join(str(item.get("name") or "").lower().split())
    description = " ".join(str(item.get("description") or "").split())
    if not name or not description:
        raise InputError(f"task categories {where}: needs a `name` and a `description`")
    if len(name) > MAX_NAME or not re.fullmatch(r"[a-z0-9][a-z0-9 &/'-]*", name):
        raise InputError(f"task categories {where}: name {name[:80]!r} must be at most "
                         f"{MAX_NAME} lower-case letters, digits, spaces or &/'-")
    if len(description) > MAX_DESCRIPTION:
        raise InputError(f"task categories {where}: the description of {name!r} is over "
                         f"{MAX_DESCRIPTION} characters")
    keywords = item.get("keywords") or []
    if not isinstance(keywords, list) or not all(isinstance(k, str) for k in keywords):
        raise InputError(f"task categories {where}: keywords of {name!r} must be a list of "
                         "words")
    words = tuple(dict.fromkeys(" ".join(k.lower().split()) for k in keywords if k.strip()))
    return TaskCategory(name=name, description=description, keywords=words)


def task_list_path(directory: Path | None = None) -> Path:
    """The list a study uses: `tasks.yaml` in its prompts folder (`--prompts DIR`), else the
    shipped one (a study's folder may hold prompts only)."""
    folder = Path(directory or config.prompts_dir())
    own = folder / FILE_NAME
    return own if own.exists() else config.default_prompts_dir() / FILE_NAME


def find_task_file(name: str, base: Path | None) -> Path:
    """A prompt's `tasks:` file: beside the prompt, in the folder above (the prompts root),
    then the study's prompts folder or the shipped one."""
    path = Path(name).expanduser()
    if path.is_absolute():
        return path
    for folder in ([base, base.parent] if base is not None else []):
        if (folder / path).is_file():
            return folder / path
    return task_list_path() if path.name == FILE_NAME else config.prompts_dir() / path


def load_task_list(path: Path | None = None) -> TaskList:
    """The task list at `path` (default: `task_list_path()`)."""
    target = Path(path) if path is not None else task_list_path()
    try:
        text = target.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read the task categories {target}: {exc.strerror}") from None
    return _parsed(text, str(target))


@lru_cache(maxsize=16)
def _parsed(text: str, where: str) -> TaskList:
    return parse_task_list(text, where)


def from_front_matter(front: dict[str, Any]) -> TaskList | None:
    """The list a prompt version recorded (its front matter's `tasks`), None if it has none."""
    data = front.get("tasks")
    if not isinstance(data, dict) or not data.get("categories"):
        return None
    categories = tuple(TaskCategory(name=c["name"], description=c["description"])
                       for c in data["categories"])
    return TaskList(categories=categories, fallback=data.get("fallback", DEFAULT_FALLBACK),
                    source=str(data.get("file") or ""))


def render_categories(tasks: TaskList) -> str:
    """The list as a prompt shows it: one `- name: description` line per category."""
    return "\n".join(f"- {c.name}: {c.description}" for c in tasks.categories)


# --- the offline rule --------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _keyword_re(keywords: tuple[str, ...]) -> re.Pattern[str] | None:
    if not keywords:
        return None
    alternatives = sorted(keywords, key=len, reverse=True)
    body = "|".join(r"\s+".join(map(re.escape, k.split())) for k in alternatives)
    return re.compile(rf"(?<![\w'’-])(?:{body})(?![\w'’-])", re.IGNORECASE)


def keyword_hits(text: str, category: TaskCategory) -> int:
    """How many times the category's keywords occur in `text`, as whole words."""
    pattern = _keyword_re(category.keywords)
    return 0 if pattern is None else sum(1 for _ in pattern.finditer(text))


def classify(user_text: str, tasks: TaskList, assistant_text: str = "") -> str:
    """The category whose keywords occur most often, as whole words: the user's words count
    twice (the request says what the conversation is for), the assistant's once; ties go to
    the earlier category in the list; nothing found: the fallback."""
    best, best_score = tasks.fallback, 0
    for category in tasks.categories:
        score = 2 * keyword_hits(user_text, category) + keyword_hits(assistant_text, category)
        if score > best_score:
            best, best_score = category.name, score
    return best


def describe(user_text: str, limit: int = 80) -> str:
    """A short task description from the user's first words (the baseline's, and fakes')."""
    words = " ".join(user_text.split())
    return words if len(words) <= limit else words[: limit - 1].rstrip() + "\u2026"


def ordered(names: Iterable[str], tasks: TaskList | None) -> list[str]:
    """Category names in the list's order, any not in the list after them, by name."""
    order = {n: i for i, n in enumerate(tasks.names)} if tasks else {}
    return sorted(set(names), key=lambda n: (order.get(n, len(order)), n))


__all__: Sequence[str] = (
    "FILE_NAME", "TASKS_SLOT", "TaskCategory", "TaskList", "classify", "describe",
    "find_task_file", "from_front_matter", "keyword_hits", "load_task_list", "ordered",
    "parse_task_list", "render_categories", "task_list_path",
)
