"""Annotators: each reviewer's progress and the flagged and skipped conversations with their
notes, inter-annotator agreement with intervals at every taxonomy level, the pairwise kappa
matrix, and each annotator's activity and lead time."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from annotator.app.app_pages import common
from annotator.measure import summaries
from annotator.measure.progress import ago

st.title("Annotators")
study = common.require_study()

# --- review progress ----------------------------------------------------------------------------
review = common.review_progress(study)
if review.reviewers or review.flagged_or_skipped:
    st.subheader("Review progress")
    st.caption(f"Annotations pulled {ago(review.last_pulled)} (`annotator pull` brings the "
               "newest). Assigned: the tasks pushed to a reviewer's own Label Studio; on a "
               "shared server, every task of each project they work in.")
    if review.reviewers:
        st.dataframe(
            pd.DataFrame([{**r.model_dump(exclude={"servers"}),
                           "last_pulled": ago(r.last_pulled)} for r in review.reviewers]),
            hide_index=True, key="progress-table",
        )
    if review.flagged_or_skipped:
        kinds = ", ".join(f"{n} {flag}" for flag, n in review.by_flag.items())
        st.markdown(f"**{review.flagged} flagged** ({common.md(kinds or 'none')}), "
                    f"**{review.skipped} skipped**. A flag without labels is listed here but is "
                    "no vote in adjudication or agreement.")
        st.dataframe(
            pd.DataFrame([f.model_dump() for f in review.flagged_or_skipped]),
            hide_index=True, key="flagged-table",
        )
if study.sig("annotations").startswith("0:"):
    st.info("No annotations yet: run `annotator push` to send tasks to Label Studio, label them, "
            "then `annotator pull` (or `annotator demo` for the demo study).",
            icon=":material/group:")
    common.stop()

bundle = common.annotators_result(study)
if bundle is None:
    common.stop()
meta = bundle.meta
rows = bundle.frames["agreement"]
annotators = meta["annotators"]
activity = bundle.frames["activity"]

cols = st.columns(3)
cols[0].metric("Annotators", len(annotators))
cols[1].metric("Conversations annotated", f"{meta['n_conversations']:,}")
cols[2].metric("Annotations", f"{int(activity['annotations'].sum()):,}")
boot = meta.get("settings", {}).get("n_boot", 0)
st.caption(
    f"Intervals: 95% bootstrap over conversations, {boot} resamples, seeded."
    if boot else "Intervals are off (Settings → Bootstrap resamples)."
)

# --- response type -----------------------------------------------------------------------------
st.subheader("Response type")
RT_METRICS = {
    "krippendorff_alpha_nominal": "Krippendorff's alpha (nominal)",
    "krippendorff_alpha_ordinal": "Krippendorff's alpha (ordinal)",
    "fleiss_kappa": "Fleiss' kappa",
    "gwet_ac1": "Gwet's AC1",
    "percent_agreement": "Percent agreement",
}
rt = rows.loc[(rows["field"] == "response_type") & rows["metric"].isin(list(RT_METRICS))]
rt = rt.set_index("metric").reindex([m for m in RT_METRICS if m in set(rt["metric"])])
st.dataframe(common.stat_table(rt.reset_index(), "metric", RT_METRICS), hide_index=True,
             key="rt-agreement")

# --- values at each level ---------------------------------------------------------------------
st.subheader("Values at each taxonomy level")
fld = st.segmented_control(
    "Labels", list(summaries.FIELDS), default="ai_values",
    format_func=summaries.FIELD_LABELS.get, key="annotators-field",
) or "ai_values"
sets = rows.loc[
    (rows["field"] == fld)
    & rows["metric"].isin(["krippendorff_alpha_masi", "krippendorff_alpha_jaccard"])
].copy()
sets["distance"] = sets["metric"].str.removeprefix("krippendorff_alpha_").str.upper()
sets["level_name"] = sets["level"].astype(int).map(summaries.LEVEL_LABELS)
level_order = [summaries.LEVEL_LABELS[lv] for lv in summaries.LEVELS]
if sets.empty:
    st.info("No value labels to compare.")
else:
    points = alt.Chart(sets).encode(
        x=alt.X("level_name:N", title="Taxonomy level", sort=level_order,
                axis=alt.Axis(labelAngle=0)),
        xOffset=alt.XOffset("distance:N"),
        color=alt.Color("distance:N", title="Set distance"),
    )
    tooltip = [alt.Tooltip("level_name:N", title="Level"),
               alt.Tooltip("distance:N", title="Distance"),
               alt.Tooltip("value:Q", title="Alpha", format=".3f"),
               alt.Tooltip("low:Q", title="95% low", format=".3f"),
               alt.Tooltip("high:Q", title="95% high", format=".3f"),
               alt.Tooltip("n_units:Q", title="Conversations", format=",")]
    common.chart(
        (
            points.mark_rule().encode(y=alt.Y("low:Q", title="Krippendorff's alpha"),
                                      y2="high:Q", tooltip=tooltip)
            + points.mark_point(filled=True, size=80).encode(y="value:Q", tooltip=tooltip)
        ).properties(title=f"Inter-annotator alpha for {summaries.FIELD_LABELS[fld]} "
                           "(point and 95% interval)"),
        key="levels-chart",
    )
    table = sets.sort_values(["level", "distance"])
    shown = common.stat_table(table.assign(what=table["level_name"] + " · " + table["distance"]),
                              "what")
    st.dataframe(shown, hide_index=True, key="levels-table")

# --- pairwise kappa -----------------------------------------------------------------------------
st.subheader("Pairwise Cohen's kappa (response type)")
kappa = bundle.frames["kappa"]
if kappa.empty:
    st.info("Pairwise kappa needs two annotators who labelled the same conversations.")
else:
    both = pd.concat([kappa, kappa.rename(columns={"a": "b", "b": "a"})], ignore_index=True)
    both["interval"] = [common.interval(lo, hi) for lo, hi in zip(both["low"], both["high"],
                                                                   strict=True)]
    heat = alt.Chart(both, title="Cohen's kappa for each pair of annotators").encode(
        x=alt.X("a:N", title="Annotator", sort=annotators),
        y=alt.Y("b:N", title="Annotator", sort=annotators),
        tooltip=[alt.Tooltip("a:N", title="Annotator"), alt.Tooltip("b:N", title="With"),
                 alt.Tooltip("value:Q", title="Kappa", format=".3f"),
                 alt.Tooltip("interval:N", title="95% interval"),
                 alt.Tooltip("n_units:Q", title="Shared conversations", format=",")],
    )
    common.chart(
        heat.mark_rect().encode(
            color=alt.Color("value:Q", title="Kappa", scale=alt.Scale(domain=[-1, 1],
                                                                      scheme="redblue"))
        )
        + heat.mark_text(baseline="middle").encode(text=alt.Text("value:Q", format=".2f")),
        key="kappa-chart",
    )
    st.dataframe(common.stat_table(kappa.assign(pair=kappa["a"] + " ~ " + kappa["b"]), "pair"),
                 hide_index=True, key="kappa-table")

# --- per value ----------------------------------------------------------------------------------
with st.expander("Agreement on each of the most used values (binary alpha)"):
    per = rows.loc[(rows["field"] == fld) & (rows["metric"] == "value_alpha")].copy()
    per = per.loc[per["level"].astype(int) == 0]
    per["value name"] = per["value_name"]
    common.paginated(common.stat_table(per, "value name"), key="per-value-alpha")

# --- activity -----------------------------------------------------------------------------------
st.subheader("Activity and lead time")
st.dataframe(
    activity, hide_index=True, key="activity-table",
    column_config={
        "median_lead_time_s": st.column_config.NumberColumn("median lead time (s)", format="%.1f"),
        "mean_lead_time_s": st.column_config.NumberColumn("mean lead time (s)", format="%.1f"),
    },
)
lead = bundle.frames["lead_times"]
if lead.empty:
    st.caption("No lead times recorded (labels imported from files carry none; Label Studio "
               "records them for annotations pulled with `annotator pull`).")
else:
    order = list(lead.sort_values("order")["bin"].drop_duplicates())
    common.chart(
        alt.Chart(lead, title="Time spent per annotation")
        .mark_bar()
        .encode(
            x=alt.X("bin:N", title="Lead time", sort=order),
            xOffset=alt.XOffset("annotator:N"),
            y=alt.Y("count:Q", title="Annotations"),
            color=alt.Color("annotator:N", title="Annotator"),
            tooltip=[alt.Tooltip("annotator:N", title="Annotator"),
                     alt.Tooltip("bin:N", title="Lead time"),
                     alt.Tooltip("count:Q", title="Annotations", format=",")],
        ),
        key="lead-chart",
    )

with st.expander("How to read these figures"):
    st.text(meta.get("how_to_read", ""))
