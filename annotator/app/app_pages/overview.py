"""Overview: conversations by stage, value frequencies by top category and cluster, response
types, each beside the published study's figures where they exist."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from annotator.app.app_pages import by_response_type, common
from annotator.measure import frames as report
from annotator.measure import summaries
from annotator.measure.shares import share

st.title("Overview")
study = common.require_study()
prompt = common.selected_prompt(study)
common.prompt_caption(study, prompt)

# --- stages --------------------------------------------------------------------------------------
stages = common.stage_counts(study)
total = common.n_conversations(study)
versions = common.prompts(study).set_index("prompt_id")
extracted = int(versions.loc[prompt, "ok"]) if prompt in versions.index else 0
pushed = int(stages.loc[stages["stage"] == "pushed to Label Studio", "conversations"].sum())
annotated = int(stages.loc[stages["stage"] == "annotated", "conversations"].sum())
adjudicated = int(stages.loc[stages["stage"] == "adjudicated", "conversations"].sum())
cols = st.columns(5)
cols[0].metric("Conversations", f"{total:,}")
cols[1].metric("Extracted (this prompt)", f"{int(extracted):,}")
cols[2].metric("Pushed to Label Studio", f"{pushed:,}")
cols[3].metric("Annotated", f"{annotated:,}")
cols[4].metric("Adjudicated", f"{adjudicated:,}")

st.subheader("Conversations by stage")
stage_rows = stages.assign(
    step=lambda f: f["stage"] + f["detail"].map(lambda d: f": {d}" if d else "")
)
common.chart(
    alt.Chart(stage_rows, title="Conversations at each stage of the study")
    .mark_bar()
    .encode(
        x=alt.X("conversations:Q", title="Conversations"),
        y=alt.Y("step:N", title=None, sort=list(stage_rows["step"])),
        color=alt.Color("stage:N", title="Stage", legend=None),
        tooltip=[alt.Tooltip("stage:N", title="Stage"), alt.Tooltip("detail:N", title="Detail"),
                 alt.Tooltip("conversations:Q", title="Conversations", format=",")],
    ),
    key="stages-chart",
)
if not prompt:
    st.info("No extractions yet: run `annotator extract` (the offline baseline needs no key).",
            icon=":material/smart_toy:")
if annotated == 0:
    st.info("No annotations yet: run `annotator push`, label in Label Studio, then "
            "`annotator pull`.", icon=":material/group:")
elif adjudicated == 0:
    st.info("Nothing adjudicated yet: run `annotator adjudicate`, or decide on the Gold page.",
            icon=":material/gavel:")

# --- sources of labels ------------------------------------------------------------------------
published = report.PUBLISHED_STUDY
sources: dict[str, str] = {}
if adjudicated:
    sources["gold"] = "gold"
if annotated:
    sources["annotators"] = "annotations"
if prompt:
    sources[f"model ({prompt})"] = f"extractions:{prompt}"
bundles = {label: common.frequencies_result(study, table) for label, table in sources.items()}
ready = {label: b for label, b in bundles.items() if b is not None}

st.subheader("Subjective conversations")
kept = published["conversations_subjective"] / published["conversations_sampled"]
st.markdown(
    f"The published study kept **{published['conversations_subjective']:,}** of "
    f"**{published['conversations_sampled']:,}** conversations as subjective "
    f"(**{100 * kept:.0f}%**)."
)
subjective_rows = []
for label, bundle in ready.items():
    meta = bundle.meta
    if meta.get("subjective_labelled"):
        subjective_rows.append({
            "source": label,
            "subjective": meta["subjective_true"],
            "labelled": meta["subjective_labelled"],
            "share": share(meta["subjective_true"], meta["subjective_labelled"],
                           "conversations labelled subjective or not").text(),
        })
subjective_rows.append({"source": "published study", "subjective": 308_210,
                        "labelled": 700_000, "share": common.share(kept)})
st.dataframe(pd.DataFrame(subjective_rows), hide_index=True, key="subjective-table")

# --- values by top category and cluster --------------------------------------------------------
st.subheader("Values by top category")
if not ready:
    st.info("No labels with values yet.")
else:
    released = report.published_category_shares()
    rows = []
    for label, bundle in ready.items():
        values = bundle.frames["values"]
        by_cat = values.groupby("category")["count"].sum()
        occ = by_cat.sum()
        for cat, n in by_cat.items():
            rows.append({"source": label, "category": cat, "share": n / occ if occ else 0.0,
                         "count": int(n)})
    for cat, pct in released.items():
        rows.append({"source": "published (released tree)", "category": cat,
                     "share": pct / 100.0, "count": None})
    cats = pd.DataFrame(rows)
    order = [*released, summaries.FREE]
    common.chart(
        alt.Chart(cats, title="Share of value occurrences per top category")
        .mark_bar()
        .encode(
            x=alt.X("category:N", title="Top category", sort=order,
                    axis=alt.Axis(labelAngle=0)),
            xOffset=alt.XOffset("source:N"),
            y=alt.Y("share:Q", title="Share of occurrences", axis=alt.Axis(format="%")),
            color=alt.Color("source:N", title="Source"),
            tooltip=[alt.Tooltip("source:N", title="Source"),
                     alt.Tooltip("category:N", title="Category"),
                     alt.Tooltip("share:Q", title="Share", format=".1%"),
                     alt.Tooltip("count:Q", title="Occurrences", format=",")],
        ),
        key="categories-chart",
    )
    table = cats.pivot_table(index="category", columns="source", values="share", aggfunc="sum")
    table = table.reindex([c for c in order if c in table.index])
    # a category a source never names is 0% of its occurrences, not a missing figure
    st.dataframe(table.fillna(0.0).map(common.share), key="categories-table")
    st.caption(f"Published shares: {common.md(published['category_source'])}.")

    st.subheader("Values by cluster")
    choice = st.segmented_control(
        "Source", list(ready), default=list(ready)[-1], key="cluster-source"
    ) or list(ready)[-1]
    values = ready[choice].frames["values"]
    clusters = (
        values.groupby(["category", "cluster"])["count"].sum().reset_index()
        .sort_values("count", ascending=False)
    )
    clusters["share"] = clusters["count"] / max(int(ready[choice].meta.get("rows", 1)), 1)
    common.chart(
        alt.Chart(clusters.head(15), title=f"Most frequent level-1 clusters ({choice})")
        .mark_bar()
        .encode(
            x=alt.X("count:Q", title="Value occurrences"),
            y=alt.Y("cluster:N", title=None, sort="-x"),
            color=alt.Color("category:N", title="Top category"),
            tooltip=[alt.Tooltip("cluster:N", title="Cluster"),
                     alt.Tooltip("category:N", title="Category"),
                     alt.Tooltip("count:Q", title="Occurrences", format=",")],
        ),
        key="clusters-chart",
    )
    with st.expander("Every value"):
        common.paginated(
            values.sort_values("count", ascending=False)[
                ["value", "cluster", "category", "count", "share_of_rows"]
            ],
            key="values",
            column_config={"share_of_rows": st.column_config.NumberColumn(
                "share of labellings", format="percent")},
        )

# --- response types ---------------------------------------------------------------------------
st.subheader("Response types")
# the report's figures (`annotator report`): one denominator, named, with a Wilson interval
reported = {label: common.findings_result(study, table) for label, table in sources.items()}
reported = {label: f for label, f in reported.items() if f is not None}
rt_rows, rt_text = [], {}
for label, rep in reported.items():
    for r in rep.response_types:
        rt_rows.append({"source": label, "response_type": r.response_type,
                        "share": None if r.share is None else r.share.value,
                        "count": r.conversations})
        rt_text.setdefault(r.response_type, {})[label] = (
            r.share.text() if r.share is not None else "unavailable")
for rt, pct in published["response_type_pct"].items():
    rt_rows.append({"source": "published study", "response_type": rt,
                    "share": None if pct is None else pct / 100.0, "count": None})
    rt_text.setdefault(rt, {})["published study"] = "not published" if pct is None else (
        f"{pct:.1f}%")
rts = pd.DataFrame(rt_rows)
rt_order = list(published["response_type_pct"])
common.chart(
    alt.Chart(rts.dropna(subset=["share"]), title="Share of conversations per response type")
    .mark_bar()
    .encode(
        x=alt.X("response_type:N", title="Response type", sort=rt_order,
                axis=alt.Axis(labelAngle=0)),
        xOffset=alt.XOffset("source:N"),
        y=alt.Y("share:Q", title="Share of conversations", axis=alt.Axis(format="%")),
        color=alt.Color("source:N", title="Source"),
        tooltip=[alt.Tooltip("source:N", title="Source"),
                 alt.Tooltip("response_type:N", title="Response type"),
                 alt.Tooltip("share:Q", title="Share", format=".1%"),
                 alt.Tooltip("count:Q", title="Conversations", format=",")],
    ),
    key="rt-chart",
)
rt_table = pd.DataFrame.from_dict(rt_text, orient="index").reindex(rt_order)
rt_table.index.name = "response_type"
st.dataframe(rt_table.fillna("unavailable"), key="rt-table")
st.caption(
    "Each share is of the source's subjective conversations with a response type (the "
    "denominator `annotator report` uses), with a Wilson 95% interval. Published: "
    f"{common.md(published['source'])}; its six response types add up to the 64.3% of "
    "subjective conversations where the user states a value."
)

# --- the study's report -------------------------------------------------------------------------
st.subheader("The study's report")
st.caption("Read the way the published study reads (the same report as `annotator report`): "
           "values and clusters as a percent of the conversations not labelled non-subjective, "
           "beside the released frequencies.")
report_sources: dict[str, str] = {}  # the order `annotator report` chooses its default in
if adjudicated:
    report_sources["gold"] = "gold"
if annotated:
    report_sources["annotations (majority per conversation)"] = "annotations"
if prompt:
    report_sources[f"model ({prompt})"] = f"extractions:{prompt}"
found = None
if not report_sources:
    st.info("No labels to report on yet.")
else:
    first = list(report_sources)[0]
    chosen = st.segmented_control("Labels", list(report_sources), default=first,
                                  key="report-source") or first
    found = common.findings_result(study, report_sources[chosen])
if found is not None:
    left = (f"; {found.left_out:,} left out ({common.md(found.left_out_reason)})"
            if found.left_out else "")
    st.caption(f"{found.conversations:,} labelled conversations{left}; shares are of "
               f"{found.base_conversations:,}.")
    values = found.level(0)
    rho = values.correlation.rho
    cols = st.columns(4)
    cols[0].metric("Subjective", common.share(None if found.subjective_pct is None
                                               else found.subjective_pct / 100),
                   help=(found.subjective_share.text() + "; " if found.subjective_share else "")
                   + f"published study: {found.published_subjective_pct:.1f}%")
    cols[1].metric("Values: Spearman rho", "n/a" if rho is None else f"{rho:+.3f}",
                   help=f"Over {values.correlation.n} values in the taxonomy, against "
                   "values_frequencies.csv" + (f" ({values.correlation.note})"
                                               if values.correlation.note else ""))
    cols[2].metric("Mirroring", common.share(None if found.mirroring.pct is None
                                             else found.mirroring.pct / 100),
                   help="Conversations with user values where an AI value equals one the "
                   "user stated" + (f": {found.mirroring.share.text()}"
                                    if found.mirroring.share else ""))
    cols[3].metric("Possible jailbreaks", f"{len(found.flagged):,}")

    percent = st.column_config.NumberColumn(format="%.2f%%")
    st.markdown("**AI values** (as in `values_frequencies.csv`)")
    common.paginated(
        pd.DataFrame(
            [{"value": s.name, "top category": s.top_category, "free": s.free,
              "conversations": s.conversations, "pct_convos": s.pct_convos,
              "95% interval": s.interval_text(),
              "released pct_convos": s.released_pct_convos} for s in values.rows],
            columns=["value", "top category", "free", "conversations", "pct_convos",
                     "95% interval", "released pct_convos"],
        ),
        key="report-values",
        column_config={"pct_convos": percent, "released pct_convos": percent},
    )
    st.caption(f"Spearman rank correlation: {'n/a' if rho is None else f'{rho:+.3f}'} over "
               f"{values.correlation.n} values; {found.free_values:,} free values (not in the "
               "taxonomy) have no released figure.")

    level = st.segmented_control("Clusters", [1, 2, 3], default=1, key="report-level",
                                 format_func=lambda lv: found.level(lv).kind) or 1
    clusters = found.level(level)
    st.dataframe(
        pd.DataFrame(
            [{"cluster": s.name, "top category": s.top_category,
              "conversations": s.conversations, "pct_convos": s.pct_convos,
              "95% interval": s.interval_text(),
              "pct occurrences": s.pct_occurrences,
              "released pct occurrences": s.released_pct_occurrences} for s in clusters.rows],
            columns=["cluster", "top category", "conversations", "pct_convos",
                     "95% interval", "pct occurrences", "released pct occurrences"],
        ),
        hide_index=True, key="report-clusters",
        column_config={c: percent for c in ("pct_convos", "pct occurrences",
                                            "released pct occurrences")},
    )
    c_rho = clusters.correlation
    st.caption(f"Spearman rank correlation of the shares of occurrences with the tree's "
               f"pct_total_occurrences: {'n/a' if c_rho.rho is None else f'{c_rho.rho:+.3f}'} "
               f"over {c_rho.n} {clusters.kind}.")

    st.markdown("**Headline figures** (the same text as `annotator report` and the dataset "
                "card: each share with its 95% Wilson interval and its denominator)")
    st.dataframe(pd.DataFrame([f.model_dump() for f in found.headline()],
                              columns=["figure", "text", "published"]),
                 hide_index=True, key="report-headline")

    st.markdown(f"**Response types** ({found.response_types_labelled:,} labelled)")
    st.dataframe(
        pd.DataFrame(
            [{"response type": r.response_type, "conversations": r.conversations,
              "share": common.share(None if r.pct is None else r.pct / 100),
              "published share": f"{r.published_pct:.1f}%" if r.published else "not published"}
             for r in found.response_types]
        ),
        hide_index=True, key="report-rt",
    )
    if found.by_response_type is not None:
        by_response_type.show(found.by_response_type)

    m = found.mirroring
    st.markdown(f"**Mirroring**: {m.mirrored:,} of {m.conversations_with_human_values:,} "
                "conversations with user values have an AI value equal to one the user stated.")
    if m.per_value:
        common.paginated(
            pd.DataFrame([{"mirrored value": v.value, "AI holds it": v.conversations,
                           "user stated it too": v.mirrored, "share": v.pct}
                          for v in m.per_value]),
            key="report-mirrored", column_config={"share": percent},
        )

    missing = (f"; not in the taxonomy: {common.md(', '.join(found.opposing_not_in_taxonomy))}"
               if found.opposing_not_in_taxonomy else "")
    st.markdown(f"**Possible jailbreaks**: {len(found.flagged):,} conversations whose AI values "
                f"include an opposing value ({common.md(', '.join(found.opposing_values))}"
                f"{missing}; set `ANNOTATOR_OPPOSING_VALUES` to change the list).")
    if found.flagged:
        links = common.flagged_task_links(study, [f.conversation_id for f in found.flagged])
        common.paginated(
            pd.DataFrame([{"conversation": f.conversation_id,
                           "opposing values": ", ".join(f.opposing_values),
                           "response type": f.response_type,
                           "Label Studio": (links.get(f.conversation_id) or [None])[0],
                           "command": f.show_command} for f in found.flagged]),
            key="report-flagged", opens="conversation",
            column_config={
                "Label Studio": st.column_config.LinkColumn("Label Studio task"),
            },
        )

# --- values by task -----------------------------------------------------------------------------
by_task = found.values_by_task if found is not None else None
if by_task is not None:
    st.markdown(
        f"**Values by task** ({by_task.conversations:,} conversations with a task"
        + (f"; {by_task.without_task:,} without one left out" if by_task.without_task else "")
        + f"). Top values per task by adjusted Pearson residual of the value x task table; "
        f"significant after Bonferroni over {by_task.cells_tested:,} cells at "
        f"alpha {by_task.alpha:g}. Share: of the task's conversations, with a Wilson 95% "
        "interval.")
    if by_task.note:
        st.info(common.md(by_task.note))
    rows = [{"task": t.task, "task conversations": t.conversations, "value": x.value,
             "residual": round(x.residual, 2), "significant": x.significant,
             "count": x.conversations, "share": 100 * x.share,
             "95% interval": f"{100 * x.low:.1f}% to {100 * x.high:.1f}%"}
            for t in by_task.tasks for x in t.top]
    if rows:
        common.paginated(pd.DataFrame(rows), key="report-by-task",
                         column_config={"share": st.column_config.NumberColumn(
                             format="%.1f%%")})
    if by_task.invariant:
        st.markdown("**Context-invariant values**: lowest coefficient of variation of the "
                    "share across tasks first (published: " + ", ".join(
                        f"{name} {cv:.2f}" for name, cv in by_task.published_cv.items()) + ")")
        st.dataframe(pd.DataFrame(
            [{"value": r.value, "tasks": r.tasks, "mean share": 100 * r.mean_share,
              "CV": round(r.cv, 2),
              "CV 95% interval": "n/a" if r.low is None else f"{r.low:.2f} to {r.high:.2f}",
              "published CV": r.published_cv} for r in by_task.invariant]),
            hide_index=True, key="report-invariant",
            column_config={"mean share": st.column_config.NumberColumn(format="%.1f%%")})
