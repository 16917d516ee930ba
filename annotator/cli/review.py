"""Label Studio: `annotator labelstudio ...`, `push` and `pull`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from annotator.cli.main import (
    PROMPT_REF,
    DbOption,
    JsonOption,
    SummariesOption,
    app,
    cli_errors,
    db_path,
    precompute_summaries,
    print_json,
    progress_bar,
    say,
)

labelstudio_app = typer.Typer(
    help=(
        "Run a local Label Studio for the study, or use yours (LABEL_STUDIO_URL and "
        "LABEL_STUDIO_API_KEY).\n\nExample: annotator labelstudio install && annotator "
        "labelstudio start"
    ),
    no_args_is_help=True,
)


app.add_typer(labelstudio_app, name="labelstudio")


VenvOption = Annotated[
    Path | None,
    typer.Option(
        "--venv",
        help="Virtual environment for label-studio. Default: ~/.cache/annotator/labelstudio-venv.",
        show_default=False,
    ),
]


ProjectOption = Annotated[str, typer.Option("--project", help="Label Studio project title.")]


HostOption = Annotated[
    str | None,
    typer.Option(
        "--host",
        help="The address the study's Label Studio servers listen on, so reviewers on other "
        "computers can open them: one of this machine's addresses, or 0.0.0.0 for all. Kept "
        "for later starts. Default: as before, else 127.0.0.1 (this computer only).",
        show_default=False,
    ),
]
PublicUrlOption = Annotated[
    str | None,
    typer.Option(
        "--public-url",
        help="The address people open when your own proxy (e.g. TLS) stands in front, such as "
        "https://review.example.org: printed links use it, and each reviewer's instance is "
        "at `<URL>/<instance folder>` (status --json lists each one's port for the proxy). "
        "\"\" removes it. Kept for later starts.",
        show_default=False,
    ),
]


def _server_lines(st: Any) -> None:
    where = "external server" if st.external else "local server"
    state = ("answering" if st.answering else "not answering") if st.url else ""
    shown = getattr(st, "shown_url", None) or st.url
    say(f"Label Studio ({where}): {st.message}; {shown or '-'} {state}".rstrip())
    if st.data_dir and not st.external:
        say(f"  data: {st.data_dir}")


@labelstudio_app.command("install")
@cli_errors
def labelstudio_install(
    venv: VenvOption = None,
    version: Annotated[str, typer.Option(help="label-studio version to install.")] = "1.23.2",
) -> None:
    """Install label-studio from PyPI into its own virtual environment (reused if present).

    Example: annotator labelstudio install --venv ~/.cache/annotator/labelstudio-venv
    """
    from annotator.review.server import external_connection, install

    external = external_connection()
    if external is not None:
        say(f"LABEL_STUDIO_URL is set: using {external.url}; nothing to install.")
        return
    install(venv, version=version, echo=say)


@labelstudio_app.command("start")
@cli_errors
def labelstudio_start(
    db: DbOption = None,
    venv: VenvOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the server.")] = 240.0,
    host: HostOption = None,
    public_url: PublicUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Start the study's Label Studio (and each reviewer's), data next to the database; print
    the addresses and the login.

    Each server keeps its port from its first start, so the addresses given to reviewers stay
    valid; a port taken by another program is an error that names it.

    Example: annotator labelstudio start --db study/annotator.db --host 0.0.0.0
    """
    from annotator.review.instances import start_all
    from annotator.review.server import external_connection, login_info, set_network, start

    echo = (lambda _: None) if as_json else say
    if external_connection() is None:
        network = set_network(db_path(db), host=host, public_url=public_url)
        st = start(db_path(db), venv=venv, timeout=timeout, echo=echo, host=network.host,
                   public_url=network.public_url or "")
    else:
        st = start(db_path(db), venv=venv, timeout=timeout, echo=echo)
    login = None if st.external else login_info(db_path(db))
    reviewers = [] if st.external else start_all(db_path(db), echo=echo)
    if as_json:
        data = st.as_dict()
        if login:
            data.update(username=login["username"], password=login["password"])
        data["reviewers"] = [r.as_dict() for r in reviewers]
        print_json(data)
        return
    _server_lines(st)
    if login:
        say(f"  open {login['url']}, log in as {login['username']}, password {login['password']}")
        say("  API token: `annotator labelstudio status --login`")
    for reviewer in reviewers:
        say(f"  reviewer {reviewer.username}: {reviewer.shown_url} ({reviewer.message})")


