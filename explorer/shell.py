"""What every page shares, drawn once by the entry point: the sidebar's run and device.

The run picker lives here and nowhere else, so the Attention, Causal mask, Block stepper
and Samplers pages all look at the same model without each drawing its own picker.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from explorer.cached import device_line, job_manager
from explorer.models import CHECKPOINTS
from tinytf.runs import RunError, list_runs, runs_root

CHECKPOINT_HELP = (
    "best: lowest validation loss so far. last: the latest evaluation. live: the weights "
    "of a run training in this server, as of its latest evaluation."
)


def run_choices() -> dict[str, str]:
    """Run folder (as a string) -> its status, newest first; unreadable folders left out."""
    try:
        runs = list_runs()
    except (OSError, RunError):
        return {}
    return {str(run.path): run.status for run in runs if run.status != "broken"}


def draw_sidebar() -> None:
    """The run and checkpoint the analysis pages use, the device, the jobs running."""
    choices = run_choices()
    if st.session_state.app_run not in choices:
        st.session_state.app_run = next(iter(choices), None)

    with st.sidebar:
        # Each option is labelled with its folder's name (start time and run name), unique
        # where run names repeat: Streamlit tells options apart by their labels, so equal
        # labels made every run but the oldest of a name impossible to pick. The status
        # stands beneath, not in the label, which the browser keeps from the first drawing.
        st.selectbox(
            "Run",
            list(choices),
            format_func=lambda path: Path(path).name,
            key="app_run",
            placeholder="no runs yet: train one",
            help=f"Runs under {runs_root()}",
        )
        if st.session_state.app_run is not None:
            st.caption(f"Status: {choices[st.session_state.app_run]}")
        st.radio(
            "Checkpoint", CHECKPOINTS, key="app_checkpoint", horizontal=True, help=CHECKPOINT_HELP
        )
        st.caption(f"Device: {device_line()}")
        manager = job_manager()
        st.caption(f"Training jobs running: {manager.running_count()} of {manager.max_jobs}")
