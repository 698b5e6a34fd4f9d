"""Small HTML and text helpers for the pages. Pure functions, no Streamlit.

The only HTML the app writes itself is built here, and every piece of corpus or model text
goes through `html.escape` first: an uploaded corpus can hold any markup.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

TOKEN_BACKGROUNDS = ("#dbe7f3", "#f6dfcf", "#dcefd8", "#ece0f3")

# Invisible characters get a visible stand-in inside their coloured box.
_VISIBLE = {"\n": "↵", "\t": "→", " ": "·"}


def visible_token(token: str) -> str:
    """A token with whitespace made visible (for axis labels and tables)."""
    return "".join(_VISIBLE.get(ch, ch) for ch in token) if token.strip() == "" else token


def token_label(token: str, unknown: bool = False) -> str:
    """Axis label for a token; an unknown one reads ⟨word⟩? so it cannot pass unnoticed."""
    shown = visible_token(token)
    return f"⟨{shown}⟩?" if unknown else shown


def token_spans_html(tokens: Sequence[str], *, unknown: Sequence[bool] | None = None) -> str:
    """Tokens as adjacent <span>s on alternating backgrounds, inside a pre-wrap block.

    A newline token shows as ↵ and then breaks the line; unknown tokens get a red outline.
    """
    parts = []
    for index, token in enumerate(tokens):
        colour = TOKEN_BACKGROUNDS[index % len(TOKEN_BACKGROUNDS)]
        shown = html.escape(token.replace("\n", "↵"))
        style = f"background:{colour};border-radius:3px;padding:0 1px"
        if unknown is not None and unknown[index]:
            style += ";outline:1px solid #c53948"
        parts.append(f'<span style="{style}">{shown}</span>')
        if "\n" in token:
            parts.append("\n")
    body = "".join(parts)
    return (
        '<div style="white-space:pre-wrap;font-family:monospace;line-height:1.7;'
        f'font-size:0.9rem">{body}</div>'
    )


def format_count(value: int) -> str:
    """12345 -> '12,345'."""
    return f"{value:,}"


def format_duration(seconds: float | None) -> str:
    """Seconds as '42 s', '3 min 05 s' or '1 h 02 min'; '—' when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "—"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
