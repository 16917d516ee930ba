"""Gold: decide a conversation's final labels in the app (start from an annotator, the model or
the current gold, then edit), written to the database and to the gold file with who and when."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from annotator import config
from annotator.app import precompute, summary_cache
from annotator.app.app_pages import common
from annotator.datasets.gold import decide, write_gold_file
from annotator.errors import AnnotatorError
from annotator.models import MAJORITY, Labels, ResponseType

st.title("Gold")
study = common.require_study()
prompt = common.selected_prompt(study)
common.prompt_caption(study, prompt)

# The last decision saved stays said while its conversation is shown: the page reruns by
# itself when the summaries the decision changed are recomputed, and a note shown once was
# gone before the reviewer could read it.
saved = st.session_state.get("gold_saved")
saved_note = st.empty()
if saved:
    saved_note.success(
        f"Saved gold for {saved['conversation']} (decided by {common.md(saved['by'])} at "
        f"{saved['at']}); wrote {saved['written']:,} records to {common.md(saved['file'])}.",
        icon=":material/check_circle:",
    )

conversations = common.conversations_result(study)
if conversations is None:
    common.stop()
table = conversations.frames["conversations"]
if table.empty or not (table["n_annotations"] > 0).any():
    st.info("No annotations to adjudicate yet: run `annotator push`, label in Label Studio, "
            "then `annotator pull` (or `annotator demo` for the demo study).",
            icon=":material/gavel:")
    common.stop()

# --- the queue ----------------------------------------------------------------------------------
# What `annotator adjudicate` leaves to a person (splits, incomplete annotations), computed
# ahead with the other summaries (it reads every annotation of the study).
needed_bundle = common.get_bundle(study, precompute.people_needed())
if needed_bundle is None:
    common.stop()
needed = summary_cache.memo(
    ("people-needed", study.path, study.sig("annotations"), study.sig("gold:people")),
    lambda: dict(zip(needed_bundle.frames["needed"]["conversation_id"],
                     needed_bundle.frames["needed"]["reason"], strict=True)))
st.subheader("Conversations to decide")
scope = st.segmented_control(
    "Show",
    ["needs a person", "no majority", "any disagreement", "decided by a person", "all"],
    default="needs a person",
    key="gold-scope",
    help="Needs a person: what `annotator adjudicate` leaves to a person, with why (annotators "
         "split on the response type or on subjective, or an annotation left a required field "
         "empty). No majority: the annotators split on the response type.",
) or "needs a person"
masks = {
    "needs a person": table["conversation_id"].isin(list(needed)),
    "no majority": table["rt_split"],
    "any disagreement": table["rt_split"] | table["values_split"] | table["types_differ"],
    "decided by a person": table["decided_by"].notna() & (table["decided_by"] != MAJORITY),
    "all": table["n_annotations"] >= 0,
}
queue = table.loc[masks[scope].to_numpy(bool)]
columns = ["conversation_id", "annotator_types", "gold_type", "decided_by", "decided_at"]
if scope == "needs a person":
    queue = queue.assign(reason=queue["conversation_id"].map(needed))
    columns = ["conversation_id", "reason", "annotator_types", "gold_type", "decided_by"]
plural = "" if len(queue) == 1 else "s"
st.caption(f"{len(queue):,} conversation{plural} · {len(needed):,} need a person · "
           f"{int(table['rt_split'].sum()):,} without a majority on the response type")
page_rows = common.paginated(queue[columns], key=f"gold-queue-{scope}")

choices = list(page_rows["conversation_id"])
asked = st.query_params.get("c")
if asked and asked not in choices:
    choices.insert(0, asked)
first = choices.index(asked) if asked in choices else 0
if not choices:
    st.info("Nothing to decide here: choose another view above.")
    common.stop()
chosen = st.selectbox("Conversation", choices, index=first,
                      key=f"gold-pick-{scope}-{choices[0]}")
if saved and saved["conversation"] != chosen:  # the reviewer moved on: the note is done
    st.session_state.pop("gold_saved", None)
    saved_note.empty()

detail = common.show_conversation(study, chosen, prompt)
if detail is None:
    common.stop()

# --- the decision -------------------------------------------------------------------------------
st.subheader("Decide the gold labels")
starts: dict[str, dict] = {}
if detail["gold"] is not None:
    starts[f"current gold ({detail['gold']['decided_by']})"] = detail["gold"]
for a in detail["annotations"]:
    starts[common.annotation_name(a)] = a
if (detail["gold"] or {}).get("new_labels_since"):
    st.warning("New labels since this decision: the annotations changed after it was made.",
               icon=":material/update:")
if detail.get("reopened"):
    st.info(f"A majority decision of this conversation was re-opened: "
            f"{common.md(detail['reopened']['reason'])}. Its labels are in the history below.",
            icon=":material/history:")
for e in detail["extractions"]:
    if e["status"] == "ok":
        starts[f"model {e['prompt_id']}"] = {
            **e,
            "ai_values": [v["name"] for v in e["ai_values"]],
            "human_values": [v["name"] for v in e["human_values"]],
        }
start_name = st.radio("Start from", list(starts) or ["empty"], horizontal=True,
                      key=f"gold-start-{chosen}", format_func=common.md)  # options are Markdown
start = starts.get(start_name, {})


def pool(field: str) -> list[str]:
    names = [v for labels in starts.values() for v in labels.get(field) or []]
    return list(dict.fromkeys(str(v) for v in names))


types = [r.value for r in ResponseType]
form_key = f"{chosen}-{start_name}"
with st.form(f"gold-form-{form_key}"):
    ai_values = st.multiselect(
        "AI values", pool("ai_values"), default=list(dict.fromkeys(start.get("ai_values") or [])),
        accept_new_options=True, key=f"gold-ai-{form_key}",
        help="Type a name to add a value none of the sources gave.",
    )
    human_values = st.multiselect(
        "Human values", pool("human_values"),
        default=list(dict.fromkeys(start.get("human_values") or [])),
        accept_new_options=True, key=f"gold-human-{form_key}",
    )
    current_type = start.get("response_type")
    response_type = st.selectbox(
        "Response type", types,
        index=types.index(current_type) if current_type in types else None,
        key=f"gold-type-{form_key}",
    )
    subjective_default = start.get("subjective")
    subjective = st.radio(
        "Subjective", ["yes", "no"], horizontal=True,
        index=0 if subjective_default in (None, True) else 1, key=f"gold-subjective-{form_key}",
    )
    decided_by = st.text_input("Decided by", key="decided_by",
                               help="Your name or e-mail: stored with the decision.")
    submitted = st.form_submit_button("Save gold decision", type="primary")

# Beside the study (or `annotator app --gold-dir`), never the code tree's gold/; chosen again
# when the sidebar switches to another study, so one study's gold never lands in another's file.
default_file = config.study_gold_file(study.path)
with st.expander("Where gold is written"):
    if st.session_state.get("gold_file_study", study.path) != study.path:
        st.session_state.pop("gold_file", None)
    st.session_state["gold_file_study"] = study.path
    if "gold_file" not in st.session_state:
        st.session_state["gold_file"] = str(default_file)
    st.text_input("Gold file", key="gold_file",
                  help="The study's gold labels are written here after each decision, one "
                       "conversation a line, sorted by id.")

if submitted:
    if response_type is None:
        st.error("Choose a response type.")
    else:
        labels = Labels(ai_values=ai_values, human_values=human_values,
                        response_type=response_type, subjective=subjective == "yes")
        gold_file = Path(st.session_state["gold_file"])
        try:
            with summary_cache.study_db(study.path) as database:
                decision = decide(database, chosen, labels, decided_by)
                written = write_gold_file(database, gold_file)
        except AnnotatorError as exc:
            st.error(str(exc))
        else:
            st.session_state["gold_saved"] = {
                "conversation": chosen, "by": decision.decided_by,
                "at": decision.decided_at.isoformat(timespec="seconds"),
                "written": written, "file": str(gold_file),
            }
            st.rerun()

history = ((detail["gold"] or {}).get("history")
           or (detail.get("reopened") or {}).get("history") or [])
if history:
    with st.expander(f"Earlier gold labels of this conversation ({len(history)})"):
        st.dataframe(
            [common.labels_row(f"{h.get('decided_by')} at {h.get('decided_at')}", h)
             for h in history],
            hide_index=True, key=f"gold-history-{chosen}",
        )
