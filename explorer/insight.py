"""Streamlit pieces the new views share: downloads, attention badges, the training scrubber,
"why this token" and the memorisation captions.

The logic lives in tinytf (snapshots, explain, memorization, lesson) and in
explorer/scarcity.py, the figures in explorer/figures_scarcity.py; this module only draws
them, so each page adds a view with one call.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from explorer import export, figures
from explorer.figures_scarcity import (
    Badge,
    attention_badges,
    cumulative_figure,
    logits_figure,
    passage_html,
    renormalised_figure,
)
from explorer.models import ModelSource
from explorer.render import token_label
from explorer.sampler_view import LABELS, Knobs, column_settings
from explorer.scarcity import describe_memorization, training_tokens
from explorer.train_jobs import rows_curve
from tinytf.explain import TokenChoice, explain_step
from tinytf.lesson import (
    Lesson,
    LessonError,
    fingerprint,
    lesson_from_json,
    lesson_to_json,
    replay_generation,
)
from tinytf.memorization import MemorizationResult, TrainingIndex, default_n, memorization_rate
from tinytf.memorization import training_index as build_index
from tinytf.model import TinyGPT
from tinytf.runs import RunError, RunFolder, read_metrics, runs_root
from tinytf.sampling import SAMPLERS, Generation, SamplerSettings, SamplingError
from tinytf.snapshots import Snapshot, SnapshotError, list_snapshots, load_snapshot, snapshot_diff
from tinytf.tokenizer import Tokenizer

CHANGE_SCALE = 1.0  # nats of loss change at full colour in the "since the previous" passage


# --- downloads -----------------------------------------------------------------------------


@st.cache_resource(show_spinner=False)
def _browser() -> str | None:
    return export.browser_path()


def figure_downloads(fig: go.Figure, name: str, key: str) -> None:
    """PNG and SVG buttons for a figure, rendered on the server only when clicked."""
    if _browser() is None:
        st.caption("PNG/SVG downloads need Chromium on the server (apt-get install chromium).")
        return
    row = st.container(horizontal=True, gap="small")
    for fmt in export.FORMATS:
        row.download_button(
            fmt.upper(),
            data=functools.partial(export.figure_bytes, fig, fmt),
            file_name=export.safe_file_name(name, fmt),
            mime=export.FORMATS[fmt],
            on_click="ignore",
            icon=":material/download:",
            type="tertiary",
            key=f"{key}_{fmt}",
        )


def chart(fig: go.Figure, name: str, key: str, **kwargs) -> object:
    """st.plotly_chart followed by its PNG/SVG downloads; returns what plotly_chart does."""
    state = st.plotly_chart(fig, key=key, **kwargs)
    figure_downloads(fig, name, f"{key}_dl")
    return state


def attention_download(
    cache: Mapping[str, object], tokens: Sequence[str], name: str, key: str
) -> None:
    """The attention tensors of every layer (q, k, v, scores, weights) as .npz."""
    st.download_button(
        "Attention tensors (.npz)",
        data=functools.partial(export.attention_npz_bytes, cache, list(tokens)),
        file_name=export.safe_file_name(name, "npz"),
        mime="application/octet-stream",
        on_click="ignore",
        icon=":material/download:",
        key=key,
    )


def metrics_download(run_path: Path | str, key: str) -> None:
    """The run's metrics.csv rows as CSV."""

    def rows_csv() -> bytes:
        return export.csv_bytes(read_metrics(run_path))

    st.download_button(
        "Metrics (.csv)",
        data=rows_csv,
        file_name=export.safe_file_name(f"{Path(run_path).name}_metrics", "csv"),
        mime="text/csv",
        on_click="ignore",
        icon=":material/download:",
        key=key,
    )


# --- attention badges ----------------------------------------------------------------------


def draw_badges(badges: Sequence[Badge]) -> None:
    """One green or red badge per checked property; the measured number on hover."""
    row = st.container(horizontal=True, gap="small")
    for badge in badges:
        with row:
            st.badge(
                badge.label,
                icon=":material/check:" if badge.ok else ":material/close:",
                color="green" if badge.ok else "red",
                help=badge.detail,
            )


