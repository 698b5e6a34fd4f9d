"""Streamlit caches around tinytf: what is slow to build and the same for every rerun.

`st.cache_data` (copied per caller) holds derived values keyed by their inputs, with
`max_entries` so a long session cannot fill the memory. `st.cache_resource` (one shared
object for every session) holds only read-only things: a loaded checkpoint's model, and the
process-wide job manager, which is shared on purpose and keys each job by its run folder.
"""

from __future__ import annotations

import threading
from pathlib import Path

import streamlit as st
import torch

from explorer.corpus_view import CorpusSummary, summarize_corpus
from explorer.figures import LossCurve
from explorer.jobs import JobManager, max_jobs_from_env
from explorer.train_jobs import rows_curve
from tinytf.corpus import BUILTIN_CORPORA, Corpus, load_corpus
from tinytf.device import describe_device, pick_device
from tinytf.runs import RunError, read_metrics


@st.cache_resource(show_spinner=False)
def job_manager() -> JobManager:
    """The one job manager of this server process (cap from TINYTF_MAX_JOBS)."""
    return JobManager(max_jobs=max_jobs_from_env())


@st.cache_data(max_entries=8, show_spinner=False)
def _load_corpus(source: str, stamp: float) -> Corpus:
    # `stamp` (the file's mtime) is only part of the key: an edited file loads again.
    return load_corpus(source)


def corpus_from_source(source: str) -> Corpus:
    """A built-in corpus by name or a text file by path, loaded once per version.

    Raises:
        CorpusError: as `tinytf.corpus.load_corpus`.
    """
    if source in BUILTIN_CORPORA:
        return _load_corpus(source, 0.0)
    path = Path(source).expanduser()
    try:
        stamp = path.stat().st_mtime
    except OSError:
        stamp = -1.0  # load_corpus says what is wrong with the path
    return _load_corpus(str(path), stamp)


@st.cache_data(max_entries=16, show_spinner="Tokenising…")
def corpus_summary(corpus: Corpus, level: str, val_fraction: float) -> CorpusSummary:
    """`summarize_corpus`, computed once per corpus text and level."""
    return summarize_corpus(corpus, level, val_fraction)


@st.cache_resource(show_spinner=False)
def device_line() -> str:
    """The device training would use on "auto", described for people."""
    return describe_device(pick_device("auto").device)


def selected_corpus() -> Corpus | None:
    """The corpus picked on the Data page; a built-in one loads even before a visit there.

    Raises:
        CorpusError: the picked file cannot be used.
    """
    corpus = st.session_state.data_corpus
    if corpus is None and st.session_state.data_source in BUILTIN_CORPORA:
        corpus = corpus_from_source(st.session_state.data_source)
    return corpus


@st.cache_data(max_entries=64, show_spinner=False)
def run_curve(path: str, label: str, stamp: float) -> LossCurve:
    """A run's loss curve from its metrics.csv, read again only when the file changes."""
    try:
        rows = read_metrics(path)
    except RunError:
        rows = []
    return rows_curve(label, rows)


def run_curve_of(path: str | Path) -> LossCurve:
    """`run_curve` keyed by the metrics file's mtime."""
    path = Path(path)
    try:
        stamp = (path / "metrics.csv").stat().st_mtime
    except OSError:
        stamp = -1.0
    return run_curve(str(path), path.name, stamp)


@st.cache_resource(show_spinner=False)
def warm_up() -> threading.Thread:
    """Pay torch's one-time start-up costs in the background, once per server process.

    The first optimiser built in a process imports torch._dynamo (1.5-7 s on two CPU
    cores, measured), which would otherwise delay the first loss point after Start. Only
    zero tensors are touched: no random stream a training job relies on is drawn from.
    """
    thread = threading.Thread(target=_warm_torch, name="torch-warm-up", daemon=True)
    thread.start()
    return thread


def _warm_torch() -> None:
    torch.optim.AdamW([torch.zeros(1, requires_grad=True)])
