"""The explorer in a real browser: a person's walk through every page, and a reload while
a run trains.

Each page is checked the same way: no Streamlit exception box, no traceback text, and no
request to any host but the app's own. A screenshot of each lands in
test-artifacts/screenshots/. Two timings come from the browser's own clock: page load to
first paint of the Data page, and Start to the first loss point on the chart.

Run alone with: .venv/bin/pytest tests/e2e -m browser
"""

from __future__ import annotations

import re

import appdriver  # tests/e2e/appdriver.py: pytest puts this folder on sys.path
import pytest

pytestmark = pytest.mark.browser

UNKNOWN_WORD = "xylophone"  # not a word of the Zen of Python
PROMPT = f"Beautiful is better than {UNKNOWN_WORD}."
PROMPT_LABELS = ["Beautiful", "is", "better", "than", f"⟨{UNKNOWN_WORD}⟩?", "."]
# The tiny preset plans 300 steps; more leaves room to stop it (and to reload) while it
# runs on a fast machine. Every test stops its run after a few seconds.
STEPS = 3000
TRAIN_CHART = "Loss ·"  # the live chart's title: "Loss · zen (word)"
PROGRESS = re.compile(r"(?P<run>\S+): step (?P<step>[\d,]+) of (?P<of>[\d,]+) · (?P<status>\w+)")
SLOW_PAGE_MS = 120_000  # the Samplers page generates 5 x 80 tokens on its first run
# The first step of a server's first run pays torch's start-up costs: 2-3 s on an idle
# 2-core machine, 55 s measured on one running several other test suites at once.
FIRST_POINT_MS = 180_000

# Polled on every animation frame: the time the condition first held, by the page's clock.
TITLE_SHOWN_AT = """(title) => {
    const h1 = [...document.querySelectorAll('[data-testid=stMain] h1')]
        .find(h => h.textContent.includes(title));
    return h1 ? performance.now() : false;
}"""
FIRST_POINT_AFTER_CLICK = f"""(title) => {{
    const stats = ({appdriver.PLOT_STATS_JS})(title);
    return stats && stats.points > 0 ? performance.now() - window.__tinytfClickAt : false;
}}"""
RECORD_NEXT_CLICK = """() => document.addEventListener(
    'click', () => { window.__tinytfClickAt = performance.now(); },
    { capture: true, once: true })"""


# --- steps every test shares ---------------------------------------------------------------


def check_page(app, report, name: str, chart: str | None = None) -> None:
    """The page is drawn, shows no exception or traceback, and only talked to the app.
    Its screenshot shows `chart` (a chart title) when given, else the top of the page."""
    page = app.page
    appdriver.settle(page, SLOW_PAGE_MS)
    assert appdriver.problems(page) == [], f"{name} page: {appdriver.problems(page)}"
    if chart is not None:
        appdriver.show_plot(page, chart)
    report.screenshot(page, name)
    assert app.foreign() == [], f"{name} page: requests off this machine"


def progress(page) -> dict:
    """Run name, step and status from the progress bar above the live chart."""
    text = page.locator("[data-testid=stMain] [data-testid=stProgress]").first.inner_text()
    match = PROGRESS.search(text)
    assert match, f"progress bar reads {text!r}"
    fields = match.groupdict()
    return {**fields, "step": int(fields["step"].replace(",", ""))}


def wait_status(page, status: str) -> None:
    page.locator("[data-testid=stProgress]", has_text=f"· {status}").first.wait_for(
        timeout=appdriver.PAGE_TIMEOUT_MS
    )


def start_tiny_run(page, report=None) -> dict:
    """On the Train page: the tiny preset, STEPS steps, Start; returns the chart's
    {points, last_x} once it shows the first loss point."""
    preset = page.get_by_label("Preset", exact=True).input_value()
    assert preset.startswith("tiny:"), preset
    steps = page.get_by_label("Steps", exact=True)
    steps.fill(str(STEPS))
    steps.press("Tab")
    page.evaluate(RECORD_NEXT_CLICK)
    page.get_by_role("button", name="Start", exact=True).click()
    waited = page.wait_for_function(
        FIRST_POINT_AFTER_CLICK, arg=TRAIN_CHART, polling="raf", timeout=FIRST_POINT_MS
    )
    if report is not None:
        report.timing("Start to first loss point", float(waited.json_value()))
    return appdriver.plot_stats(page, TRAIN_CHART)


