"""The Overview's values by response type (`measure.response_types`): AI values when resisting
versus supporting, the user values before strong resistance, mirroring per response type
beside the published figures, and the AI values that come together (by lift). Not a page: the
Overview calls `show`."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from annotator.app.app_pages import common
from annotator.measure.response_types import ByResponseType, StanceValue


def _stance_rows(rows: list[StanceValue]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"value": v.value, "when resisting": v.resisting.short(),
          "when supporting": v.supporting.short(),
          "z": None if v.z is None else round(v.z, 2)} for v in rows],
        columns=["value", "when resisting", "when supporting", "z"])


def show(b: ByResponseType) -> None:
    """Every table of values by response type, each share with its named denominator."""
    s = b.stance
    st.markdown(
        f"**AI values by stance**: {s.resisting_conversations:,} resisting conversations (mild + "
        f"strong resistance), {s.supporting_conversations:,} supporting (strong + mild "
        f"support); values in {s.min_value_conversations}+ of them, most distinctive first "
        "(two-proportion z).")
    if s.note:
        st.info(common.md(s.note))
    st.dataframe(_stance_rows(s.most_resisting), hide_index=True, key="report-resisting")
    st.dataframe(_stance_rows(s.most_supporting), hide_index=True, key="report-supporting")

    st.markdown(f"**User values before strong resistance** "
                f"({b.strong_resistance_conversations:,} strong-resistance conversations)")
    st.dataframe(pd.DataFrame([{"user value": v.value, "conversations": v.share.k,
                                "share": v.share.short()} for v in b.before_strong_resistance],
                              columns=["user value", "conversations", "share"]),
                 hide_index=True, key="report-before-resistance")

    st.markdown("**Mirroring by response type**: conversations of that type where an AI value "
                "equals a value the user stated (the paper's \"support\" read as strong + "
                "mild support)")
    st.dataframe(pd.DataFrame([{"response type": m.response_type, "mirroring": m.share.text(),
                                "published": m.share.published_text()} for m in b.mirroring]),
                 hide_index=True, key="report-mirroring-by-type")

    st.markdown(f"**AI values held together** (in {b.min_pair_conversations}+ of "
                f"{b.conversations:,} conversations; lift = P(a, b) / (P(a) P(b)))")
    if b.pairs_note:
        st.caption(common.md(b.pairs_note))
    else:
        st.dataframe(pd.DataFrame([p.model_dump() for p in b.pairs]), hide_index=True,
                     key="report-pairs")