def merge_badges(per_head: Sequence[Sequence[Badge]]) -> list[Badge]:
    """Badges of many heads as one set: passed only if every head passed; the detail
    names how many passed and the first failure."""
    merged = []
    for same in zip(*per_head, strict=True):
        failed = [b for b in same if not b.ok]
        detail = f"{len(same) - len(failed)} of {len(same)} heads pass"
        if failed:
            detail += f"; first failure: {failed[0].detail}"
        merged.append(Badge(same[0].label, not failed, detail))
    return merged


def head_badges(cache: Mapping[str, object], layer: int, head: int, head_size: int) -> None:
    """The badges of one head of a capture cache, drawn."""
    draw_badges(attention_badges(cache, layer, head, head_size))


# --- training you can scrub ---------------------------------------------------------------


@st.cache_data(max_entries=64, show_spinner=False)
def _snapshot(run_path: str, step: int, stamp: float) -> Snapshot:
    # `stamp` (the file's mtime) is only part of the key: a resumed run may rewrite a step.
    return load_snapshot(run_path, step)


def _load(run_path: str, step: int) -> Snapshot:
    file = Path(run_path) / "snapshots" / f"step_{step:06d}.npz"
    try:
        stamp = file.stat().st_mtime
    except OSError:
        stamp = -1.0
    return _snapshot(run_path, step, stamp)


def _pick_step_from_chart(run_path: str, steps: list[int], key: str) -> None:
    """A small val curve with a point per snapshot; clicking one moves the slider."""
    try:
        rows = read_metrics(run_path)
    except RunError:
        rows = []
    curve = rows_curve(Path(run_path).name, rows)
    fig = figures.loss_figure([curve], title="click an evaluation to see its snapshot")
    fig.update_layout(height=300, showlegend=False)
    state = st.plotly_chart(fig, key=f"{key}_chart", on_select="rerun", selection_mode="points")
    points = state.selection.points if state and state.selection else []
    clicked = [int(p["x"]) for p in points if int(p.get("x", -1)) in steps]
    # Apply a click once: later slider moves must not be undone by the same old selection.
    if clicked and st.session_state.get(f"{key}_clicked") != clicked[0]:
        st.session_state[f"{key}_clicked"] = clicked[0]
        st.session_state[f"{key}_step"] = clicked[0]


def draw_scrubber(run_path: str | Path, key: str, vocab_size: int | None = None) -> None:
    """Scrub through a run's snapshots: attention, sample and per-token passage loss at
    one evaluation, and what changed since the one before.

    Args:
        run_path: the run folder.
        key: a widget-key prefix unique to the calling page.
        vocab_size: fixes the loss colour scale at ln(V), the loss of a uniform guess.
    """
    run_path = str(run_path)
    steps = list_snapshots(run_path)
    if not steps:
        st.info(
            "No snapshots in this run yet: they are saved at each evaluation when "
            "training with snapshots on (the app and the CLI do by default)."
        )
        return
    if vocab_size is None:
        try:
            vocab_size = int(RunFolder(run_path).read_config()["model"]["vocab_size"])
        except (RunError, KeyError, TypeError, ValueError):
            vocab_size = None
    _pick_step_from_chart(run_path, steps, key)
    if st.session_state.get(f"{key}_step") not in steps:
        st.session_state[f"{key}_step"] = steps[-1]
    step = st.select_slider("Snapshot at step", options=steps, key=f"{key}_step")
    try:
        snap = _load(run_path, step)
        index = steps.index(step)
        prev = _load(run_path, steps[index - 1]) if index else None
    except SnapshotError as error:
        st.error(f"This snapshot cannot be read: {error}")
        return
    _draw_snapshot(snap, prev, key, vocab_size)


