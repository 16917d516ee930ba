"""The app, started from a checkout: `ANNOTATOR_DB=study.db streamlit run streamlit_app.py`.

The app lives in the package (`annotator/app/streamlit_app.py`, what `annotator app` and an
installed wheel serve); this file only runs it, so the way Streamlit apps start from a checkout
(and on Streamlit Community Cloud) works here too.
"""

from annotator.app.streamlit_app import main

main()
