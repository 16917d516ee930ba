"""Prompts: every prompt version against gold and each annotator; two versions compared (which
conversations improved or regressed, metric deltas with paired intervals); confusion matrices;
per-value precision and recall."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from annotator.app import precompute, summary_cache
from annotator.app.app_pages import common
from annotator.measure import frames as report
from annotator.measure import summaries

st.title("Prompts")
study = common.require_study()
ids = study.prompt_ids
if not ids:
    st.info("No extractions yet: run `annotator extract` (with no ANTHROPIC_API_KEY it runs the "
            "offline baseline), then come back to compare prompt versions.",
            icon=":material/smart_toy:")
    common.stop()
prompt = common.selected_prompt(study)
common.prompt_caption(study, prompt)
no_gold = study.sig("gold").startswith("0:")

level = st.segmented_control(
    "Taxonomy level for value scores", list(summaries.LEVELS), default=0,
    format_func=summaries.LEVEL_LABELS.get, key="prompts-level",
)
level = 0 if level is None else int(level)

results = {pid: common.prompt_result(study, pid) for pid in ids}
ready = {pid: b for pid, b in results.items() if b is not None}

# --- every version against every reference -------------------------------------------------------
st.subheader("Every prompt version against gold and each annotator")
if no_gold:
    st.info("No gold labels yet: run `annotator adjudicate` (or decide on the Gold page) to "
            "score prompts against gold; scores against each annotator are below.",
            icon=":material/gavel:")
SHOWN = {
    ("accuracy", "response_type"): "type accuracy",
    ("cohen_kappa", "response_type"): "type kappa",
    ("micro_f1", "ai_values"): "AI values micro F1",
    ("macro_f1", "ai_values"): "AI values macro F1",
    ("mean_jaccard", "ai_values"): "AI values mean Jaccard",
    ("micro_f1", "human_values"): "human values micro F1",
}
summary_rows = []
for pid, bundle in ready.items():
    m = bundle.frames["metrics"]
    m = m.loc[m["level"].isna() | (m["level"] == level)]
    for ref in bundle.meta["references"]:
        row = {"prompt": common.prompt_label(study, pid), "reference": ref}
        for (metric, fld), label in SHOWN.items():
            hit = m.loc[(m["reference"] == ref) & (m["metric"] == metric) & (m["field"] == fld)]
            if hit.empty:
                row[label] = ""
                continue
            r = hit.iloc[0]
            text = "n/a" if pd.isna(r["value"]) else f"{r['value']:.3f}"
            span = common.interval(r["low"], r["high"])
            row[label] = f"{text} {span}".strip()
        row["conversations"] = int(
            m.loc[(m["reference"] == ref) & (m["metric"] == "accuracy"), "n_units"].max() or 0
        )
        summary_rows.append(row)
if summary_rows:
    st.dataframe(pd.DataFrame(summary_rows), hide_index=True, key="prompt-summary")
    st.caption(f"Value scores at the {summaries.LEVEL_LABELS[level]} level. Against gold: value "
               "and 95% bootstrap interval; against each annotator: value.")
    left_out = {pid: b.meta.get("few_shot_left_out", 0) for pid, b in ready.items()}
    if any(left_out.values()):
        st.caption("Left out of a version's scores, as its own few-shot examples: " + "; ".join(
            f"{common.md(common.prompt_label(study, pid))}: {n:,} conversations"
            for pid, n in left_out.items() if n))

# --- anchoring ----------------------------------------------------------------------------------
st.subheader("Anchoring: pre-filled against blind tasks")
st.caption("Each prompt version's labels against every Label Studio annotation, on tasks whose "
           "form a prediction pre-filled and on blind tasks (pushed without one). Anchoring = "
           "pre-filled minus blind: above 0, reviewers agreed more with the model when they saw "
           "its labels. 95% bootstrap interval over conversations.")


def _anchoring() -> list:
    # A small query (the pushed conversations only) and a seconds-long computation: kept in
    # memory per state of the tables it reads and per number of resamples.
    def compute() -> list:
        with summary_cache.study_db(study.path) as database:
            return report.study_anchoring(database, n_boot=common.n_boot())

    key = ("anchoring", study.path, study.sig("annotations"), study.sig("tasks"),
           tuple(study.sig(f"extractions:{pid}") for pid in ids), common.n_boot())
    return summary_cache.memo(key, compute)


anchored = _anchoring()
if not anchored:
    st.info("No annotations pulled from Label Studio yet: `annotator push` (a share of the "
            "tasks goes blind, `--blind-share`), label, then `annotator pull`.",
            icon=":material/anchor:")
else:
    rows = []
    for result in anchored:
        for m in result.metrics:
            rows.append({
                "prompt": common.prompt_label(study, result.prompt_id),
                "metric": {"accuracy": "type accuracy",
                           "micro_f1": "AI values micro F1"}[m.metric],
                "pre-filled": m.prefilled.value, "blind": m.blind.value,
                "anchoring": m.anchoring.value,
                "95% interval": common.interval(m.anchoring.low, m.anchoring.high),
                "conversations (pre-filled / blind)":
                    f"{m.prefilled.n_units:,} / {m.blind.n_units:,}",
            })
    st.dataframe(pd.DataFrame(rows).round(3), hide_index=True, key="anchoring-table")
    for result in anchored:
        say = st.info if result.enough_blind else st.warning
        say(f"{common.md(common.prompt_label(study, result.prompt_id))}: "
            f"{common.md(result.statement)}", icon=":material/anchor:")

# --- two versions ---------------------------------------------------------------------------------
st.subheader("Compare two versions against gold")
others = [p for p in ids if p != prompt]
if not others:
    st.info("Only one prompt version has extractions. Add a version under `prompts/` and run "
            "`annotator extract --prompt <id>` to compare.", icon=":material/compare_arrows:")
elif no_gold:
    st.info("Comparing versions needs gold labels.")
else:
    default = ids[ids.index(prompt) - 1] if ids.index(prompt) > 0 else others[0]
    if st.session_state.get("compare_with") not in others:
        st.session_state["compare_with"] = default
    base = st.selectbox("Compare the sidebar's version with", others, key="compare_with",
                        format_func=lambda p: common.prompt_label(study, p))
    # computed once per pair, in a fixed order (the other order is its mirror image), and
    # only once both versions' scores are there (it reads them)
    first, second = sorted([base, prompt])
    compared = (common.get_bundle(study, precompute.comparison(first, second, level,
                                                               common.n_boot()))
                if ready.get(base) is not None and ready.get(prompt) is not None else None)
    if compared is not None:
        changes, deltas = compared.frames["changes"], compared.frames["deltas"]
        if first != base:
            changes, deltas = summaries.swap_comparison(changes, deltas)
        st.markdown(f"**a** = {common.md(common.prompt_label(study, base))} · "
                    f"**b** = {common.md(common.prompt_label(study, prompt))} · "
                    f"{len(changes):,} conversations with gold extracted by both")
        counts = changes["change"].value_counts()
        cols = st.columns(4)
        for col, kind in zip(cols, ("improved", "regressed", "mixed", "same"), strict=True):
            col.metric(kind.capitalize(), f"{int(counts.get(kind, 0)):,}")
        names = {"accuracy": "response-type accuracy", "cohen_kappa": "response-type kappa",
                 "micro_f1": "AI values micro F1", "mean_jaccard": "AI values mean Jaccard"}
        shown = deltas.assign(
            metric=deltas["metric"].map(names),
            interval=[common.interval(lo, hi) for lo, hi in zip(deltas["low"], deltas["high"],
                                                                strict=True)],
        )
        delta_chart = alt.Chart(shown).encode(
            y=alt.Y("metric:N", title=None, sort=list(names.values())),
            tooltip=[alt.Tooltip("metric:N", title="Metric"),
                     alt.Tooltip("a:Q", title="a", format=".3f"),
                     alt.Tooltip("b:Q", title="b", format=".3f"),
                     alt.Tooltip("delta:Q", title="b - a", format="+.3f"),
                     alt.Tooltip("interval:N", title="95% interval")],
        )
        common.chart(
            (
                delta_chart.mark_rule().encode(x=alt.X("low:Q", title="b - a"), x2="high:Q")
                + delta_chart.mark_point(filled=True, size=80).encode(x="delta:Q")
                + alt.Chart(pd.DataFrame({"x": [0]})).mark_rule(strokeDash=[4, 4]).encode(x="x:Q")
            ).properties(title="Change from a to b (point and 95% paired interval)"),
            key="delta-chart",
        )
        st.dataframe(
            shown[["metric", "a", "b", "delta", "interval", "n_units"]].round(4),
            hide_index=True, key="delta-table",
        )
        kind = st.segmented_control("Conversations", ["improved", "regressed", "mixed"],
                                    default="regressed", key="change-kind") or "regressed"
        # positions, not a copy: only the shown page's rows are taken from 300,000
        picked = np.flatnonzero((changes["change"] == kind).to_numpy(bool))
        common.paginated(
            changes[["conversation_id", "gold_type", "type_a", "type_b", "jaccard_a",
                     "jaccard_b", "gold_values", "values_a", "values_b"]],
            key=f"changes-{kind}", rows=picked, opens="conversation_id",
            column_config={
                "jaccard_a": st.column_config.NumberColumn(format="%.3f"),
                "jaccard_b": st.column_config.NumberColumn(format="%.3f"),
            },
        )

if prompt not in ready:
    common.stop()
bundle = ready[prompt]

# --- confusion -----------------------------------------------------------------------------------
st.subheader("Response-type confusion")
confusion = bundle.frames["confusion"]
refs = list(dict.fromkeys(confusion["reference"])) if len(confusion) else []
if refs:
    ref = st.selectbox("Reference", refs, key="confusion-ref")
    cm = confusion.loc[confusion["reference"] == ref]
    order = list(summaries.RESPONSE_TYPES)
    base_chart = alt.Chart(
        cm, title=f"{common.prompt_label(study, prompt)} against {ref}"
    ).encode(
        x=alt.X("model_type:N", title="Model", sort=order),
        y=alt.Y("reference_type:N", title=ref.capitalize(), sort=order),
        tooltip=[alt.Tooltip("reference_type:N", title="Reference"),
                 alt.Tooltip("model_type:N", title="Model"),
                 alt.Tooltip("count:Q", title="Conversations", format=",")],
    )
    common.chart(
        base_chart.mark_rect().encode(color=alt.Color("count:Q", title="Conversations",
                                                      scale=alt.Scale(scheme="blues")))
        + base_chart.mark_text().encode(text="count:Q"),
        key="confusion-chart",
    )

# --- per value ---------------------------------------------------------------------------------
st.subheader("Per-value precision and recall against gold")
per = bundle.frames["per_value"]
per = per.loc[per["level"] == level].sort_values(["gold", "predicted"], ascending=False)
if per.empty:
    st.info("No values on either side at this level.")
else:
    common.chart(
        alt.Chart(per.head(200), title=f"Precision and recall per {summaries.LEVEL_LABELS[level]}"
                  " (200 most frequent in gold)")
        .mark_circle(opacity=0.7)
        .encode(
            x=alt.X("recall:Q", title="Recall", scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("precision:Q", title="Precision", scale=alt.Scale(domain=[0, 1])),
            size=alt.Size("gold:Q", title="In gold"),
            tooltip=[alt.Tooltip("label:N", title="Value"),
                     alt.Tooltip("precision:Q", title="Precision", format=".2f"),
                     alt.Tooltip("recall:Q", title="Recall", format=".2f"),
                     alt.Tooltip("gold:Q", title="In gold", format=","),
                     alt.Tooltip("predicted:Q", title="Predicted", format=",")],
        ),
        key="per-value-chart",
    )
    common.paginated(
        per[["label", "gold", "predicted", "tp", "precision", "recall", "f1"]].round(3),
        key=f"per-value-{level}",
    )
