"""Measure: agreement between people and between a model and people, and the study's findings.

- `agreement`: the statistics (alpha, kappas, AC1, F1, Jaccard, bootstrap), pure functions.
- `frames`: read-only queries over a study as rows and DataFrames.
- `summaries`: the tables the app and `eval` show, composed from `agreement`.
- `findings`: the study's findings beside the published study (`annotator report`).
- `evaluation`, `eval_metrics`: a prompt version scored against gold, as a gate (`annotator eval`).
"""
