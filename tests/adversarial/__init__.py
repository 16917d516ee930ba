"""An adversarial ingest corpus, written on demand so no large or odd file is committed.

`build_corpus(folder)` writes files with byte order marks, CRLF and CR-only line ends, metadata
nested hundreds of levels deep, records over the size limit (inside a chunk and longer than
one), CSV fields over Python's 131,072-character default, broken CSV quoting, hostile file names
and markup in data; it returns, per file, the external ids that must land and the lines that
must be rejected (with a piece of each reason). `gzip_of_repeats` writes a small gzip that
inflates to gigabytes (one endless line, a sea of newlines) without compressing them here.
"""

from __future__ import annotations

import gzip
import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

BOM = b"\xef\xbb\xbf"
LIMIT = 1 << 20  # --max-record-bytes for the corpus: small, so huge records stay cheap
MARKUP = "[link=https://evil.example]click[/link] [bold]x[/] [/]"


@dataclass
class Expected:
    """What ingesting one corpus file must give."""

    path: Path
    landed: set[str] = field(default_factory=set)  # external ids
    rejected: dict[int, str] = field(default_factory=dict)  # line -> part of the reason


def chat(ext_id: str, text: str = "", **extra: object) -> dict:
    return {
        "id": ext_id,
        "messages": [
            {"role": "user", "content": f"question {ext_id} {text}"},
            {"role": "assistant", "content": f"answer to {ext_id}"},
        ],
        **extra,
    }


def line(obj: object) -> bytes:
    return json.dumps(obj).encode()


