"""Ingest: input files become the study's conversations, scrubbed of personal data first.

- `pipeline`: `ingest(db, paths, ...)` reads JSONL, JSON, CSV and transcripts (gzipped or not),
  names each bad record by file and line, and writes conversations under keyed ids.
- `privacy`: `scrub_text` and `scrub_turns`, what is replaced by which placeholder.
- `privacy_cues`: names after a cue and street addresses, found by the words around them.
"""
