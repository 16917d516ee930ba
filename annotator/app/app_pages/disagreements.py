"""Disagreements: conversations where the model and gold, or the annotators, disagree (by kind,
value, category, response type and prompt version), read with each value's evidence quote
highlighted and every source's labels side by side."""

from __future__ import annotations

import streamlit as st

from annotator.app import summary_cache
from annotator.app.app_pages import common
from annotator.measure import summaries
from annotator.taxonomy import TOP_CATEGORIES

st.title("Disagreements")
study = common.require_study()
prompt = common.selected_prompt(study)
common.prompt_caption(study, prompt)
conversations = common.conversations_result(study)
outcomes = None
if prompt:
    bundle = common.prompt_result(study, prompt)
    outcomes = bundle.frames["model"] if bundle is not None else None
if conversations is None:
    common.stop()
if conversations.meta["n"] == 0:
    st.info("No annotated or adjudicated conversations yet: run `annotator push` and "
            "`annotator pull`, then `annotator adjudicate` (or `annotator demo`).",
            icon=":material/forum:")
    common.stop()

deps = (study.sig("annotations"), study.sig("gold"),
        study.sig(f"extractions:{prompt}") if prompt else "", outcomes is not None)
table = summary_cache.memo(
    ("disagreements", study.path, prompt, *deps),
    lambda: summaries.disagreement_table(conversations.frames["conversations"], outcomes),
)
options = summary_cache.memo(("value-options", study.path, prompt, *deps),
                     lambda: summaries.value_options(table))

cols = st.columns([3, 2, 2, 2])
kinds = cols[0].multiselect(
    "Disagreement", list(summaries.KINDS), default=["model_type", "annotators_type"],
    format_func=summaries.KINDS.get, key="dis-kinds",
    help="Conversations with any of these (none chosen: every conversation).",
)
value = cols[1].selectbox("Value", options, index=None, key="dis-value",
                          placeholder="any value")
categories = cols[2].multiselect("Top category", list(TOP_CATEGORIES), key="dis-categories")
types = cols[3].multiselect("Response type (gold or model)", list(summaries.RESPONSE_TYPES),
                            key="dis-types")
rows = summary_cache.memo(
    ("dis-filter", study.path, prompt, *deps, tuple(kinds), value, tuple(categories),
     tuple(types)),
    lambda: summaries.disagreement_rows(table, kinds, value, categories, types),
)
label = common.prompt_label(study, prompt) if prompt else "no prompt version"
st.caption(f"{len(rows):,} of {len(table):,} conversations · model: {common.md(label)}")
if prompt and outcomes is None:
    st.caption("The model's labels appear when its scores are computed.")

show = table[["conversation_id", "gold_type", "model_type", "annotator_types",
              "gold_values", "model_values", "decided_by"]]
page_rows = common.paginated(show, key="dis", rows=rows, opens="conversation_id")
if len(rows) == 0:
    st.info("No conversation matches these filters.")
    common.stop()

st.subheader("Read a conversation")
asked = st.query_params.get("c")
if asked and asked != st.session_state.get("dis-followed"):
    # a conversation just opened from a table or a link: show it, not an earlier search's hits
    st.session_state["dis-followed"] = asked
    st.session_state["dis-search"] = ""
search = st.text_input(
    "Find a conversation", key="dis-search", placeholder="id prefix, task number or words",
    help="Searches every conversation of the study, not only the rows above: an id prefix as "
         "printed anywhere, a Label Studio task number, the source's own id, or words from "
         "the dialogue (the first 50 matches).",
).strip()
if search:
    hits = common.search_conversations(study, search)
    if not hits:
        st.info("No conversation has this id prefix, task number or text.",
                icon=":material/search_off:")
        common.stop()
else:
    hits = common.conversation_snippets(study, list(page_rows["conversation_id"]))
if asked and not search and asked not in hits:
    hits = {asked: common.conversation_snippets(study, [asked]).get(asked), **hits}
choices = list(hits)
first = choices.index(asked) if asked in choices and not search else 0
chosen = st.selectbox(
    "Conversation", choices, index=first, key=f"dis-read-{search}-{asked}-{choices[0]}",
    format_func=lambda c: common.hit_label(c, hits.get(c)),
    help="The rows shown above (or the one in the link you followed); or what the search "
         "found.",
)
if chosen:
    common.show_conversation(study, chosen, prompt)
