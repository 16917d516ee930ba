"""One prompt resolver for every `--prompt`: `extract`, `push` and `agreement` each given an id
prefix as printed, a name/version, an unknown and an ambiguous reference.

The study is the offline demo (baseline ids look like `baseline-3d744443`; `demo` prints the
first 12 characters). An ambiguous used version is made by adding a second version whose id
shares that printed prefix; ambiguous files, by searching for two prompt texts whose hashes
share their first MIN_PREFIX characters.
"""

from __future__ import annotations

import json
import sqlite3

import pytest
from typer.testing import CliRunner

from annotator import config
from annotator.cli import app
from annotator.db import open_db
from annotator.errors import InputError
from annotator.extract.prompts import MIN_PREFIX, prompt_id, resolve_prompt
from annotator.review import push

runner = CliRunner()
V1 = config.default_prompts_dir() / "values" / "v1.md"


@pytest.fixture(scope="module")
def demo_study(tmp_path_factory):
    db = tmp_path_factory.mktemp("refs") / "demo.db"
    result = runner.invoke(app, ["demo", "--db", str(db)], env={"ANTHROPIC_API_KEY": ""})
    assert result.exit_code == 0, result.output
    return db


@pytest.fixture
def study(demo_study, tmp_path, monkeypatch):
    """A copy of the demo study; (path, the baseline's id). No Label Studio is configured."""
    for name in ("LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "ANNOTATOR_PROMPTS_DIR"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "study.db"
    with sqlite3.connect(demo_study) as source, sqlite3.connect(path) as target:
        source.backup(target)  # the study is in WAL mode: a file copy could miss its writes
    with sqlite3.connect(path) as conn:
        (baseline,) = conn.execute("select distinct prompt_id from extractions").fetchone()
    assert baseline.startswith("baseline-")
    return path, baseline


def add_twin(path, baseline: str) -> str:
    """A second used version whose id starts with the same 12 characters `demo` prints."""
    twin = baseline[:12] + ("0000" if not baseline.endswith("0000") else "1111")
    with sqlite3.connect(path) as conn:
        conn.execute("insert into prompts select ?, name, 'v0', text, front_matter, "
                     "first_used_at from prompts where id = ?", (twin, baseline))
        conn.execute("create temp table e as select * from extractions where prompt_id = ? "
                     "limit 3", (baseline,))
        conn.execute("update e set prompt_id = ?", (twin,))
        conn.execute("insert into extractions select * from e")
    return twin


def cli(*args: str, env: dict | None = None):
    result = runner.invoke(app, list(args), env=env)
    assert "Traceback" not in result.output
    return result


def one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(" ".join(lines).split("error:")) == 2, result.output  # one error, no trace
    return " ".join(" ".join(lines).split())


# --- agreement -----------------------------------------------------------------------------------


def test_agreement_takes_a_printed_prefix_and_a_name_version(study):
    path, baseline = study
    for ref in (baseline[:12], "baseline/v2", "baseline@v2", baseline):
        result = cli("agreement", "--db", str(path), "--prompt", ref, "--boot", "0", "--json")
        assert result.exit_code == 0, (ref, result.output)
        data = json.loads(result.output)
        assert data["prompt_ids"] == [baseline], ref
        assert any(r["scope"].startswith(f"model {baseline}") for r in data["rows"]), ref


def test_agreement_with_an_unknown_prompt_is_an_error_naming_the_used_versions(study):
    path, baseline = study
    message = one_error_line(cli("agreement", "--db", str(path), "--prompt", "nosuch"))
    assert "no prompt 'nosuch'" in message and baseline in message
    # a version on disk that this study never ran: said so, not an empty table
    message = one_error_line(cli("agreement", "--db", str(path), "--prompt", "values/v1"))
    assert "has no extractions in this study" in message and baseline in message


def test_agreement_with_an_ambiguous_prefix_names_both_versions(study):
    path, baseline = study
    twin = add_twin(path, baseline)
    message = one_error_line(cli("agreement", "--db", str(path), "--prompt", baseline[:12]))
    assert "ambiguous" in message and baseline in message and twin in message
    result = cli("agreement", "--db", str(path), "--prompt", baseline, "--boot", "0", "--json")
    assert result.exit_code == 0 and json.loads(result.output)["prompt_ids"] == [baseline]


# --- push (no Label Studio: a resolved reference gets as far as connecting) ----------------------


def test_push_resolves_a_prefix_and_a_name_version_before_connecting(study):
    path, baseline = study
    database = open_db(path)
    assert push.resolve_prompt(database, baseline[:12]) == baseline
    assert push.resolve_prompt(database, "baseline/v2") == baseline
    assert push.resolve_prompt(database, baseline.removeprefix("baseline-")[:6]) == baseline
    database.conn.close()
    for ref in (baseline[:12], "baseline/v2"):
        message = one_error_line(cli("push", "--db", str(path), "--prompt", ref))
        assert "Label Studio is not running" in message and "prompt" not in message, message


def test_push_with_an_unknown_or_ambiguous_prompt_fails_before_connecting(study):
    path, baseline = study
    message = one_error_line(cli("push", "--db", str(path), "--prompt", "nosuch"))
    assert "no prompt 'nosuch'" in message and baseline in message
    twin = add_twin(path, baseline)
    message = one_error_line(cli("push", "--db", str(path), "--prompt", baseline[:12]))
    assert "ambiguous" in message and baseline in message and twin in message


# --- extract -------------------------------------------------------------------------------------


def prompt_text(version: str, variant: int) -> str:
    text = V1.read_text(encoding="utf-8").replace("version: v1", f"version: {version}", 1)
    return text + f"\n<!-- variant {variant} -->\n"


def colliding_prompts(folder) -> str:
    """Write values/v1.md and values/v2.md whose ids share their first MIN_PREFIX characters;
    return that prefix. Deterministic: about 256 hashes of each."""
    seen: dict[str, int] = {}
    for k in range(20_000):
        seen.setdefault(prompt_id(prompt_text("v1", k))[:MIN_PREFIX], k)
        prefix = prompt_id(prompt_text("v2", k))[:MIN_PREFIX]
        if prefix in seen:
            (folder / "values").mkdir(parents=True)
            (folder / "values" / "v1.md").write_text(prompt_text("v1", seen[prefix]))
            (folder / "values" / "v2.md").write_text(prompt_text("v2", k))
            return prefix
    raise AssertionError("no collision found")


def dry_run(path, *args: str, env: dict | None = None):
    return cli("extract", "--db", str(path), "--extractor", "claude", "--dry-run", "--json",
               *args, env=env)  # fmt: skip


def test_extract_takes_a_prefix_a_name_version_and_a_file_from_the_studys_folder(
    study, tmp_path, api_env
):
    path, _ = study
    folder = tmp_path / "my-prompts"
    colliding_prompts(folder)
    v2 = resolve_prompt("values/v2", folder)
    for ref in (v2.id[:8], "values/v2", "values@v2", "v2", str(folder / "values" / "v2.md")):
        result = dry_run(path, "--prompt", ref, "--prompts", str(folder))
        assert result.exit_code == 0, (ref, result.output)
        assert json.loads(result.output)["prompt_id"] == v2.id, ref
    # the folder can come from the environment (read in config) instead of --prompts
    result = dry_run(path, "--prompt", v2.id[:8], env={"ANNOTATOR_PROMPTS_DIR": str(folder)})
    assert result.exit_code == 0 and json.loads(result.output)["prompt_id"] == v2.id


def test_extract_with_an_unknown_or_ambiguous_prompt_names_the_candidates(
    study, tmp_path, api_env
):
    path, baseline = study
    folder = tmp_path / "my-prompts"
    prefix = colliding_prompts(folder)
    v1, v2 = resolve_prompt("values/v1", folder), resolve_prompt("values/v2", folder)
    message = one_error_line(dry_run(path, "--prompt", "nosuch", "--prompts", str(folder)))
    assert "no prompt 'nosuch'" in message
    assert all(p in message for p in (v1.id, v2.id, baseline))  # files and the study's versions
    message = one_error_line(dry_run(path, "--prompt", prefix, "--prompts", str(folder)))
    assert "ambiguous" in message and v1.id in message and v2.id in message
    # the study's baseline version resolves, but it is rules, not a prompt a model can run
    message = one_error_line(dry_run(path, "--prompt", baseline[:12], "--prompts", str(folder)))
    assert "not a prompt file a model can run" in message


# --- the resolver itself --------------------------------------------------------------------------


def test_resolver_rules(tmp_path, study):
    path, baseline = study
    folder = tmp_path / "p"
    prefix = colliding_prompts(folder)
    database = open_db(path)
    with pytest.raises(InputError, match="too short"):
        resolve_prompt(prefix[:2], folder, database)
    # a used version whose file was since edited shares its name/version with the edit
    edited = resolve_prompt("values/v1", folder)
    database["prompts"].insert({**dict(next(database["prompts"].rows)), "id": "feedfacecafe0001",
                                "name": "values", "version": "v1"})
    with pytest.raises(InputError, match="ambiguous.*" + edited.id):
        resolve_prompt("values/v1", folder, database)
    assert resolve_prompt("feedface", folder, database).id == "feedfacecafe0001"
    # used-only: a file version the study never ran is named as such
    with pytest.raises(InputError, match="has no extractions"):
        resolve_prompt(str(folder / "values" / "v2.md"), folder, database, used=True)
    database.conn.close()


def test_a_mistyped_prompt_gets_the_nearest_as_a_hint(tmp_path):
    """No study: the prompt files of a folder. A typo in a name/version gets "did you mean";
    a reference like nothing known gets none."""
    folder = tmp_path / "prompts"
    (folder / "values").mkdir(parents=True)
    (folder / "values" / "v1.md").write_text(prompt_text("v1", 0), encoding="utf-8")
    with pytest.raises(InputError) as raised:
        resolve_prompt("valeus/v1", folder)
    assert "no prompt 'valeus/v1'; did you mean values/v1 ?" in str(raised.value)
    with pytest.raises(InputError) as raised:
        resolve_prompt("zzz/q9", folder)
    assert "did you mean" not in str(raised.value)
