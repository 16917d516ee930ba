"""The study as a whole: `init`, `status`, `demo`, `taxonomy`, `show`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from annotator import config
from annotator.cli.main import (
    DbOption,
    JsonOption,
    app,
    cli_errors,
    console,
    db_path,
    err_console,
    extract_bar,
    figure,
    precompute_summaries,
    print_json,
    print_listed,
    rows_table,
    say,
)

if TYPE_CHECKING:
    from annotator.measure.progress import ReviewProgress


@app.command()
@cli_errors
def init(db: DbOption = None) -> None:
    """Create the study database (or bring an older one up to date).

    Example: annotator init --db study.db
    """
    from annotator.db import applied_migrations, open_db

    path = db_path(db)
    database = open_db(path)
    console.print(
        f"Study database ready: {escape(str(path))} "
        f"({len(applied_migrations(database))} migrations applied)"
    )


@app.command()
@cli_errors
def status(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Show what the study holds at each stage, each reviewer's progress (assigned, done,
    skipped, flagged, remaining, last activity, last pulled) and every flagged or skipped
    conversation with its note. `--json` adds all of it under "review".

    Example: annotator status --db study.db --json
    """
    from annotator.db import open_existing_db
    from annotator.measure.frames import study_summary
    from annotator.measure.progress import review_progress

    path = db_path(db)
    database = open_existing_db(path)
    summary = study_summary(database)
    progress = review_progress(database)
    if as_json:
        print_json({**summary, "review": progress.model_dump(mode="json")})
        return
    rows = [{"stage": stage, "count": count} for stage, count in summary.items()]
    console.print(rows_table(f"Study {path}", rows))
    _print_progress(progress)


SHOWN_FLAGS = 50


def _print_progress(progress: ReviewProgress) -> None:
    """Reviewers' progress and the flagged and skipped conversations, as tables."""
    from annotator.measure.progress import ago

    if progress.reviewers:
        rows = [{"reviewer": r.reviewer, "assigned": r.assigned, "done": r.done,
                 "skipped": r.skipped, "flagged": r.flagged, "remaining": r.remaining,
                 "last activity": r.last_activity or "-",
                 "last pulled": ago(r.last_pulled)} for r in progress.reviewers]
        console.print(rows_table(
            f"Review progress (annotations pulled {ago(progress.last_pulled)})", rows))
    listed = progress.flagged_or_skipped
    if not listed:
        return
    kinds = ", ".join(f"{n} {flag}" for flag, n in progress.by_flag.items())
    say(f"{progress.flagged} flagged" + (f" ({kinds})" if kinds else "")
        + f", {progress.skipped} skipped; a flag without labels is no vote:")
    rows = [{"conversation": f.conversation_id[:12], "reviewer": f.annotator,
             "flag": f.flag or "-", "skipped": "yes" if f.skipped else "no",
             "vote": "yes" if f.vote else "no", "note": f.note or "-"}
            for f in listed[:SHOWN_FLAGS]]
    console.print(rows_table("Flagged and skipped", rows))
    if len(listed) > SHOWN_FLAGS:
        say(f"… and {len(listed) - SHOWN_FLAGS:,} more (all of them: --json)")


