"""Exports: PNG and SVG rendered on this machine with no network, .npz and CSV bytes.

The image tests need Chromium (Debian: apt-get install chromium); without it they fail
with ExportError's message saying so, rather than pass unchecked.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from explorer.export import (
    ExportError,
    attention_npz_bytes,
    browser_path,
    csv_bytes,
    figure_bytes,
    kaleido_options,
    npz_bytes,
    safe_file_name,
)


def small_figure() -> go.Figure:
    fig = go.Figure(go.Bar(x=["alpha", "beta"], y=[1, 2], name="bars"))
    fig.update_layout(title="export check", width=400, height=300)
    return fig


@pytest.mark.slow
def test_png_is_a_png_of_the_asked_size():
    data = figure_bytes(small_figure(), "png")
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert (width, height) == (800, 600)  # 400 x 300 at scale 2


@pytest.mark.slow
def test_svg_holds_the_figure():
    svg = figure_bytes(small_figure(), "svg").decode("utf-8")
    assert svg.startswith("<svg")
    assert "export check" in svg
    assert "alpha" in svg
    assert "http" not in svg.replace("http://www.w3.org", "")  # no external references


def test_offline_settings():
    """MathJax would be loaded from a CDN; it is off. plotly.js is the local copy."""
    from pathlib import Path

    import plotly
    from kaleido import PageGenerator

    assert kaleido_options() == {"mathjax": False}
    page = PageGenerator(mathjax=False).generate_index()
    assert "cdn" not in page.lower()
    assert (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").is_file()


def test_a_browser_is_found():
    assert browser_path() is not None, "install Chromium: apt-get install chromium"


def test_unknown_format_refused():
    with pytest.raises(ExportError, match="format"):
        figure_bytes(small_figure(), "gif")


def test_npz_round_trip_without_pickle():
    data = npz_bytes({"a": torch.arange(6.0).view(2, 3), "tokens": np.array(["x", "y"])})
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        np.testing.assert_array_equal(archive["a"], [[0, 1, 2], [3, 4, 5]])
        assert archive["tokens"].tolist() == ["x", "y"]
    with pytest.raises(ExportError, match="pickle"):
        npz_bytes({"bad": np.array([{}], dtype=object)})


def test_attention_npz_keeps_the_attention_tensors(tiny_model):
    out = tiny_model(torch.tensor([[1, 2, 3, 4]]), capture=True)
    data = attention_npz_bytes(out.cache, ["a", "b", "c", "d"])
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        names = set(archive.files)
        assert "blocks.1.attn.pattern" in names and "blocks.0.attn.q" in names
        assert "blocks.0.mlp_out" not in names
        np.testing.assert_allclose(
            archive["blocks.1.attn.pattern"], out.cache["blocks.1.attn.pattern"][0].detach()
        )
        assert archive["tokens"].tolist() == ["a", "b", "c", "d"]
    with pytest.raises(ExportError, match="no attention"):
        attention_npz_bytes({"logits": out.logits}, [])


def test_csv_bytes():
    rows = [
        {"step": 0, "train_loss": 3.5, "val_loss": None, "_raw": ["x"]},
        {"step": 1, "train_loss": 3.25, "val_loss": 3.3},
    ]
    text = csv_bytes(rows).decode()
    assert text == "step,train_loss,val_loss\n0,3.5,\n1,3.25,3.3\n"
    assert csv_bytes([], columns=["a"]).decode() == "a\n"


def test_safe_file_name():
    assert safe_file_name("Layer 0, head 1: weights", "png") == "Layer-0-head-1-weights.png"
    assert safe_file_name("../..", "svg") == "figure.svg"
