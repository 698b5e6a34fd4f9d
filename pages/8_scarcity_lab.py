"""Scarcity lab: the same model trained on 1%, 5%, 25% and 100% of one corpus.

The runs train one after another in one background job (one of the server's job slots);
the page only reads their run folders, so it can be left and reopened at any time.
"""

from __future__ import annotations

import streamlit as st

from explorer import cached, insight, scarcity
from explorer.export import csv_bytes
from explorer.figures_scarcity import fraction_label, fractions_figure
from explorer.jobs import JobError
from explorer.sampler_view import LABELS
from explorer.state import keep_page_state, session_id
from tinytf.config import ConfigError
from tinytf.corpus import CorpusError
from tinytf.presets import PRESETS, fit_to_corpus, get_preset
from tinytf.runs import RunError, RunFolder
from tinytf.sampling import SAMPLERS
from tinytf.tokenizer import TokenizerError

USER_ERRORS = (ConfigError, CorpusError, TokenizerError, RunError, JobError)

keep_page_state("scar_")
st.title("Scarcity lab")
st.markdown(
    "One configuration, trained on a shrinking prefix of the training split while the "
    "validation split stays the same. With little data the training loss dives and the "
    "validation loss turns back up: the model learns the text by heart instead of the "
    "language. The table measures it: the share of each sampler's output copied verbatim "
    "from the run's own training text."
)
manager = cached.job_manager()
me = session_id()


def say(kind: str, text: str) -> None:
    st.session_state.scar_message = (kind, text)


def start() -> None:
    """Fit the preset to the corpus and start the lab (a button callback)."""
    fractions = sorted(st.session_state.scar_fractions)
    try:
        corpus = cached.selected_corpus()
        if corpus is None:
            say("error", "No corpus: pick one on the Data page first.")
            return
        level = st.session_state.data_level
        n_tokens = cached.corpus_summary(corpus, level, 0.1).n_tokens
        preset = get_preset(st.session_state.scar_preset).with_train(
            max_steps=int(st.session_state.scar_steps),
            eval_interval=int(st.session_state.scar_eval_interval),
            snapshots=True,
        )
        # Fitted to the whole corpus, as the Train page does: every fraction then trains
        # the very same model, and a fraction too small for its context is refused.
        preset = fit_to_corpus(preset, n_tokens)
        job = scarcity.start_scarcity(
            manager,
            me,
            corpus,
            level,
            preset.model_kwargs(),
            preset.train,
            fractions,
            name=st.session_state.scar_name.strip() or None,
        )
    except USER_ERRORS as error:
        say("error", f"Not started: {error}")
        return
    st.session_state.scar_group = job.payload.group
    say("success", f"Started {job.payload.group}: {len(fractions)} runs, one after another.")


def stop(key: str) -> None:
    if manager.stop(key, me):
        say("info", "Stopping after the current step; the runs done so far stay.")


# --- the form ------------------------------------------------------------------------------

corpus_name = st.session_state.get("data_source")
st.caption(
    f"Corpus: the Data page's pick (**{corpus_name}**, {st.session_state.data_level} level). "
    "A server file such as tiny Shakespeare works through its 'text file on the server'."
)
with st.form("scar_form", border=True):
    left, middle, right = st.columns(3)
    left.selectbox(
        "Preset",
        list(PRESETS),
        key="scar_preset",
        format_func=lambda name: f"{name}: {PRESETS[name].description}",
    )
    middle.number_input("Steps per fraction", 10, 100_000, step=10, key="scar_steps")
    right.number_input("Evaluate every", 5, 10_000, step=5, key="scar_eval_interval")
    st.multiselect(
        "Fractions of the training split",
        scarcity.FRACTION_CHOICES,
        format_func=fraction_label,
        key="scar_fractions",
    )
    st.text_input(
        "Name", key="scar_name", max_chars=48, placeholder="default: <corpus>-<level>-scarcity"
    )
    st.form_submit_button("Train on every fraction", type="primary", on_click=start)

message = st.session_state.scar_message
if message:
    kind, text = message
    {"error": st.error, "success": st.success, "info": st.info}[kind](text)
    st.session_state.scar_message = None


# --- a lab's results -----------------------------------------------------------------------