@labelstudio_app.command("stop")
@cli_errors
def labelstudio_stop(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Stop everything that serves the study: its Label Studio servers (the main one and each
    reviewer's) and its app (`annotator app`, `demo --serve`). Projects and annotations stay.

    Example: annotator labelstudio stop --db study/annotator.db
    """
    from annotator.review.demo_serve import stop_app
    from annotator.review.instances import stop_all
    from annotator.review.server import stop

    app_stopped = stop_app(db_path(db))
    st = stop(db_path(db))
    reviewers = [] if st.external else stop_all(db_path(db))
    if as_json:
        print_json({**st.as_dict(), "reviewers": [r.as_dict() for r in reviewers],
                    "app_stopped": app_stopped})
        return
    _server_lines(st)
    if reviewers:
        say(f"  and the Label Studio of {len(reviewers)} reviewers")
    if app_stopped:
        say("  and the study's app")


@labelstudio_app.command("status")
@cli_errors
def labelstudio_status(
    db: DbOption = None,
    login: Annotated[
        bool, typer.Option("--login", help="Also print the admin login and API token.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Whether the study's Label Studio (or yours) is running and answering.

    Example: annotator labelstudio status --login
    """
    from annotator.review.instances import login as reviewer_login
    from annotator.review.instances import statuses
    from annotator.review.server import login_info, status

    st = status(db_path(db))
    info = login_info(db_path(db)) if login and not st.external else None
    reviewers = [] if st.external else statuses(db_path(db))
    if as_json:
        data = st.as_dict()
        if info:
            data.update(info)
        data["reviewers"] = [
            {**r_st.as_dict(), **(reviewer_login(r) if login else {})} for r, r_st in reviewers
        ]
        print_json(data)
        return
    _server_lines(st)
    if reviewers and not st.running:
        say("  (isolated review needs no main server: each reviewer has their own)")
    for reviewer, r_st in reviewers:
        where = r_st.shown_url if r_st.running else f"not running ({r_st.shown_url or '-'})"
        secret = f", password {reviewer_login(reviewer)['password']}" if login else ""
        say(f"  reviewer {reviewer.email} (isolated): {where}{secret}")
    if login and st.external:
        say("  login: the one your team gave you (LABEL_STUDIO_API_KEY is set)")
    if info:
        say(f"  username: {info['username']}")
        say(f"  password: {info['password']}")
        say(f"  API token: {info['api_key']}")
        say(f"  export LABEL_STUDIO_URL={info['url']} LABEL_STUDIO_API_KEY={info['api_key']}")


@labelstudio_app.command("add-user")
@cli_errors
def labelstudio_add_user(
    email: Annotated[str, typer.Argument(help="The reviewer's email (their login).")],
    password: Annotated[
        str | None, typer.Option(help="Password to set. Default: a random one, printed.")
    ] = None,
    shared: Annotated[
        bool,
        typer.Option(
            "--shared",
            help="Add the reviewer to the study's main server, where every user can open "
            "every task and see others' labels, instead of an instance of their own.",
        ),
    ] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a reviewer who can log in; print their login.

    By default each reviewer gets a Label Studio of their own (isolated review: started now,
    from a migrated template, on its own port), so no reviewer can see another's labels;
    `annotator push` then sends each conversation to --overlap reviewers' instances and
    `annotator pull` reads them all back.

    Example: annotator labelstudio add-user ada@example.org
    """
    from annotator.review.sync import add_user

    reviewer = add_user(db_path(db), email, password=password, shared=shared)
    if as_json:
        print_json(
            {"email": reviewer.email, "user_id": reviewer.user_id, "url": reviewer.url,
             "password": reviewer.password, "created": reviewer.created,
             "isolated": reviewer.isolated}
        )  # fmt: skip
        return
    verb = "Created" if reviewer.created else "Updated"
    where = "their own Label Studio" if reviewer.isolated else "the shared Label Studio"
    say(
        f"{verb} reviewer {reviewer.email} on {where}: open {reviewer.url} and log in with "
        f"password {reviewer.password}"
    )


@app.command()
@cli_errors
def push(
    db: DbOption = None,
    prompt: Annotated[
        str | None,
        typer.Option(help=f"Push only this prompt version: {PROMPT_REF}."),
    ] = None,
    project: ProjectOption = "annotator",
    overlap: Annotated[
        int | None,
        typer.Option(
            help="Reviewers per task (K). Default: 2 with isolated reviewers (1 if there is "
            "one), else keep the project's."
        ),
    ] = None,
    values: Annotated[
        int,
        typer.Option(
            help="List this many most frequent values (plus all predicted ones) in the value "
            "picker; any other value is typed into Other AI values. More makes each task "
            "slower to open (300: about 0.55 s instead of 0.47 s)."
        ),
    ] = 100,
    all_values: Annotated[
        bool, typer.Option("--all-values", help="List the whole tree (slower task switching).")
    ] = False,
    keep_config: Annotated[
        bool,
        typer.Option("--keep-config", help="Never change the labeling config; fail instead."),
    ] = False,
    batch_size: Annotated[int, typer.Option(help="Tasks per import request.")] = 1000,
    blind_share: Annotated[
        float,
        typer.Option(
            help="Share of conversations pushed without any prediction, so `annotator "
            "agreement` can measure how much the pre-filled form anchors reviewers. The draw "
            "is stable: a conversation blind once stays blind."
        ),
    ] = 0.1,
    blind_seed: Annotated[
        str, typer.Option(help="Seed of the blind draw (the same seed picks the same set).")
    ] = "annotator-blind",
    as_json: JsonOption = False,
) -> None:
    """Send conversations to Label Studio as tasks, with model predictions; safe to rerun.

    The newest prompt version's prediction pre-fills each form, except on a blind share of
    tasks (`--blind-share`, default 0.1), which reviewers label from scratch. Tasks are queued
    with the conversations the model is least sure of first.

    Example: annotator push --prompt 3f2a --project pilot --overlap 2
    """
    from annotator.review.push import push as run_push

    with progress_bar("Pushing", not as_json) as bar:
        job = bar.add_task("push", total=None)
        r = run_push(
            db_path(db), prompt_id=prompt, project=project, overlap=overlap,
            top_values=None if all_values else values, update_config=not keep_config,
            batch_size=batch_size, blind_share=blind_share, blind_seed=blind_seed,
            progress=lambda done, total: bar.update(job, completed=done, total=total),
        )  # fmt: skip
    if as_json:
        print_json(r.as_dict())
        return
    config = "created" if r.created_project else "extended" if r.config_updated else "unchanged"
    say(
        f"Project {r.project!r} {_where(r)}: {r.tasks_created} tasks created, "
        f"{r.tasks_existing} already there ({r.tasks_recovered} recovered from the server); "
        f"{r.predictions_added} predictions added, {r.predictions_skipped} already there; "
        f"labeling config {config}, {r.config_values} values listed; {r.seconds:.1f} s"
    )
    say(
        f"Pre-filled by {r.prefilled_by or 'no prediction'}; {r.blind_tasks} tasks are blind "
        "(no prediction), to measure anchoring; most uncertain conversations first."
    )
    for sub in r.reviewers:
        say(
            f"  {sub.server.removeprefix('reviewer:')} ({sub.url}): {sub.tasks_created} tasks "
            f"created, {sub.tasks_existing} already there"
        )


@app.command()
@cli_errors
def pull(
    db: DbOption = None,
    project: ProjectOption = "annotator",
    summaries: SummariesOption = True,
    as_json: JsonOption = False,
) -> None:
    """Bring every annotation back from Label Studio into the study; safe to rerun.

    Example: annotator pull --project pilot
    """
    from annotator.review.pull import pull as run_pull

    with progress_bar("Pulling", not as_json) as bar:
        job = bar.add_task("pull", total=None)
        r = run_pull(
            db_path(db), project=project,
            progress=lambda done, total: bar.update(job, completed=done, total=total),
        )  # fmt: skip
    if as_json:
        print_json({**r.as_dict(),
                    "app_summaries": precompute_summaries(db_path(db), summaries, True)})
        return
    say(
        f"Project {r.project!r} {_where(r)}: {r.annotations} annotations "
        f"({r.cancelled} skipped, {r.flagged} flagged): {r.new} new, {r.updated} updated, "
        f"{r.unchanged} unchanged, "
        f"{r.deleted} marked deleted, {r.restored} restored; {r.free_values} values outside "
        f"the taxonomy kept as free values; {r.seconds:.1f} s. Only annotations pulled from "
        f"{'these projects' if r.reviewers else r.source} were touched."
    )
    if r.cancelled or r.flagged:
        say("Skipped and flagged conversations, with their notes: `annotator status`.")
    if r.incomplete:
        say(
            f"{r.incomplete} annotations leave a required field (response type or subjective) "
            "empty: kept as incomplete; `annotator adjudicate` lists their conversations for a "
            "person"
        )
    if r.edited_by_other:
        say(
            f"{r.edited_by_other} annotations were last changed by someone other than their "
            "author (a shared server lets any user edit any annotation): kept, with the "
            "editor recorded in each one's edited_by"
        )
    precompute_summaries(db_path(db), summaries, False)


def _where(report: Any) -> str:
    """Where a push or pull went: one server, or each reviewer's own (isolated review)."""
    if report.reviewers:
        return f"on {len(report.reviewers)} reviewers' own Label Studio"
    return f"(id {report.project_id}) at {report.url}"
