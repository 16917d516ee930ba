"""Export: choose filters and a format, then download the validated, adjudicated dataset."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from annotator.app import summary_cache
from annotator.app.app_pages import common
from annotator.datasets.export import ExportFilter, ExportFormat, render_export
from annotator.datasets.writers import TEXT_FORMATS
from annotator.models import ResponseType
from annotator.taxonomy import TOP_CATEGORIES

st.title("Export")
study = common.require_study()
if study.sig("gold").startswith("0:"):
    st.info("Nothing adjudicated yet: run `annotator adjudicate` (or decide on the Gold page). "
            "Only adjudicated conversations are exported.", icon=":material/gavel:")
    common.stop()

st.caption("Adjudicated conversations with their gold labels, each value resolved to its "
           "taxonomy node; every record is validated and an invalid one is listed, not written.")
sources = common.sources(study)
with st.form("export-form"):
    cols = st.columns(3)
    chosen_sources = cols[0].multiselect("Sources", list(sources), key="export-sources",
                                         help="None chosen: every source.")
    types = cols[1].multiselect("Response types", [r.value for r in ResponseType],
                                key="export-types")
    categories = cols[2].multiselect("With an AI value in", list(TOP_CATEGORIES),
                                     key="export-categories")
    cols = st.columns(4)
    person_only = cols[0].checkbox("Decided by a person only", key="export-person")
    subjective_only = cols[1].checkbox("Subjective only", key="export-subjective")
    min_annotations = cols[2].number_input("At least N annotations", min_value=0, value=0,
                                           key="export-min")
    include_annotations = cols[3].checkbox("Include each annotator's labels", value=True,
                                           key="export-annotations")
    fmt = st.radio("Format", [f.value for f in TEXT_FORMATS], horizontal=True,
                   key="export-format")
    prepared = st.form_submit_button("Prepare the export", type="primary")

filters = ExportFilter(
    sources=chosen_sources,
    response_types=[ResponseType(t) for t in types],
    categories=categories,
    decided_by_person_only=person_only,
    subjective_only=subjective_only,
    min_annotations=int(min_annotations),
    include_annotations=include_annotations,
)
key = ("export", study.path, study.fp, fmt, filters.model_dump_json())
if prepared:
    with (
        st.spinner("Validating and writing the records…"),
        summary_cache.study_db(study.path) as db,
    ):
        text, rep = render_export(db, ExportFormat(fmt), filters)
    st.session_state["export"] = {"key": key, "text": text, "report": rep}

done = st.session_state.get("export")
if done is None or done["key"] != key:
    st.caption("Choose filters and a format, then prepare the export.")
    common.stop()

rep = done["report"]
cols = st.columns(3)
cols[0].metric("Exported", f"{rep.exported:,}")
cols[1].metric("Filtered out", f"{rep.filtered_out:,}")
cols[2].metric("Left out", f"{len(rep.left_out):,}",
               help="Invalid gold, and annotated conversations without gold (incomplete or "
                    "split annotations, or not adjudicated yet): each is listed with why.")
if rep.left_out:
    st.dataframe([{"conversation": x.conversation_id, "reason": x.reason} for x in rep.left_out],
                 hide_index=True, key="export-invalid")
name = f"{Path(study.path).stem}-gold.{fmt}"
st.download_button(
    f"Download {name}", done["text"], file_name=name,
    mime="text/csv" if fmt == "csv" else "application/jsonl", type="primary",
    icon=":material/download:", key="export-download", on_click="ignore",
)
with st.expander("First records"):
    st.code("\n".join(done["text"].splitlines()[:5]) or "(empty)", language=None,
            wrap_lines=True)