try:
    groups = scarcity.list_groups()
except (OSError, RunError) as error:
    st.error(f"The runs folder cannot be read: {error}")
    st.stop()
if not groups:
    st.info("No lab yet: start one above.")
    st.stop()
if st.session_state.scar_group not in groups:
    st.session_state.scar_group = next(iter(groups))
group = st.selectbox("Lab", list(groups), key="scar_group")
job_key = f"scarcity:{group}"
job = manager.get(job_key)
running_at_start = job is not None and job.running


def vocab_size(runs) -> int | None:
    try:
        return int(RunFolder(runs[0].path).read_config()["model"]["vocab_size"])
    except (RunError, KeyError, TypeError, ValueError, IndexError):
        return None


def progress_line(runs) -> None:
    job = manager.get(job_key)
    if job is None or not job.running:
        return
    payload = job.payload
    done = [r for r in runs if r.status == "finished"]
    current = fraction_label(payload.current) if payload.current is not None else "…"
    st.info(
        f"Training {current} of the data: run {len(done) + 1} of "
        f"{len(payload.fractions)}. Runs train one after another."
    )
    st.button(
        "Stop the lab", on_click=stop, args=(job_key,), disabled=job.owner != me, key="scar_stop"
    )


def samples_view(rows) -> None:
    with_memo = [row for row in rows if row.memorization]
    if not with_memo:
        st.caption("The samplers' samples appear here as each run finishes.")
        return
    labels = {row.run: fraction_label(row.fraction) for row in with_memo}
    if st.session_state.scar_samples not in labels:
        st.session_state.scar_samples = with_memo[0].run
    chosen = st.radio(
        "Samples of", list(labels), format_func=labels.get, horizontal=True, key="scar_samples"
    )
    row = next(r for r in with_memo if r.run == chosen)
    for kind in SAMPLERS:
        memo = row.memorization.get(kind, {})
        rate = memo.get("rate")
        share = "—" if rate is None else f"{rate:.0%}"
        st.markdown(
            f"**{LABELS[kind]}**: {share} of its {memo.get('n', '?')}-grams copied; "
            f"longest verbatim run {memo.get('longest_span', 0)} tokens"
        )
        st.code(memo.get("text", ""), language=None, wrap_lines=True)
        if memo.get("longest_span_text"):
            st.caption(f"copied: {memo['longest_span_text']!r}")


def lab_view() -> None:
    runs = scarcity.list_groups().get(group, [])
    if not runs:
        st.info("This lab's first run is being created…")
        return
    progress_line(runs)
    fig = fractions_figure(scarcity.group_curves(runs), vocab_size=vocab_size(runs))
    insight.chart(fig, f"{group}_curves", key="scar_curves")

    rows = [scarcity.fraction_row(run) for run in runs]
    table = scarcity.scarcity_table(rows)
    loss = st.column_config.NumberColumn(format="%.3f")
    percent = st.column_config.NumberColumn(format="%.0f%%")
    config = {name: loss for name in ("best val", "final train", "final val", "gap (val − train)")}
    config.update({f"copied · {LABELS[kind]}": percent for kind in SAMPLERS})
    st.dataframe(table, hide_index=True, column_config=config, key="scar_table")
    st.caption(
        "copied: share of the sampler's 8-character (or 4-word) pieces found verbatim in "
        "that run's training text; span: its longest verbatim run, in tokens. Samples of "
        "300 characters (80 words) from last.pt, seed 0, the Samplers page's default knobs."
    )
    st.download_button(
        "Table (.csv)",
        data=csv_bytes(table.to_dict("records")),
        file_name=f"{group}_scarcity.csv",
        mime="text/csv",
        on_click="ignore",
        icon=":material/download:",
        key="scar_table_csv",
    )
    waiting = set(runs[0].record.get("scarcity_fractions", [])) - {r.fraction for r in rows}
    if waiting:
        st.caption("Still to train: " + ", ".join(fraction_label(f) for f in sorted(waiting)))
    samples_view(rows)

    now_running = manager.get(job_key) is not None and manager.get(job_key).running
    if running_at_start and not now_running:
        st.rerun()  # the job ended: one full rerun stops the polling


st.fragment(run_every=2.0 if running_at_start else None)(lab_view)()
