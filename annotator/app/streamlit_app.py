"""The study in the browser: `annotator app`, or `streamlit run streamlit_app.py` in a checkout.

Pages live in `app_pages/`; they read the study through `annotator.measure.frames`, get their
figures from `annotator.measure.summaries` (which composes the statistics) through the cache in
`annotator.app.summary_cache` (see `app_pages/common.py`). The database comes from ANNOTATOR_DB
or the sidebar field.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from annotator.app.app_pages import common
from annotator.errors import AnnotatorError

PAGES = Path(__file__).resolve().parent / "app_pages"


def main() -> None:
    """Set up the page, the navigation and the sidebar, then run the chosen page. The pages are
    named by absolute path, so the app runs the same whichever script Streamlit was started on
    (this one, or the checkout's top-level `streamlit_app.py`)."""
    # No page icon: a Material icon as favicon is fetched from Google's font CDN, and the app
    # loads nothing from outside its own server.
    st.set_page_config(page_title="annotator", layout="wide")
    if not common.signed_in():  # served beyond loopback: the password first
        return
    page = st.navigation([
        st.Page(PAGES / "overview.py", title="Overview", default=True),
        st.Page(PAGES / "annotators.py", title="Annotators"),
        st.Page(PAGES / "prompts.py", title="Prompts"),
        st.Page(PAGES / "disagreements.py", title="Disagreements"),
        st.Page(PAGES / "gold.py", title="Gold"),
        st.Page(PAGES / "export.py", title="Export"),
    ])
    common.sidebar()
    try:
        page.run()
    except AnnotatorError as exc:  # a row another program damaged, say: one line, no traceback
        st.error(common.md(str(exc)), icon=":material/error:")
    common.finish_run()  # pages that stop early call it themselves (`common.stop`)


if __name__ == "__main__":  # `streamlit run` runs a script as __main__
    main()
