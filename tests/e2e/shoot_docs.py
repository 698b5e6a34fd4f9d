"""Take the README's screenshots, docs/screenshots/<page>.png, in headless Chromium.

    .venv/bin/python tests/e2e/shoot_docs.py                      # every page but the lab
    .venv/bin/python tests/e2e/shoot_docs.py --lab-runs runs      # the lab too, from runs/
    .venv/bin/python tests/e2e/shoot_docs.py --lab-runs runs --lab-only

The app is served on a fresh tmp runs folder. The tiny preset trains on the Zen of Python at
word level through the Train page for its full 300 steps, so every page has a real run to
show; the analysis pages look at that run's last.pt. The Scarcity lab needs a lab trained
beforehand: --lab-runs points a second server at the runs folder that holds one.

The sidebar's page icons are emoji: without an emoji font they show as empty boxes
(apt-get install fonts-noto-color-emoji). Not a test: pytest does not collect this file.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import appdriver  # tests/e2e/appdriver.py, beside this script
from PIL import Image  # installed with streamlit
from playwright.sync_api import sync_playwright

VIEWPORT = {"width": 1400, "height": 1000}
TRAIN_MINUTES = 15  # the tiny preset's 300 steps take well under a minute on an idle machine


def shoot(page, out: Path, name: str, chart: str | None = None) -> None:
    """Wait for the page to settle, check it is clean, center `chart` if given, save."""
    appdriver.settle(page, 180_000)
    found = appdriver.problems(page)
    if found:
        raise SystemExit(f"{name}: the page shows a problem: {found}")
    if chart is not None:
        appdriver.show_plot(page, chart)
    path = out / f"{name}.png"
    page.screenshot(path=str(path))
    # A 256-colour palette keeps a UI screenshot sharp at about a third of the bytes.
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)
    print(f"saved {path} ({path.stat().st_size // 1024} KiB)")


def train_tiny_run(page, out: Path) -> None:
    """Data: zen at word level. Train: the tiny preset's 300 steps, to the end."""
    page.get_by_role("radiogroup", name="Corpus").get_by_text("Zen of Python").click()
    page.get_by_role("radiogroup", name="Tokeniser level").get_by_text("word", exact=True).click()
    page.locator("[data-testid=stMain] h3", has_text="zen at word level").wait_for()
    shoot(page, out, "data")

    appdriver.open_page(page, "Train")
    page.get_by_role("button", name="Start", exact=True).click()
    finished = page.locator("[data-testid=stProgress]", has_text="· finished")
    finished.wait_for(timeout=TRAIN_MINUTES * 60_000)
    # A reload (the run is in the URL) redraws the sidebar too: within one session
    # Streamlit keeps showing the Run picker's label from when the run was started.
    page.reload()
    appdriver.wait_for_title(page, "Train")
    finished.wait_for()
    shoot(page, out, "train", chart="Loss ·")


def walk_pages(page, out: Path) -> None:
    """Every analysis page on the run's last.pt (best.pt of a memorising run is early)."""
    page.locator("[data-testid=stSidebar]").get_by_text("last", exact=True).click()
    appdriver.settle(page)
    appdriver.open_page(page, "Attention")
    shoot(page, out, "attention", chart="Layer 0, head 0")
    for title, name in [
        ("Causal mask", "causal_mask"),
        ("Block stepper", "block_stepper"),
        ("Samplers", "samplers"),
        ("Runs", "runs"),
    ]:
        appdriver.open_page(page, title)
        shoot(page, out, name)


def shoot_walk(browser, out: Path, work: Path) -> None:
    """Every page but the lab, around a tiny run trained here in a fresh runs folder."""
    (work / "runs").mkdir()
    with appdriver.serve_app(work / "runs", work / "server.log") as url:
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(url)
        appdriver.wait_for_title(page, "Data")
        appdriver.settle(page)
        train_tiny_run(page, out)
        walk_pages(page, out)


def shoot_lab(browser, lab_runs: Path, out: Path, work: Path) -> None:
    """The Scarcity lab page on a runs folder that already holds a lab."""
    with appdriver.serve_app(lab_runs, work / "lab_server.log") as url:
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(url)
        appdriver.wait_for_title(page, "Data")
        appdriver.settle(page)
        appdriver.open_page(page, "Scarcity lab")
        shoot(page, out, "scarcity_lab", chart="less and less data")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=appdriver.REPO_ROOT / "docs" / "screenshots")
    parser.add_argument("--lab-runs", type=Path, help="a runs folder holding a scarcity lab")
    parser.add_argument("--lab-only", action="store_true", help="shoot the Scarcity lab only")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="shoot_docs_") as tmp, sync_playwright() as pw:
        work = Path(tmp)
        browser = appdriver.launch_chromium(pw)
        try:
            if not args.lab_only:
                shoot_walk(browser, args.out, work)
            if args.lab_runs is not None:
                shoot_lab(browser, args.lab_runs.resolve(), args.out, work)
            else:
                print("no --lab-runs: the Scarcity lab page was not shot")
        finally:
            browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