@app.command()
@cli_errors
def demo(
    db: Annotated[Path, typer.Option("--db", help="Where to build the demo study.")] = Path(
        "demo/annotator.db"
    ),
    gold: Annotated[
        Path | None, typer.Option("--gold", help="Gold folder (default: the project's gold/).")
    ] = None,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve",
            help="Then start a local Label Studio for two reviewers (one each) with the demo "
            "tasks pre-filled by the baseline, serve the app, print both addresses and the "
            "logins, and run until Ctrl-C, which stops both. Needs `annotator labelstudio "
            "install` once.",
        ),
    ] = False,
    app_port: Annotated[
        int, typer.Option("--app-port", help="With --serve: the port the app is served on.")
    ] = 8501,
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            help="With --serve: the address the reviewers' Label Studios listen on, so "
            "reviewers on other computers can open them (e.g. this machine's address, or "
            "0.0.0.0 for all); kept for later runs. Default: as before, else 127.0.0.1. The "
            "app stays on 127.0.0.1 (it shows everyone's labels).",
            show_default=False,
        ),
    ] = None,
    pull_every: Annotated[
        float,
        typer.Option("--pull-every", help="With --serve: pull the reviewers' annotations "
                     "every this many seconds (0: never)."),
    ] = 300.0,
) -> None:
    """Run the main job on the bundled data: import gold/, extract with the offline baseline,
    adjudicate, measure agreement and export the validated dataset, then print what it holds.

    Needs no API key and no network. Run it again: nothing is done twice. With --serve, the
    whole loop follows: review in Label Studio, explore in the app.

    Example: annotator demo --db demo/annotator.db --serve
    """
    from annotator.datasets.export import export as export_dataset
    from annotator.datasets.gold import adjudicate as adjudicate_study
    from annotator.datasets.gold import import_gold
    from annotator.db import open_db
    from annotator.extract.engine import extract as run_extract
    from annotator.measure.frames import study_agreement, study_summary

    if serve:  # before the study is built: a missing Label Studio is said at once
        from annotator.review.demo_serve import check_ready

        check_ready(app_port)
        if host:
            from annotator.review.server import check_host

            check_host(host)
    database = open_db(db)
    report = import_gold(database, [gold or config.gold_dir()])
    console.print(
        f"1. imported {report.conversations} gold conversations with {report.annotations} "
        f"annotations from {escape(', '.join(report.files))}"
    )
    for rejected in report.rejected:
        err_console.print(f"[red]rejected[/] {escape(rejected.file)}:{rejected.line}: "
                          f"{escape(rejected.reason)}", highlight=False)
    with extract_bar(True) as progress:
        extracted = run_extract(db, extractor="baseline", progress=progress)
    console.print(
        f"2. baseline extractor (offline, prompt {extracted.prompt_id[:12]}): "
        f"{extracted.ok} proposed now, {extracted.cached} already done, {extracted.errors} errors"
    )
    decided = adjudicate_study(database)
    console.print(
        f"3. adjudicated: {decided.decided} decided by majority, {decided.unchanged} unchanged, "
        f"{decided.kept_person_decisions} person decisions kept, "
        f"{len(decided.need_a_person)} need a person"
    )
    rows = study_agreement(database, levels=(0, 3), n_boot=100, top_k=0).rows
    wanted = {
        ("annotators", "krippendorff_alpha_nominal", "response_type"): "annotators, response type",
        ("annotators", "krippendorff_alpha_masi", "ai_values"): "annotators, AI values (MASI)",
    }
    lines = []
    for row in rows:
        label = wanted.get((row.scope, row.metric, row.field))
        if (
            row.reference == "gold"
            and row.field != "human_values"
            and row.metric in ("accuracy", "micro_f1")
        ):
            label = f"baseline vs gold, {row.field} {row.metric}"
        if label:
            level = "" if row.level is None else f" level {row.level}"
            lines.append(f"   {label}{level}: {figure(row.value)} (n={row.n_units})")
    console.print("4. agreement:\n" + "\n".join(lines))
    # The demo's own file beside its study: replaced on every run, as the demo is rerun.
    exported = export_dataset(database, Path(db).parent / "validated.jsonl", force=True)
    console.print(f"5. exported {exported.exported} validated conversations to "
                  f"{escape(str(exported.path))}; "
                  f"{len(exported.left_out)} left out")
    print_listed([(x.conversation_id, x.reason) for x in exported.left_out], "left out", "red")
    done = precompute_summaries(Path(db), True, True) or {}
    if "computed" in done:
        console.print(f"6. the app's summaries: {len(done['computed'])} computed, "
                      f"{done['already_stored']} already up to date ({done['seconds']:.1f} s)")
    rows = [{"stage": stage, "count": count} for stage, count in study_summary(database).items()]
    console.print(rows_table(f"Demo study {db}", rows))
    if serve and not report.rejected:
        database.conn.close()  # the app and `annotator pull` use the study while it runs
        _serve_demo(db, app_port, host, pull_every)
        return
    console.print(
        f"Next: `annotator agreement --db {escape(str(db))}` for every figure, or "
        f"`annotator app --db {escape(str(db))}` to explore them in the browser "
        "(`annotator demo --serve` adds Label Studio)."
    )
    if report.rejected:
        raise typer.Exit(1)


