"""Take it away: figures as PNG and SVG, tensors as .npz, metrics as CSV. No Streamlit here.

Figures are rendered on the server by Kaleido 1.x, which drives a headless Chromium (on
Debian `apt-get install chromium`; another browser binary can be named in the
BROWSER_PATH environment variable). Nothing is fetched from the internet: plotly.js comes
from the plotly package's own copy, and MathJax (a CDN script Kaleido would otherwise
load) is turned off, since no figure here uses LaTeX.

    png = figure_bytes(fig, "png")
    st.download_button("PNG", data=functools.partial(figure_bytes, fig, "png"), ...)

Each export starts a browser for itself (about 2 s on two cores): slower than Kaleido's
persistent server, but that server answers from one shared queue, which two sessions
exporting at once could mix up. A lock keeps exports one at a time.
"""

from __future__ import annotations

import csv
import io
import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

FORMATS = {"png": "image/png", "svg": "image/svg+xml"}
DEFAULT_WIDTH, DEFAULT_HEIGHT = 900, 520
PNG_SCALE = 2  # twice the pixels of the on-screen size: sharp on slides and in print

_lock = threading.Lock()


class ExportError(RuntimeError):
    """A figure that cannot be rendered here; the message says what to install."""


def browser_path() -> str | None:
    """The Chrome or Chromium binary Kaleido would drive, or None when there is none."""
    try:
        from choreographer.browsers.chromium import Chromium

        return Chromium.find_browser(skip_local=False)
    except Exception:  # an internal API of Kaleido's helper: any failure means "unknown"
        return None


def kaleido_options() -> dict[str, Any]:
    """Options of the Kaleido browser: no MathJax, so no request ever leaves the machine."""
    return {"mathjax": False}


def figure_bytes(
    fig: go.Figure, fmt: str, *, width: int | None = None, height: int | None = None
) -> bytes:
    """The figure rendered as PNG or SVG bytes.

    Args:
        fmt: "png" or "svg".
        width, height: pixels; default the figure's own layout size, else 900 x 520.

    Raises:
        ExportError: an unknown format, or no Kaleido / Chromium to render with.
    """
    if fmt not in FORMATS:
        raise ExportError(f"format: must be one of {tuple(FORMATS)}, got {fmt!r}")
    try:
        import kaleido
        from kaleido.errors import ChromeNotFoundError
    except ImportError as error:
        raise ExportError("image export needs the kaleido package (pip install kaleido)") from error

    layout = fig.layout
    opts = {
        "format": fmt,
        "width": width or layout.width or DEFAULT_WIDTH,
        "height": height or layout.height or DEFAULT_HEIGHT,
        "scale": PNG_SCALE if fmt == "png" else 1,
    }
    try:
        with _lock:
            data = kaleido.calc_fig_sync(fig.to_dict(), opts=opts, kopts=kaleido_options())
    except ChromeNotFoundError as error:
        raise ExportError(
            "image export needs Chromium on the server (apt-get install chromium, or set "
            "BROWSER_PATH to a Chrome or Chromium binary)"
        ) from error
    return data if isinstance(data, bytes) else str(data).encode("utf-8")


def safe_file_name(name: str, suffix: str) -> str:
    """A download name of [A-Za-z0-9._-] only, ending in `.suffix`."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-")[:80] or "figure"
    return f"{stem}.{suffix}"


def npz_bytes(arrays: Mapping[str, object]) -> bytes:
    """A compressed .npz of numeric (or string) arrays; opens with allow_pickle=False.

    Raises:
        ExportError: an array of Python objects (it would need pickling).
    """
    converted = {}
    for name, value in arrays.items():
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        array = np.asarray(value)
        if array.dtype == object:
            raise ExportError(f"{name}: holds Python objects, which .npz would pickle")
        converted[name] = array
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **converted)
    return buffer.getvalue()


def attention_npz_bytes(cache: Mapping[str, object], tokens: Sequence[str]) -> bytes:
    """Every layer's attention tensors from a capture cache, and the tokens, as .npz.

    Keeps `blocks.i.attn.{q,k,v,scores,masked_scores,pattern}` of batch item 0, each
    (nh, T, S), under the same names, plus `tokens` (T,) as strings.
    """
    wanted = ("q", "k", "v", "scores", "masked_scores", "pattern")
    arrays: dict[str, object] = {}
    for name, tensor in cache.items():
        parts = name.split(".")
        if len(parts) == 4 and parts[0] == "blocks" and parts[2] == "attn" and parts[3] in wanted:
            arrays[name] = tensor[0]
    if not arrays:
        raise ExportError("the capture cache holds no attention tensors")
    arrays["tokens"] = np.array(list(tokens), dtype=str)
    return npz_bytes(arrays)


def csv_bytes(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> bytes:
    """Rows of dicts as UTF-8 CSV with a header; None becomes an empty cell.

    Columns default to the keys of the first row; keys starting with "_" are left out.
    """
    if columns is None:
        columns = [key for key in (rows[0] if rows else {}) if not key.startswith("_")]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else row.get(c) for c in columns])
    return out.getvalue().encode("utf-8")
