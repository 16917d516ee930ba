"""Reading gold files (`gold/*.jsonl`: one conversation a line, with each annotator's labels and
the gold label; the format is `gold/README.md`'s). A line that does not validate is reported
with its line number, never dropped. Reading only: `datasets.gold` brings them into a study.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from pydantic import ValidationError

from annotator.errors import InputError
from annotator.models import GoldRecord, RejectedRecord


def read_gold(path: Path) -> Iterator[GoldRecord | RejectedRecord]:
    """Records of one gold file; a line that does not validate is reported, not dropped."""
    for _, record in numbered_records(path):
        yield record


def numbered_records(path: Path) -> Iterator[tuple[int, GoldRecord | RejectedRecord]]:
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield line_no, GoldRecord.model_validate_json(line)
            except ValidationError as exc:
                reason = "; ".join(
                    f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3]
                )
                yield line_no, RejectedRecord(file=str(path), line=line_no, reason=reason)


def gold_files(paths: Iterable[str | Path]) -> list[Path]:
    """The JSONL files named, folders expanded to their `*.jsonl` files in name order."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(p.glob("*.jsonl")))
        elif p.exists():
            files.append(p)
        else:
            raise InputError(f"{p}: no such file or folder")
    if not files:
        raise InputError("no gold *.jsonl files found")
    return files