def nested(depth: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(depth):
        value = {"x": value}
    return value


def _jsonl(folder: Path, name: str, lines: list[bytes], end: bytes = b"\n") -> Path:
    path = folder / name
    path.write_bytes(end.join(lines) + end)
    return path


def build_corpus(folder: Path) -> list[Expected]:
    folder.mkdir(parents=True, exist_ok=True)
    out: list[Expected] = []

    # Byte order mark before the first record; CRLF line ends; blank CRLF lines.
    path = _jsonl(folder, "bom_crlf.jsonl",
                  [BOM + line(chat("bom-1")), b"", line(chat("bom-2"))], b"\r\n")  # fmt: skip
    out.append(Expected(path, {"bom-1", "bom-2"}))

    # CR-only line ends (classic Mac), a malformed line among them, no final line end.
    path = folder / "cr_only.jsonl"
    path.write_bytes(b"\r".join([line(chat("cr-1")), line(chat("cr-2")), b"{broken",
                                 line(chat("cr-4"))]))  # fmt: skip
    out.append(Expected(path, {"cr-1", "cr-4", "cr-2"}, {3: "malformed JSON"}))

    # Metadata 300 levels deep (past orjson's 255 for writing), and 2,000 (past its reading).
    deep_2000 = b'{"messages": [], "m": ' + b"[" * 2000 + b"]" * 2000 + b"}"
    path = _jsonl(folder, "deep.jsonl", [
        line(chat("deep-1")), line(chat("deep-2", meta=nested(300))), deep_2000,
        line(chat("deep-4", meta=nested(40))),
    ])  # fmt: skip
    out.append(Expected(path, {"deep-1", "deep-4"},
                        {2: "nested deeper than", 3: "malformed JSON"}))  # fmt: skip

    # Records over the limit: one inside a chunk of lines, one longer than any chunk (3 MiB,
    # read past without being held), and the last line of the file over the limit too.
    for name, packed in (("huge.jsonl", False), ("huge_gz.jsonl.gz", True)):
        tag = name.split(".")[0]
        huge = [line(chat(f"{tag}-1")), line(chat(f"{tag}-2", "h" * (LIMIT + 10))),
                line(chat(f"{tag}-3")), line(chat(f"{tag}-4", "g" * (3 * LIMIT))),
                line(chat(f"{tag}-5")), line(chat(f"{tag}-6", "e" * (2 * LIMIT)))]  # fmt: skip
        data = b"\n".join(huge)
        path = folder / name
        path.write_bytes(gzip.compress(data, 1) if packed else data)
        out.append(Expected(path, {f"{tag}-1", f"{tag}-3", f"{tag}-5"},
                            {2: "over the limit", 4: "over the limit", 6: "over the limit"}))

    # Markup in data and in the file name: stored and reported as text, never rendered.
    path = _jsonl(folder, "[bold]hostile[blink] name.jsonl", [
        line(chat("markup-1", MARKUP, note=MARKUP)),
        line({"id": "markup-2", "messages": [{"role": "[/]", "content": "hi"}]}),
        line({"id": "markup-3", "messages": [{"role": MARKUP, "content": "hi"}]}),
    ])  # fmt: skip
    out.append(Expected(path, {"markup-1"}, {2: "unknown role '[/]'", 3: "unknown role"}))

    # CSV: a byte order mark before the header, CRLF, a field over Python's 131,072 default
    # limit (kept), a field over --max-record-bytes (its conversation rejected, naming it).
    big_ok, too_big = "b" * 200_000, "t" * (LIMIT + 10)
    rows = ["conversation_id,turn,role,text,lang", "csv-1,0,user,hello there,en",
            f'csv-1,1,assistant,"{big_ok}",en', "csv-2,0,user,next one,en",
            f'csv-2,1,assistant,"{too_big}",en', "csv-3,0,user,still here,fr",
            "csv-3,1,assistant,yes,fr"]  # fmt: skip
    path = folder / "bom_crlf_csv.csv"
    path.write_bytes(BOM + "\r\n".join(rows).encode() + b"\r\n")
    out.append(Expected(path, {"csv-1", "csv-3"},
                        {5: "over the limit", 4: "conversation csv-2"}))  # fmt: skip

    # CSV with CR-only line ends and a quoted field spanning lines.
    path = folder / "cr_only_csv.csv"
    path.write_bytes(b"conversation_id,turn,role,text\rcr-a,0,user,hi from a\r"
                     b'cr-a,1,assistant,"two\rlines"\rcr-b,0,user,hi from b\r')  # fmt: skip
    out.append(Expected(path, {"cr-a", "cr-b"}))

    # An unclosed quote: its row is rejected, its conversation too, the rows after it land.
    path = folder / "unclosed.csv"
    path.write_text("conversation_id,turn,role,text\nq-a,0,user,\"never closed\n"
                    "q-a,1,assistant,reply\nq-b,0,user,after the quote\n"
                    'q-b,1,assistant,"quoted, fine"\n')  # fmt: skip
    out.append(Expected(path, {"q-b"}, {2: "unclosed or stray quote", 3: "conversation q-a"}))

    # A plain-text transcript with a byte order mark and CR-only line ends.
    path = folder / "bom_cr.txt"
    path.write_bytes(BOM + b"Human: hello from a transcript\r\rAssistant: hi there\r")
    out.append(Expected(path, {"bom_cr"}))

    # A JSON document with a byte order mark: a deep item rejected, the others kept.
    path = folder / "bom_doc.json"
    path.write_bytes(BOM + json.dumps([chat("doc-1"), chat("doc-2", meta=nested(300)),
                                       chat("doc-3")]).encode())  # fmt: skip
    out.append(Expected(path, {"doc-1", "doc-3"}, {2: "nested deeper than"}))
    return out


def gzip_of_repeats(path: Path, head: bytes, block: bytes, repeats: int, tail: bytes) -> int:
    """Write a gzip of head + block * repeats + tail without compressing the repeats one by one:
    after a full flush deflate keeps no history, so each repeat compresses to the same bytes.
    Returns the size it inflates to."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    crc, size = zlib.crc32(head), len(head)
    with open(path, "wb") as out:
        out.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")  # gzip header, no name, no time
        out.write(deflate.compress(head) + deflate.flush(zlib.Z_FULL_FLUSH))
        piece = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
        for _ in range(repeats):
            out.write(piece)
            crc = zlib.crc32(block, crc)
        size += len(block) * repeats + len(tail)
        out.write(deflate.compress(tail) + deflate.flush())
        out.write(struct.pack("<II", zlib.crc32(tail, crc), size & 0xFFFFFFFF))
    return size