def _serve_demo(db: Path, app_port: int, host: str | None, pull_every: float) -> None:
    """`demo --serve` after the study is built: print the addresses and logins, wait for Ctrl-C
    (or SIGTERM, or the terminal closing)."""
    from annotator.review.demo_serve import Stopped, serving, wait

    try:
        with serving(db, app_port=app_port, echo=say, host=host,
                     pull_every=pull_every) as running:
            say("")
            say("The demo is running. Stop it (the app and Label Studio) with Ctrl-C, or "
                f"`annotator labelstudio stop --db {db}` from another terminal.")
            if pull_every > 0:
                say(f"Annotations are pulled every {pull_every:.0f} s; the app says when.")
            say(f"App: {running.app_url}")
            for i, reviewer in enumerate(running.reviewers, 1):
                say(f"Reviewer {i}: open {reviewer.url} and log in as {reviewer.email} with "
                     f"password {reviewer.password}")
            say(f"Each reviewer has a Label Studio of their own with the demo tasks "
                 f"({running.tasks_created + running.tasks_existing} tasks: "
                 f"{running.tasks_created} new; {running.blind_tasks} without predictions, to "
                 f"measure anchoring). After labelling: `annotator pull --db {db}`, then "
                 "reload the app.")
            wait(running)
    except (KeyboardInterrupt, Stopped):
        pass
    say("Stopped the app and Label Studio.")


