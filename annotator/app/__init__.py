"""The Streamlit app and the modules only it uses.

`streamlit_app.py` and its pages (`app_pages/`); `summaries` (what the pages show, composed
from `annotator.agreement`), `summary_cache` (where the results are kept and when they are
recomputed), `precompute` (the results computed ahead, for `annotator precompute` and after a
command changes the study) and `server` (`annotator app`). The library modules of `annotator`
import nothing from here.
"""
