"""Review: reviewers correct the proposals in Label Studio.

- `interface`: the labeling interface, task payloads and results (no network).
- `server`: a study's local Label Studio (install, start, stop, status).
- `instances`: isolated review, one Label Studio instance per reviewer.
- `sync`: `push` tasks with predictions and `pull` annotations (the only `label_studio_sdk`
  importer).
- `demo_serve`: `annotator demo --serve`, every server of the demo started and stopped together.
"""