@app.command()
@cli_errors
def taxonomy(
    query: Annotated[
        str | None, typer.Argument(help="Search value and cluster names (omit for counts).")
    ] = None,
    level: Annotated[
        int | None,
        typer.Option("--level", min=0, max=3, help="Only this level: 0 values .. 3 categories."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="How many matches to show.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Show the released value taxonomy: counts per level, or the names matching a query.

    Example: annotator taxonomy "honest" --level 0
    """
    from annotator.taxonomy import ATTRIBUTION, load_taxonomy

    tree = load_taxonomy()
    if query is None:
        rows = tree.summary()
        if as_json:
            print_json({"levels": rows, "attribution": ATTRIBUTION})
            return
        console.print(rows_table("Value taxonomy", rows))
        console.print(ATTRIBUTION, style="dim", highlight=False)
        return
    rows = []
    for node in tree.search(query, limit=limit, level=level):
        rows.append(
            {
                "level": node.level,
                "name": node.name,
                "under": " > ".join(tree.path(node)[:-1]),
                "pct_convos": node.pct_convos,
                "id": node.id,
            }
        )
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print(f"No value or cluster matches {escape(repr(query))}.")
        return
    console.print(rows_table(f"Taxonomy matches for {query!r}", rows))


def _task(labels: dict) -> str:
    """A task as `show` prints it: the category, and its description in parentheses."""
    if not labels.get("task"):
        return "-"
    described = labels.get("task_description")
    return f"{labels['task']} ({described})" if described else str(labels["task"])


@app.command()
@cli_errors
def show(
    conversation: Annotated[
        str, typer.Argument(help="A conversation id, any unique prefix of one, or its external "
                            "id (the source's id, or file:line for records without one).")
    ],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Everything the study holds about one conversation: its turns, each prompt version's
    proposal (values with their evidence quotes, cost), every annotation (deleted, cancelled
    and incomplete ones flagged), the gold label, and its Label Studio tasks with links.

    Example: annotator show 3f9a2c --db study.db
    """
    from annotator.datasets.show import conversation_record
    from annotator.db import open_existing_db

    path = db_path(db)
    database = open_existing_db(path)
    record = conversation_record(database, conversation, db_path=path)
    if as_json:
        print_json(record)
        return
    _print_conversation(record)


def _heading(text: str) -> None:
    console.print(f"\n[bold]{escape(text)}[/]", highlight=False, soft_wrap=True)


def _yes_no(value: Any) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _print_conversation(r: dict[str, Any]) -> None:
    """The record of `annotator show`, as text: every data string printed as it is."""
    where = f"source {r['source'] or '-'}" + (
        f", external id {r['external_id']}" if r["external_id"] else "")
    say(f"Conversation {r['id']} ({where}; {len(r['turns'])} turns)")
    _heading("Turns")
    for i, turn in enumerate(r["turns"], start=1):
        say(f"[{i}] {turn.get('role')}: {turn.get('text')}")
    _heading(f"Proposals ({len(r['proposals'])})")
    for p in r["proposals"]:
        cost = f"${p['cost_usd']:.4f}" if p["cost_usd"] is not None else "-"
        say(f"{p['prompt']} · model {p['model']} · {p['status']} · response type "
             f"{p['response_type'] or '-'} · subjective {_yes_no(p['subjective'])} · cost {cost}")
        if p["error"]:
            say(f"  error: {p['error']}")
        if p.get("task"):
            say(f"  task: {_task(p)}")
        for v in p["ai_values"]:
            quote = f' — "{v["evidence"]}"' if v.get("evidence") else ""
            free = " (free value)" if v.get("node_id") is None and "node_id" in v else ""
            say(f"  AI value: {v.get('name')}{free}{quote}")
        if p["human_values"]:
            say("  human values: " + ", ".join(str(v.get("name")) for v in p["human_values"]))
    _heading(f"Annotations ({len(r['annotations'])})")
    for a in r["annotations"]:
        flags = [f for f, on in (("deleted", a["deleted"]), ("cancelled", a["cancelled"])) if on]
        if a["missing"]:
            flags.append("incomplete: no " + " and no ".join(a["missing"]))
        if a["flag"]:
            flags.append(f"flagged: {a['flag']}" + ("" if a["vote"] else ", no vote"))
        if a["edited_by"]:
            flags.append(f"edited by {a['edited_by']}")
        say(f"{a['annotator']} ({a['source'] or 'no source'})"
             + (f" [{'; '.join(flags)}]" if flags else ""))
        say(f"  response type {a['response_type'] or '-'} · subjective "
             f"{_yes_no(a['subjective'])} · task {_task(a)}")
        say("  AI values: " + (", ".join(a["ai_values"]) or "-"))
        say("  human values: " + (", ".join(a["human_values"]) or "-"))
        if a["notes"]:
            say(f"  note: {a['notes']}")
    g = r["gold"]
    _heading("Gold")
    if g is None:
        say("not decided")
        if r.get("reopened"):
            was = r["reopened"]
            say(f"  a majority decision was re-opened at {was['reopened_at']}: "
                f"{was['reason']} (its labels are kept in the history)")
    else:
        say(f"decided by {g['decided_by']} at {g['decided_at'] or '-'}")
        if g.get("new_labels_since"):
            say("  new labels since: the annotations changed after this decision")
        if g.get("majority_out_of_date"):
            say(f"  not decided any more: {g['majority_out_of_date']}; run `annotator "
                "adjudicate` (export leaves it out)")
        say(f"  response type {g['response_type'] or '-'} · subjective "
             f"{_yes_no(g['subjective'])} · task {_task(g)}")
        say("  AI values: " + (", ".join(g["ai_values"]) or "-"))
        say("  human values: " + (", ".join(g["human_values"]) or "-"))
    _heading(f"Label Studio tasks ({len(r['tasks'])})")
    for t in r["tasks"]:
        how = "blind" if t["blind"] else f"pre-filled by {t['prefilled_by_name'] or '-'}"
        say(f"{t['server']} · project {t['project_id']} · task {t['task_id']} · {how}"
             + (f" · {t['url']}" if t["url"] else ""))
