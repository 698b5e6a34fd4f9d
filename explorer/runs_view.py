"""The Runs page's table and curves, from the run folders on disk. No Streamlit here."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from tinytf.runs import RunError, RunFolder, RunInfo

COLUMNS = (
    "name",
    "corpus",
    "level",
    "config",
    "steps",
    "best val loss",
    "last val loss",
    "status",
    "created",
    "folder",
)


def config_summary(run: RunInfo) -> str:
    """'2×4×64, ctx 32, 29k params' from the run's config.json ('?' when unreadable)."""
    try:
        model = RunFolder(run.path).read_config().get("model", {})
    except RunError:
        return "?"
    shape = f"{model.get('n_layer', '?')}×{model.get('n_head', '?')}×{model.get('n_embd', '?')}"
    params = f", {run.n_params / 1000:.0f}k params" if run.n_params else ""
    return f"{shape}, ctx {model.get('block_size', '?')}{params}"


def runs_table(runs: Sequence[RunInfo]) -> pd.DataFrame:
    """One row per run, newest first, with the columns in COLUMNS."""
    rows = []
    for run in runs:
        rows.append(
            {
                "name": run.name,
                "corpus": run.corpus,
                "level": run.level,
                "config": config_summary(run),
                "steps": f"{run.last_step or 0}/{run.max_steps or '?'}",
                "best val loss": run.best_val_loss,
                "last val loss": run.record.get("last_val_loss"),
                "status": run.status,
                "created": run.created,
                "folder": run.path.name,
            }
        )
    return pd.DataFrame(rows, columns=list(COLUMNS))