def _draw_snapshot(snap: Snapshot, prev: Snapshot | None, key: str, vocab_size: int | None) -> None:
    diff = None
    if prev is not None:
        try:
            diff = snapshot_diff(prev, snap)
        except SnapshotError as error:
            st.warning(str(error))

    # 1. The passage, each token coloured by its loss, and the change since before.
    st.markdown(
        f"**Validation passage at step {snap.step}**: mean loss "
        f"{snap.mean_loss:.3f} nats per token"
        + ("" if diff is None else f" (was {diff.mean_loss_before:.3f} at step {diff.prev_step})")
    )
    vmax = math.log(vocab_size) if vocab_size and vocab_size > 1 else None
    st.html(passage_html(snap.passage_tokens, snap.token_losses, vmax=vmax))
    if diff is not None:
        st.caption(f"Change since step {diff.prev_step} (green: cheaper now, red: dearer)")
        st.html(passage_html(snap.passage_tokens, diff.loss_change, signed=True, vmax=CHANGE_SCALE))

    # 2. The fixed-seed sample.
    st.markdown(f"**Sample at step {snap.step}** (same prompt, sampler and seed at every step)")
    st.code(snap.sample_text, language=None, wrap_lines=True)
    if diff is not None:
        st.caption(
            "Same sample as the step before."
            if not diff.sample_changed
            else f"Differs from step {diff.prev_step}'s from token "
            f"{diff.first_sample_difference} on."
        )

    # 3. Attention of the probe, every layer and head, with the invariants checked.
    labels = [token_label(t) for t in snap.probe_tokens]
    grid = figures.attention_grid(
        snap.patterns, labels, title=f"attention of the probe at step {snap.step}"
    )
    chart(grid, f"attention_step_{snap.step}", key=f"{key}_grid")
    L, nh = snap.patterns.shape[:2]
    draw_badges(
        merge_badges(
            [
                attention_badges({f"blocks.{i}.attn.pattern": snap.patterns[i]}, i, h, 1)
                for i in range(L)
                for h in range(nh)
            ]
        )
    )
    if diff is not None:
        worst = np.unravel_index(int(np.argmax(diff.pattern_change)), diff.pattern_change.shape)
        st.caption(
            f"Largest change of one attention weight since step {diff.prev_step}: "
            f"{diff.pattern_change.max():.3f} (layer {worst[0]}, head {worst[1]})."
        )


# --- why this token -------------------------------------------------------------------------


def explain_position(
    generation: Generation, settings: SamplerSettings, position: int
) -> TokenChoice:
    """The choice of generated token number `position` (0 = the first new token), from
    the very logits it was drawn from (the generation kept them)."""
    record = generation.steps[position]
    return explain_step(generation.logits[position], settings, record.draw)


def draw_why_token(
    tokenizer: Tokenizer,
    generation: Generation,
    settings: SamplerSettings,
    position: int,
    key: str,
) -> None:
    """The whole path of one generated token, from the logits to the draw.

    `generation` must hold its steps and logits (record_steps and keep_logits).
    """
    choice = explain_position(generation, settings, position)
    labels = [token_label(t) for t in tokenizer.vocab]
    record = generation.steps[position]
    context = tokenizer.decode(generation.ids[max(0, record.position - 40) : record.position])
    st.markdown(
        f"After …`{context[-60:]}` the sampler picked **{labels[choice.chosen]}** "
        f"(rank {choice.chosen_rank + 1}, probability "
        f"{float(choice.probs_after[choice.chosen]):.3f} after the cut)."
    )
    cols = st.columns(4)
    cols[0].metric("tokens kept", f"{choice.kept} of {choice.order.numel()}")
    cols[1].metric("probability removed", f"{choice.mass_removed:.1%}")
    cols[2].metric(
        "entropy before → after",
        f"{choice.entropy_before:.2f} → {choice.entropy_after:.2f}",
        help="in nats; ln(number of equally likely tokens)",
    )
    cols[3].metric("random draw u", f"{choice.draw:.4f}")
    chart(logits_figure(choice, labels), f"why_logits_{position}", key=f"{key}_logits")
    chart(renormalised_figure(choice, labels), f"why_probs_{position}", key=f"{key}_probs")
    chart(cumulative_figure(choice, labels), f"why_draw_{position}", key=f"{key}_draw")