def stop_run(page) -> None:
    page.get_by_role("button", name="Stop", exact=True).click()
    wait_status(page, "stopped")


# --- the walk, one page at a time ---------------------------------------------------------


def data_page(app, report) -> None:
    """Open the app (timing its first paint), then pick the Zen of Python at word level."""
    page = app.page
    page.goto(app.base_url, wait_until="commit")
    title_at = page.wait_for_function(TITLE_SHOWN_AT, arg="Data", polling="raf").json_value()
    paints = page.evaluate(
        "Object.fromEntries(performance.getEntriesByType('paint').map(e => [e.name, e.startTime]))"
    )
    for name in ("first-paint", "first-contentful-paint"):
        assert name in paints, f"no {name} entry: {paints}"
        report.timing(f"Data page load to {name}", paints[name])
    report.timing("Data page load to its title drawn", title_at)
    appdriver.settle(page)

    page.get_by_role("radiogroup", name="Corpus").get_by_text("Zen of Python").click()
    page.get_by_role("radiogroup", name="Tokeniser level").get_by_text("word", exact=True).click()
    page.locator("[data-testid=stMain] h3", has_text="zen at word level").wait_for()
    check_page(app, report, "data")


def train_page(app, report) -> str:
    """Start the tiny preset, see the curve grow, stop it; returns the run's folder name."""
    page = app.page
    appdriver.open_page(page, "Train")
    page.get_by_text("Corpus zen at word level").wait_for()
    first = start_tiny_run(page, report)
    appdriver.wait_for_plot(page, TRAIN_CHART, points_over=first["points"])
    run = progress(page)["run"]
    assert run.endswith("zen-word"), run
    check_page(app, report, "train", chart=TRAIN_CHART)
    stop_run(page)
    return run


def attention_page(app, report, run: str) -> None:
    """A prompt with a word the corpus never had: its tokens label both axes of the
    heatmap, the unknown one marked ⟨word⟩?."""
    page = app.page
    appdriver.open_page(page, "Attention")
    page.get_by_text(f"Model: {run}").wait_for()
    prompt = page.get_by_label("Prompt", exact=True)
    prompt.fill(PROMPT)
    prompt.press("Enter")
    page.locator("[data-testid=stAlert]", has_text=UNKNOWN_WORD).wait_for()
    appdriver.settle(page)
    heatmap = appdriver.plot_layout(page, "Layer 0, head 0")
    assert heatmap is not None, "no attention heatmap for layer 0, head 0"
    assert heatmap["xticks"] == PROMPT_LABELS
    assert heatmap["yticks"] == PROMPT_LABELS
    assert heatmap["z_rows"] == len(PROMPT_LABELS)
    assert f"⟨{UNKNOWN_WORD}⟩?" in heatmap["shown_ticks"], "unknown word not drawn on an axis"
    check_page(app, report, "attention", chart="Layer 0, head 0")


def samplers_page(app, report) -> None:
    """Moving the temperature changes that column's text, and no other column's."""
    page = app.page
    appdriver.open_page(page, "Samplers")
    appdriver.settle(page, SLOW_PAGE_MS)
    temperature = page.locator("[data-testid=stMain] [data-testid=stColumn]").filter(
        has=page.get_by_text("Temperature", exact=True)
    )
    assert "T=1\n" in temperature.inner_text()
    before = sampler_texts(page)

    slider = page.locator("input[type=range][aria-label='T']").first
    slider.focus()
    slider.press("End")  # the slider's maximum: one value change, one rerun
    temperature.get_by_text("T=2.5").wait_for(timeout=SLOW_PAGE_MS)
    appdriver.settle(page, SLOW_PAGE_MS)
    after = sampler_texts(page)
    assert after[1] != before[1], "the temperature column's text did not change"
    assert [after[i] for i in (0, 2, 3, 4)] == [before[i] for i in (0, 2, 3, 4)]
    check_page(app, report, "samplers")


