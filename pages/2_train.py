"""Train: configure a run, start, stop or resume it, and watch its loss fall live.

Training runs in a background job owned by the process-wide job manager, never in this
script: reruns, page switches and reloads only look at it. The run's folder name goes in
the URL (?run=...), so reloading the page finds the job again.
"""

from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

from explorer import cached, insight
from explorer.figures import loss_figure
from explorer.jobs import JobError
from explorer.render import format_duration
from explorer.state import keep_page_state, session_id
from explorer.train_form import DEVICES, FIELDS, configs_from_values, field_values
from explorer.train_jobs import job_curve, job_progress, resume_training, start_training
from tinytf.checkpoint import CheckpointError
from tinytf.config import ConfigError
from tinytf.corpus import CorpusError
from tinytf.presets import PRESETS, fit_to_corpus, get_preset
from tinytf.runs import RunError, list_runs, runs_root
from tinytf.tokenizer import TokenizerError

USER_ERRORS = (ConfigError, CorpusError, TokenizerError, RunError, CheckpointError, JobError)

keep_page_state("train_")
st.title("Train")
manager = cached.job_manager()
me = session_id()


# --- which corpus, and the form fitted to it ------------------------------------------------


def corpus_and_tokens():
    """(corpus, level, token count) picked on the Data page, or None after saying why."""
    try:
        corpus = cached.selected_corpus()
    except CorpusError as error:
        st.error(f"The corpus picked on the Data page cannot be used: {error}")
        return None
    if corpus is None:
        st.info("Pick a corpus on the Data page first.")
        return None
    level = st.session_state.data_level
    try:
        summary = cached.corpus_summary(corpus, level, 0.1)
    except TokenizerError as error:
        st.error(f"This corpus cannot be tokenised: {error}")
        return None
    return corpus, level, summary.n_tokens


def apply_preset() -> None:
    """Fill the form from the chosen preset, fitted to the corpus (a widget callback)."""
    preset = get_preset(st.session_state.train_preset)
    fitted_for = st.session_state.train_fitted_for
    if fitted_for is not None:
        try:
            preset = fit_to_corpus(preset, fitted_for[2])
        except ConfigError as error:
            st.session_state.train_message = ("error", f"The corpus is too short: {error}")
    st.session_state.update(field_values(preset.model, preset.train))


picked = corpus_and_tokens()
if picked is not None:
    corpus, level, n_tokens = picked
    st.caption(
        f"Corpus **{corpus.name}** at **{level}** level: {n_tokens:,} tokens. "
        "Change it on the Data page."
    )
    if st.session_state.train_fitted_for != (corpus.name, level, n_tokens):
        st.session_state.train_fitted_for = (corpus.name, level, n_tokens)
        apply_preset()


# --- buttons: start, stop, resume (callbacks run before the page, so the sidebar sees the run)


def say(kind: str, text: str) -> None:
    st.session_state.train_message = (kind, text)


def start() -> None:
    if picked is None:
        say("error", "No corpus to train on: pick one on the Data page.")
        return
    try:
        model_fields, train_config = configs_from_values(st.session_state)
        job = start_training(
            manager,
            me,
            corpus,
            level,
            model_fields,
            train_config,
            name=st.session_state.train_name.strip() or None,
        )
    except USER_ERRORS as error:
        say("error", f"Not started: {error}")
        return
    st.session_state.train_watch = job.key
    st.session_state.app_run = job.key
    say("success", f"Started {Path(job.key).name}.")


def stop() -> None:
    if manager.stop(st.session_state.train_watch, me):
        say("info", "Stopping after the current step; last.pt will hold it.")


def resume() -> None:
    target = st.session_state.train_watch or st.session_state.app_run
    if not target:
        say("error", "No run to resume: pick one in the sidebar.")
        return
    earlier = manager.get(target)
    if earlier is not None and earlier.owner != me:
        say("error", f"Not resumed: {Path(target).name} was started by another session.")
        return
    try:
        job = resume_training(manager, me, target, int(st.session_state.train_resume_steps))
    except USER_ERRORS as error:
        say("error", f"Not resumed: {error}")
        return
    st.session_state.train_watch = job.key
    st.session_state.app_run = job.key
    say("success", f"Resumed {Path(job.key).name} from step {job.payload.start_step}.")


# --- reattach: this session's run, or the one named in the URL (a reload) -------------------

wanted = st.query_params.get("run")
if wanted and (
    st.session_state.train_watch is None or Path(st.session_state.train_watch).name != wanted
):
    name = Path(wanted).name
    key = str(runs_root() / name)
    # Only a run folder directly inside the root: never "..", ".", a hidden one or a link out.
    inside = Path(key).resolve().parent == runs_root().resolve() and not name.startswith(".")
    if inside and manager.get(key) is not None:
        manager.adopt(key, me)
    if inside and Path(key).is_dir():
        st.session_state.train_watch = key
watch = st.session_state.train_watch
if watch:
    st.query_params["run"] = Path(watch).name
job = manager.get(watch) if watch else None
mine = job is not None and job.owner == me
running = job is not None and job.running