# --- memorisation ---------------------------------------------------------------------------


@st.cache_resource(max_entries=2, show_spinner="Indexing the training text…")
def run_training_index(run_path: str, stamp: float) -> TrainingIndex:
    """The run's training tokens, indexed once (read-only, so shared by every session).
    `stamp` (corpus.txt's mtime) is only part of the key."""
    return build_index(training_tokens(run_path))


def generation_memo(
    run_path: Path | str, tokenizer: Tokenizer, new_ids: Sequence[int]
) -> MemorizationResult | None:
    """How much of the generated tokens copies the run's training text (None if the
    run's training text cannot be read)."""
    corpus = Path(run_path) / "corpus.txt"
    try:
        index = run_training_index(str(run_path), corpus.stat().st_mtime)
    except (OSError, RunError):
        return None
    generated = tokenizer.token_strings(new_ids)
    return memorization_rate(generated, index, default_n(tokenizer.level), join=tokenizer.join)


def memo_caption(result: MemorizationResult | None) -> str:
    if result is None:
        return "memorisation: unknown (the run's training text cannot be read)"
    return f"memorisation: {describe_memorization(result)}"


# --- lessons (Samplers page) ---------------------------------------------------------------

KNOB_KEYS = {
    field: f"samp_{field}"
    for field in ("temperature", "top_k", "top_p", "ttp_temperature", "ttp_top_p")
}
NEW_TOKEN_RANGE = (5, 300, 5)  # the Samplers page's "New tokens" slider: low, high, step


@st.cache_data(max_entries=8, show_spinner=False)
def _fingerprint(_model: TinyGPT, model_key: str) -> str:
    return fingerprint(_model)


def samplers_lesson(
    source: ModelSource, checkpoint: str, column: str, settings: SamplerSettings
) -> Lesson:
    """The Samplers page as it stands, as a lesson on `column`'s sampler."""
    state = st.session_state
    lesson = Lesson(
        run=source.run_path.name,
        checkpoint=checkpoint,
        step=source.step,
        prompt=state.samp_prompt,
        sampler=settings,
        seed=int(state.samp_seed),
        max_new_tokens=int(state.samp_new_tokens),
        page="samplers",
        view={
            "knobs": {field: state[key] for field, key in KNOB_KEYS.items()},
            "column": column,
            "position": int(state.samp_why_position),
        },
        weights=_fingerprint(source.model, source.key),
        title=f"{LABELS.get(column, column)} on {source.run_path.name}",
    )
    return lesson_from_json(lesson_to_json(lesson))  # the reader's checks, before saving


def _lesson_knobs(lesson: Lesson) -> dict[str, object]:
    """Session values of the five columns' knobs that show the lesson's sampler."""
    knobs = dict(lesson.view.get("knobs") or {})
    unknown = set(knobs) - set(KNOB_KEYS)
    if unknown:
        raise LessonError(f"view.knobs: unknown knob {sorted(unknown)[0]!r}")
    sampler = lesson.sampler
    if sampler.kind == "temperature":
        knobs["temperature"] = sampler.temperature
    elif sampler.kind == "top-k":
        knobs["top_k"] = sampler.top_k
    elif sampler.kind == "top-p":
        knobs["top_p"] = sampler.top_p
    elif sampler.kind == "temperature-top-p":
        knobs["ttp_temperature"], knobs["ttp_top_p"] = sampler.temperature, sampler.top_p
    values = {KNOB_KEYS[field]: st.session_state[KNOB_KEYS[field]] for field in KNOB_KEYS}
    values.update({KNOB_KEYS[field]: value for field, value in knobs.items()})
    try:
        shown = column_settings(Knobs(**{f: values[KNOB_KEYS[f]] for f in KNOB_KEYS}))
    except (SamplingError, TypeError) as error:
        raise LessonError(f"view.knobs: {error}") from error
    if shown[sampler.kind] != sampler:
        raise LessonError(
            f"sampler: the Samplers page cannot show {sampler} (its top-k "
            "column samples at temperature 1)"
        )
    return values


