"""Review: reviewers correct the proposals in Label Studio.

- `interface`: the labeling interface, task payloads and results (no network).
- `server`: a study's local Label Studio (install, start, stop, status).
- `instances`: isolated review, one Label Studio instance per reviewer; links to tasks.
- `sync`: the connection to a Label Studio (the only `label_studio_sdk` importer): client,
  errors, projects, reviewers (`add_user`).
- `push`: tasks with the model's predictions; `pull`: annotations back, each under its source.
- `demo_serve`: `annotator demo --serve`, every server of the demo started and stopped together.
"""
