"""How a value is stored in a TEXT column as JSON, and read back.

Its own module, without SQLite, so that ingest's worker processes (spawned, each importing what
it needs) can encode rows without importing `sqlite_utils`, which imports pandas and numpy.
"""

from __future__ import annotations

from typing import Any

import orjson


def dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def loads(text: str | None, default: Any = None) -> Any:
    return default if text in (None, "") else orjson.loads(text)
