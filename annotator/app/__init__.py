"""The Streamlit app and the modules only it uses.

`streamlit_app.py` and its pages (`app_pages/`); `summary_cache` (where the results are kept
and when they are recomputed), `precompute` (the results computed ahead, for `annotator
summarize` and after a command changes the study), `queries` and `conversation_search` (its
SQL) and `server` (`annotator app`). The library imports nothing from here.
"""
