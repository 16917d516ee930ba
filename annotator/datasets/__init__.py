"""Datasets: gold and its decisions, labels brought in, and validated data sent out.

- `gold`: gold files, adjudication by majority, a person's decision, writing gold back.
- `import_labels`: labels made outside Label Studio read into the study.
- `show`: everything the study knows about one conversation (`annotator show`).
- `export`, `writers`, `card`: which records an export holds, each format's writer, the card;
  `records` their shapes, `proposals` the model's proposals, `values` a value as written.
- `plain`: stored labels, votes and gold read as tuples, for `export` and `adjudicate`.
- `halves`: a large study read in two halves at once, by `export` and `adjudicate`.
"""
