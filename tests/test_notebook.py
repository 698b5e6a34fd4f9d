"""notebooks/tour.ipynb runs from top to bottom, so it cannot rot as tinytf changes.

The notebook is executed by nbclient in a kernel registered from this interpreter (the
project's venv), started in notebooks/ as Jupyter would start it. Every place a kernel
could write to (temp files, IPython's history, Jupyter's runtime files) points into the
test's tmp_path, and the test checks the notebook left nothing behind in the checkout.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO_ROOT / "notebooks" / "tour.ipynb"
KERNEL_NAME = "tinytf-test-venv"


def _require(module: str):
    """Import a test tool, failing (not skipping) with how to install it."""
    try:
        return __import__(module)
    except ImportError:
        pytest.fail(
            f"{module} is missing: pip install -r requirements-dev.txt "
            "(nbformat, nbclient and ipykernel run the notebook test)"
        )


def _register_kernel(jupyter_dir: Path) -> None:
    """A kernelspec that starts ipykernel with this very interpreter."""
    _require("ipykernel")
    spec_dir = jupyter_dir / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "tinytf tests (venv)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))


def _listing(folder: Path) -> set[str]:
    if not folder.exists():
        return set()
    return {str(path.relative_to(folder)) for path in folder.rglob("*")}


def _text_outputs(nb) -> str:
    """All printed text and plain-text results of the executed notebook, joined."""
    parts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                parts.append(output["text"])
            elif "data" in output:
                parts.append(output["data"].get("text/plain", ""))
    return "\n".join(parts)


def test_tour_is_stored_without_outputs() -> None:
    """Outputs are made by running it; stored ones would only go stale and bloat diffs."""
    nbformat = _require("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


@pytest.mark.slow
def test_tour_runs_top_to_bottom_and_writes_only_to_a_temp_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nbformat = _require("nbformat")
    nbclient = _require("nbclient")

    jupyter_dir = tmp_path / "jupyter"
    _register_kernel(jupyter_dir)
    temp_dir = tmp_path / "tmp"
    temp_dir.mkdir()
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_dir))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("TMPDIR", str(temp_dir))
    monkeypatch.delenv("TINYTF_RUNS", raising=False)

    watched = [NOTEBOOK.parent, REPO_ROOT / "runs"]
    before = {folder: _listing(folder) for folder in watched}

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=180,
        kernel_name=KERNEL_NAME,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
    print(f"tour.ipynb ran in {elapsed:.1f} s")

    text = _text_outputs(nb)
    assert f"runs go to {temp_dir}" in text, "the runs folder is not inside the temp dir"
    assert "finished at step 80" in text
    assert "pattern shape: (1, 4, 12, 12)" in text
    assert "every row sums to 1: True" in text
    assert "no weight on later tokens: True" in text
    assert "last.pt reproduces the trained model: True" in text
    assert "tour: finished, step 80/80" in text

    # Nothing left in the checkout, and the temp folder cleaned up after itself.
    assert {folder: _listing(folder) for folder in watched} == before
    assert not list(temp_dir.glob("tinytf-tour-*"))
