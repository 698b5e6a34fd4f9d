"""The Streamlit explorer's logic: session state, background jobs, figure builders.

Pages in `pages/` stay thin and call into this package; `explorer/app.py` routes. Modules
that do not import Streamlit (figures, jobs, text_stats, render) are tested on their own.
"""
