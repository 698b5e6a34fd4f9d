"""Every session-state key of the app, initialised in one place.

Keys carry the prefix of the page that owns them (`data_`, `train_`, `attn_`, `causal_`,
`block_`, `samp_`, `runs_`, `scar_`); `app_` keys belong to the shell (the sidebar). Widgets are
created with `key=` only and take their starting value from here, never from a `value=`
argument as well (Streamlit warns when both are given).

Streamlit forgets a widget's value when a run does not draw it, that is on every page
switch. `keep_page_state(prefix)` writes each of the page's keys back to itself at the top
of the page, which makes the value an ordinary session value that survives the switch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import streamlit as st

from explorer.train_form import field_values
from tinytf.presets import get_preset

DEFAULTS: Mapping[str, Any] = {
    # The shell: which run the analysis pages look at.
    "app_run": None,  # run folder (str) picked in the sidebar, or None
    "app_checkpoint": "last",  # "last" (the latest weights), "best" or "live"
    # Data page.
    "data_source": "zen",  # "zen", "pydoc", "upload" or "path"
    "data_path": "",  # a text file on the server, when data_source is "path"
    "data_level": "char",  # tokeniser level
    "data_corpus": None,  # the loaded tinytf Corpus the Train page will use
    "data_show_preview": True,
    # Train page.
    "train_preset": "tiny",
    "train_fitted_for": None,  # (corpus name, level, tokens) the form's preset was fitted to
    "train_name": "",
    "train_device": "auto",
    # ... and one "train_f_<field>" key per config field, filled from the preset below.
    "train_watch": None,  # run folder of the job this session watches
    "train_overlay": [],  # earlier run folders drawn on the same axes
    "train_resume_steps": 100,  # steps a Resume adds
    "train_message": None,  # (kind, text) left by a button's callback for the page
    "train_scrub_show": False,  # the snapshot scrubber under the live chart
    "train_scrub_step": None,  # the snapshot step shown for the watched run
    "train_scrub_clicked": None,  # the last loss-curve point clicked (applied once)
    # Attention page.
    "attn_prompt": "Beautiful is better than ugly.",
    "attn_layer": 0,
    "attn_head": 0,
    "attn_show_grid": True,
    # Causal mask page.
    "causal_prompt": "Simple is better than complex.",
    "causal_layer": 0,
    "causal_head": 0,
    "causal_position": 4,  # the token that gets replaced
    "causal_replacement": "",  # what replaces it; empty means the next id in the vocabulary
    # Block stepper page.
    "block_kind": "hand-set",  # "identity", "hand-set", "random" or "trained"
    "block_seed": 0,
    "block_step": 0,  # index into the 13 steps
    "block_text": "abcab",  # the input of a controlled block, one position per character
    "block_layer": 0,  # which block of a trained run
    # Samplers page.
    "samp_prompt": "Beautiful is",
    "samp_seed": 0,
    "samp_new_tokens": 80,
    "samp_temperature": 1.0,
    "samp_top_k": 5,
    "samp_top_p": 0.9,
    "samp_ttp_temperature": 0.8,
    "samp_ttp_top_p": 0.9,
    "samp_held": None,  # sampler -> its column's last Generation, logits included
    "samp_held_for": None,  # (model key, prompt ids) those generations belong to
    "samp_step": 0,  # which generated token's distribution the chart shows
    "samp_context": "greedy",  # whose text up to that step is the chart's context
    "samp_why_column": "temperature",  # whose generated token "why this token" explains
    "samp_why_position": 0,  # which of its generated tokens (0 = the first new one)
    "samp_lesson_message": None,  # (kind, text) left by opening a lesson file
    "samp_lesson_expect": None,  # the opened lesson's column, title and replayed text
    # Runs page.
    "runs_selected": [],  # run folders whose curves are overlaid
    "runs_target": None,  # the run the download and delete buttons act on
    "runs_delete": None,  # run folder awaiting the confirmation of its deletion
    "runs_message": None,  # (kind, text) left by a deletion for the next run to show
    "runs_scrub_show": True,  # the snapshot scrubber of the picked run
    "runs_scrub_step": None,  # the snapshot step shown for the picked run
    "runs_scrub_clicked": None,  # the last loss-curve point clicked (applied once)
    # Scarcity lab page.
    "scar_preset": "tiny",
    "scar_steps": 300,  # steps of each fraction's run
    "scar_eval_interval": 25,
    "scar_fractions": [0.01, 0.05, 0.25, 1.0],
    "scar_name": "",
    "scar_group": None,  # the lab (group of runs) shown
    "scar_samples": None,  # the run whose samples are shown
    "scar_message": None,  # (kind, text) left by the start button's callback
}


def _form_defaults() -> dict[str, Any]:
    """The Train form's fields, filled from the `tiny` preset (fitted later to the corpus)."""
    preset = get_preset(DEFAULTS["train_preset"])
    return field_values(preset.model, preset.train)


def init_state() -> None:
    """Give every key its default unless this session already has a value for it."""
    for key, value in {**DEFAULTS, **_form_defaults()}.items():
        if key not in st.session_state:
            # Fresh copies of lists and dicts: sessions must never share one object.
            st.session_state[key] = value.copy() if isinstance(value, (list, dict)) else value


def keep_page_state(prefix: str) -> None:
    """Keep the values of this page's widgets across page switches (see module doc)."""
    for key in [*DEFAULTS, *_form_defaults()]:
        if key.startswith(prefix) and key in st.session_state:
            st.session_state[key] = st.session_state[key]


def session_id() -> str:
    """This browser session's id: the owner recorded on the jobs it starts."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else "no-session"
