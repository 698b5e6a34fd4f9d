"""Tiny Transformer Explorer: the Streamlit entry point. It only routes.

Run from the repository root (so that .streamlit/config.toml applies):

    streamlit run explorer/app.py

`st.navigation` lists the page scripts of the top-level `pages/` folder explicitly; this
file lives in `explorer/`, so no `pages/` folder sits beside it and Streamlit's automatic
page discovery stays out of the way. Everything every page shares (session defaults, the
run and device in the sidebar) is drawn here, once, before the chosen page runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run explorer/app.py` puts explorer/ on sys.path, not the repository root;
# the root is needed to import `tinytf` and `explorer` from any working directory.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from explorer.cached import warm_up  # noqa: E402
from explorer.shell import draw_sidebar  # noqa: E402
from explorer.state import init_state  # noqa: E402

PAGES = ROOT / "pages"

st.set_page_config(page_title="Tiny Transformer Explorer", page_icon="🔬", layout="wide")

page = st.navigation(
    [
        st.Page(PAGES / "1_data.py", title="Data", icon="📄", url_path="data", default=True),
        st.Page(PAGES / "2_train.py", title="Train", icon="🏋️", url_path="train"),
        st.Page(PAGES / "3_attention.py", title="Attention", icon="🔍", url_path="attention"),
        st.Page(PAGES / "4_causal_mask.py", title="Causal mask", icon="🎭", url_path="mask"),
        st.Page(PAGES / "5_block_stepper.py", title="Block stepper", icon="🪜", url_path="block"),
        st.Page(PAGES / "6_samplers.py", title="Samplers", icon="🎲", url_path="samplers"),
        st.Page(PAGES / "7_runs.py", title="Runs", icon="🗂️", url_path="runs"),
        st.Page(PAGES / "8_scarcity_lab.py", title="Scarcity lab", icon="🧪", url_path="scarcity"),
    ]
)
warm_up()
init_state()
draw_sidebar()
page.run()
