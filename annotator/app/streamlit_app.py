"""The study in the browser: `annotator app`, or `streamlit run annotator/app/streamlit_app.py`.

Pages live in `app_pages/`; they read the study through `annotator.report`, get their figures
from `annotator.summaries` (which composes `annotator.agreement`) through the cache in
`annotator.app.summary_cache` (see `app_pages/common.py`). The database comes from ANNOTATOR_DB
or the sidebar field.
"""

from __future__ import annotations

import streamlit as st

from annotator.app.app_pages import common

# No page icon: a Material icon as favicon is fetched from Google's font CDN, and the app
# loads nothing from outside its own server.
st.set_page_config(page_title="annotator", layout="wide")

PAGES = [
    st.Page("app_pages/overview.py", title="Overview", default=True),
    st.Page("app_pages/annotators.py", title="Annotators"),
    st.Page("app_pages/prompts.py", title="Prompts"),
    st.Page("app_pages/disagreements.py", title="Disagreements"),
    st.Page("app_pages/gold.py", title="Gold"),
    st.Page("app_pages/export.py", title="Export"),
]

page = st.navigation(PAGES)
common.sidebar()
page.run()
common.finish_run()  # pages that stop early call it themselves (`common.stop`)
