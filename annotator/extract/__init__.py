"""Extract: a model (or the offline baseline) proposes each conversation's labels.

- `prompts`: versioned prompts from `prompts/` (`resolve_prompt`, id = hash of content).
- `engine`: `extract(db, ...)`, cached, resumable, concurrent or batched, priced.
- `extractors`, `claude`, `baseline`: the extractor interface and its two implementations
  (`claude` is the only importer of `anthropic`).
- `ledger`, `pricing`: every paid call recorded before it is sent, and what it costs.
- `few_shot`: examples drawn from a gold file for prompts that ask for them.
"""