# --- the form --------------------------------------------------------------------------------

st.selectbox(
    "Preset",
    list(PRESETS),
    key="train_preset",
    on_change=apply_preset,
    format_func=lambda name: f"{name}: {PRESETS[name].description}",
)
with st.form("train_config_form", border=True):
    st.text_input(
        "Run name", key="train_name", placeholder="default: <corpus>-<level>", max_chars=64
    )
    columns = st.columns(4)
    for index, field in enumerate(FIELDS):
        number = int if field.is_int else float
        columns[index % 4].number_input(
            field.label,
            number(field.low),
            number(field.high),
            step=number(field.step),
            key=field.key,
            help=field.help or None,
            format=None if field.is_int else ("%.5f" if field.step < 0.01 else "%.2f"),
        )
    st.selectbox(
        "Device",
        DEVICES,
        key="train_device",
        help=f"auto picks CUDA, then MPS, then the CPU. Here: {cached.device_line()}",
    )
    st.form_submit_button("Start", type="primary", on_click=start, disabled=running and mine)

buttons = st.columns([1, 1, 2])
buttons[0].button("Stop", on_click=stop, disabled=not (running and mine), key="train_stop")
buttons[1].button(
    "Resume",
    on_click=resume,
    disabled=running,
    key="train_resume",
    help="Continue the watched run (or the sidebar's) from its last.pt",
)
buttons[2].number_input(
    "Steps to add on Resume (0: finish the planned steps)",
    0,
    100_000,
    step=50,
    key="train_resume_steps",
)

message = st.session_state.train_message
if message:
    kind, text = message
    getattr(st, kind)(text)
    st.session_state.train_message = None


# --- the live view ---------------------------------------------------------------------------

others = {str(run.path): run.path.name for run in list_runs() if str(run.path) != watch}
st.session_state.train_overlay = [p for p in st.session_state.train_overlay if p in others]
st.multiselect("Overlay earlier runs", list(others), format_func=others.get, key="train_overlay")


def draw_job(job_key: str, polling: bool) -> None:
    """Progress, chart and sample of the watched job; called once a second while it runs."""
    job = manager.get(job_key)
    overlays = [cached.run_curve_of(path) for path in st.session_state.train_overlay]
    if job is None:
        # Trained by an earlier server process: what its folder holds.
        curve = cached.run_curve_of(job_key)
        st.plotly_chart(
            loss_figure([curve, *overlays], title=Path(job_key).name), key="train_chart"
        )
        return
    view = job.view()
    payload = job.payload
    progress = job_progress(payload, view.events, view.started_at, time.monotonic())
    st.progress(
        progress.fraction,
        text=f"{Path(job_key).name}: step {progress.step:,} of {progress.max_steps:,}"
        f" · {view.status}",
    )
    cells = st.columns(5)
    cells[0].metric("tokens/s", f"{progress.tokens_per_s:,.0f}" if progress.tokens_per_s else "—")
    cells[1].metric(
        "MFU",
        f"{progress.mfu:.1%}" if progress.mfu is not None else "—",
        help="Model FLOPs utilisation: the model's training FLOPs per second over the "
        "device's rough peak (CPU: 32 float32 FLOPs per cycle per core; GPU: its bf16 peak).",
    )
    cells[2].metric("learning rate", f"{progress.lr:.2e}" if progress.lr else "—")
    cells[3].metric("time left", format_duration(progress.seconds_left) if view.running else "—")
    cells[4].metric(
        "best val loss",
        f"{progress.best_val_loss:.4f}" if progress.best_val_loss is not None else "—",
        help=f"at step {progress.best_step}" if progress.best_step is not None else None,
    )
    curve = job_curve(payload, view.events)
    st.plotly_chart(
        loss_figure(
            [curve, *overlays],
            vocab_size=payload.vocab_size,
            max_steps=payload.max_steps,
            title=f"Loss · {payload.corpus} ({payload.level})",
        ),
        key="train_chart",
    )
    if progress.sample is not None:
        st.caption(f"Sample at step {progress.sample_step} (temperature 0.8, fixed seed)")
        st.code(progress.sample, language=None, wrap_lines=True)
    if view.error:
        st.error(
            f"Training failed: {view.error}. The run is marked failed; its last good "
            "checkpoint is kept."
        )
    if polling and not view.running:
        st.rerun()  # the whole page: redraw the buttons and stop polling


if watch:
    # Every watching session redraws on each poll: at one second each, five people's polls
    # took the whole CPU and a sixth person's click waited minutes (tests/test_many_users.py).
    poll_s = max(1.0, 0.6 * manager.running_count())
    st.fragment(draw_job, run_every=poll_s if running else None)(watch, running)
else:
    st.info("Press Start to train; the loss appears here as it falls.")
    if st.session_state.train_overlay:
        curves = [cached.run_curve_of(path) for path in st.session_state.train_overlay]
        st.plotly_chart(loss_figure(curves, title="Earlier runs"), key="train_chart")

if watch and st.toggle(
    "Scrub through training: a snapshot at each evaluation", key="train_scrub_show"
):
    insight.draw_scrubber(watch, key="train_scrub")