def open_lesson_upload() -> None:
    """on_change of the lesson uploader: check the file and its run, then set the page
    (and the sidebar's run) to the lesson's view. Runs before the page script."""
    upload = st.session_state.get("samp_lesson_upload")
    if upload is None:
        return
    try:
        lesson = lesson_from_json(upload.getvalue())
        low, high, step = NEW_TOKEN_RANGE
        if not low <= lesson.max_new_tokens <= high or lesson.max_new_tokens % step:
            raise LessonError(
                f"max_new_tokens: the page shows {low} to {high} in steps of "
                f"{step}, the lesson asks for {lesson.max_new_tokens}"
            )
        knobs = _lesson_knobs(lesson)
        loaded, generation = replay_generation(lesson, runs_root())
    except LessonError as error:
        st.session_state.samp_lesson_message = ("error", f"Lesson not opened: {error}")
        return
    column = lesson.view.get("column", lesson.sampler.kind)
    position = lesson.view.get("position", 0)
    state = st.session_state
    state.app_run, state.app_checkpoint = str(loaded.path), lesson.checkpoint
    state.samp_prompt, state.samp_seed = lesson.prompt, lesson.seed
    state.samp_new_tokens = lesson.max_new_tokens
    state.update(knobs)
    state.samp_why_column = column if column in SAMPLERS else lesson.sampler.kind
    state.samp_why_position = position if isinstance(position, int) else 0
    state.samp_lesson_expect = {
        "column": lesson.sampler.kind,
        "title": lesson.title,
        "text": loaded.tokenizer.decode(generation.ids),
    }
    state.samp_lesson_message = (
        "success",
        f"Opened the lesson {lesson.title!r} on "
        f"{lesson.run} ({lesson.checkpoint}.pt, step {lesson.step}).",
    )


def draw_lesson_controls(
    source: ModelSource, checkpoint: str, column: str, settings: SamplerSettings
) -> None:
    """Download this view as a lesson file, or open one."""
    left, right = st.columns(2)
    with left:
        if checkpoint not in ("best", "last"):
            st.caption("A lesson needs a saved checkpoint: pick best or last in the sidebar.")
        else:
            lesson = samplers_lesson(source, checkpoint, column, settings)
            st.download_button(
                "Download this view as a lesson",
                data=lesson_to_json(lesson).encode("utf-8"),
                file_name=export.safe_file_name(f"{source.run_path.name}_{column}", "json").replace(
                    ".json", ".lesson.json"
                ),
                mime="application/json",
                on_click="ignore",
                icon=":material/school:",
                key="samp_lesson_download",
                help="The run folder's name, its checkpoint and step, the prompt, seed, "
                "sampler and this view. Opened beside the same run, it shows the same text.",
            )
    with right:
        st.file_uploader(
            "Open a lesson file",
            type=["json"],
            key="samp_lesson_upload",
            on_change=open_lesson_upload,
            max_upload_size=1,
        )


def check_lesson_text(generations: Mapping[str, Generation], tokenizer: Tokenizer) -> None:
    """After a lesson was opened: does its column show the text the lesson replayed?"""
    expect = st.session_state.get("samp_lesson_expect")
    if not expect or expect["column"] not in generations:
        return
    shown = tokenizer.decode(generations[expect["column"]].ids)
    if shown == expect["text"]:
        st.success(
            f"Lesson {expect['title']!r}: the {LABELS[expect['column']]} column "
            "shows exactly the lesson's text."
        )
    else:
        st.warning(
            f"Lesson {expect['title']!r}: the page's settings have changed since it "
            "was opened, so its text differs from the lesson's."
        )
