from annotator.cli.main import app

app(prog_name="annotator")
