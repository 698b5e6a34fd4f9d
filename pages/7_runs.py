"""Runs: every training run on disk, their curves, checkpoints to download, deletion."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from explorer import insight
from explorer.cached import run_curve_of
from explorer.figures import loss_figure
from explorer.runs_view import runs_table
from explorer.state import keep_page_state
from tinytf.runs import RunError, RunFolder, delete_run, list_runs, runs_root

keep_page_state("runs_")
st.title("Runs")
root = runs_root()
st.caption(f"Folder: {root}")

try:
    runs = list_runs()
except (OSError, RunError) as error:
    st.error(f"The runs folder cannot be read: {error}")
    st.stop()
if not runs:
    st.info("No runs yet: start one on the Train page.")
    st.stop()

by_path = {str(run.path): run for run in runs}
st.dataframe(
    runs_table(runs),
    hide_index=True,
    column_config={
        "best val loss": st.column_config.NumberColumn(format="%.4f"),
        "last val loss": st.column_config.NumberColumn(format="%.4f"),
    },
    key="runs_table",
)
broken = [run for run in runs if run.status in ("broken", "failed") and run.problem]
for run in broken:
    st.caption(f"{run.path.name}: {run.status}, {run.problem}")

# Curves: keep only runs that still exist, default to the newest few.
selected = [path for path in st.session_state.runs_selected if path in by_path]
st.session_state.runs_selected = selected or list(by_path)[:4]
st.multiselect(
    "Curves to overlay",
    list(by_path),
    format_func=lambda p: by_path[p].path.name,
    key="runs_selected",
)
curves = [run_curve_of(path) for path in st.session_state.runs_selected]


def vocab_size_of(path: str) -> int | None:
    try:
        return RunFolder(by_path[path].path).read_config()["model"]["vocab_size"]
    except (RunError, KeyError, TypeError):
        return None


# ln(V) is a uniform guess for one vocabulary: drawn only when every curve shares it.
vocabs = {vocab_size_of(path) for path in st.session_state.runs_selected}
vocab = vocabs.pop() if len(vocabs) == 1 else None
insight.chart(
    loss_figure(curves, vocab_size=vocab, title="Validation and training loss"),
    "loss_curves",
    key="runs_curves",
)

st.subheader("One run")
if st.session_state.runs_target not in by_path:
    st.session_state.runs_target = next(iter(by_path))
target = st.selectbox(
    "Run", list(by_path), format_func=lambda p: by_path[p].path.name, key="runs_target"
)
run = by_path[target]
best = RunFolder(run.path).checkpoint_path("best")
download, delete = st.columns(2)
if best.is_file():
    download.download_button(
        f"Download best.pt ({best.stat().st_size / 2**20:.2f} MB)",
        data=best.read_bytes,
        file_name=f"{run.path.name}_best.pt",
        mime="application/octet-stream",
        on_click="ignore",
        key="runs_download",
    )
else:
    download.caption("No best.pt in this run.")
with download:
    insight.metrics_download(run.path, key="runs_metrics_csv")


def ask_delete(path: str) -> None:
    st.session_state.runs_delete = path


def confirm_delete(path: str) -> None:
    st.session_state.runs_delete = None
    try:
        delete_run(root, Path(path))
    except RunError as error:
        st.session_state.runs_message = ("error", f"Not deleted: {error}")
    else:
        st.session_state.runs_message = ("success", f"Deleted {Path(path).name}.")


delete.button("Delete this run…", on_click=ask_delete, args=(target,), key="runs_ask_delete")
if st.session_state.runs_delete == target:
    st.warning(f"Delete **{run.path.name}** and its checkpoints for good?")
    yes, no = st.columns(2)
    yes.button(
        "Yes, delete",
        type="primary",
        on_click=confirm_delete,
        args=(target,),
        key="runs_confirm_delete",
    )
    no.button("Cancel", on_click=ask_delete, args=(None,), key="runs_cancel_delete")

message = st.session_state.get("runs_message")
if message:
    kind, text = message
    (st.error if kind == "error" else st.success)(text)
    st.session_state.runs_message = None

st.subheader("Training, step by step")
if st.toggle("Scrub through this run's snapshots (one per evaluation)", key="runs_scrub_show"):
    insight.draw_scrubber(run.path, key="runs_scrub")
