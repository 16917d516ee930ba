from annotator.cli import app

app(prog_name="annotator")
