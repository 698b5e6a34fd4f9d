"""tinytf: a tiny GPT-style transformer written out by hand, with everything around it.

No UI imports live here: the Streamlit app in `explorer/` only calls this package.
"""

__version__ = "0.1.0"