def sampler_texts(page) -> list[str]:
    """The generated text of each sampler column: greedy, temperature, top-k, top-p, T + top-p."""
    codes = page.locator("[data-testid=stMain] [data-testid=stColumn] [data-testid=stCode]")
    assert codes.count() == 5, f"{codes.count()} sampler texts"
    return codes.all_inner_texts()


def runs_page(app, report, run: str) -> None:
    """The run is listed and its curve drawn. The table is drawn on a canvas, so the run
    is looked for by its folder's name in the overlay picker and in the chart."""
    page = app.page
    appdriver.open_page(page, "Runs")
    picker = page.locator("[data-testid=stMultiSelect]", has_text="Curves to overlay")
    picker.get_by_text(run, exact=True).first.wait_for()
    names = page.evaluate(
        """() => [...document.querySelectorAll('[data-testid=stMain] .js-plotly-plot')]
            .flatMap(p => (p.data || []).map(t => t.name || ''))"""
    )
    assert f"{run} · val" in names, names
    check_page(app, report, "runs")


# --- the tests -----------------------------------------------------------------------------

WALKED = ("Data", "Train", "Attention", "Causal mask", "Block stepper", "Samplers", "Runs")


def test_walk_through_every_page(app, e2e_report):
    """Data, Train, Attention, Causal mask, Block stepper, Samplers, Runs, and any page
    added to the navigation after them (the Scarcity lab), the way a person would go."""
    data_page(app, e2e_report)
    run = train_page(app, e2e_report)
    attention_page(app, e2e_report, run)
    for title in ("Causal mask", "Block stepper"):
        appdriver.open_page(app.page, title)
        check_page(app, e2e_report, title.lower().replace(" ", "_"))
    samplers_page(app, e2e_report)
    runs_page(app, e2e_report, run)

    links = app.page.locator("[data-testid=stSidebarNav] a").all_inner_texts()
    titles = [text.strip().split("\n")[-1] for text in links]  # the icon comes first
    assert set(WALKED) <= set(titles), titles
    for title in [t for t in titles if t not in WALKED]:
        appdriver.open_page(app.page, title)
        check_page(app, e2e_report, title.lower().replace(" ", "_"))
    assert app.foreign() == []
    assert app.server_tracebacks() == ""


def test_reload_finds_the_run_still_training(app, e2e_report):
    """Reloading the Train page while a run trains (a new browser session) finds the same
    run, still running, with its curve continuing from where it was."""
    page = app.page
    page.goto(app.base_url, wait_until="commit")
    appdriver.wait_for_title(page, "Data")
    appdriver.settle(page)
    appdriver.open_page(page, "Train")

    first = start_tiny_run(page)
    before = appdriver.wait_for_plot(page, TRAIN_CHART, points_over=first["points"])
    started = progress(page)
    assert started["status"] == "running"
    assert f"run={started['run']}" in page.url

    page.reload(wait_until="commit")
    appdriver.wait_for_title(page, "Train")
    # The whole curve so far comes back, not a fresh one, and then it grows.
    shown = appdriver.wait_for_plot(
        page, TRAIN_CHART, points_over=before["points"] - 1, last_x_over=before["last_x"] - 1
    )
    again = progress(page)
    assert again["run"] == started["run"]
    assert again["status"] == "running"
    appdriver.wait_for_plot(page, TRAIN_CHART, last_x_over=shown["last_x"])
    check_page(app, e2e_report, "train_after_reload", chart=TRAIN_CHART)

    stop_run(page)  # the reloaded session adopted the job: its Stop button works
    assert progress(page)["run"] == started["run"]
    assert app.foreign() == []
    assert app.server_tracebacks() == ""
