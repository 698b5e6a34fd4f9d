"""Training on two CPU processes with DistributedDataParallel (gloo), on this machine.

1. Two ranks spawned here train one tiny model: after every step both hold bit-identical
   weights, although each drew a different batch (their first losses, taken on the same
   starting weights, differ); only rank 0 wrote a run folder, which is whole and loads
   in a single process with the final weights.
2. `torchrun --nproc_per_node=2 -m tinytf train ...` end to end: one run folder, finished,
   its metrics written once, its checkpoints loadable by `load_run`.
3. The torchrun environment is read and checked (no processes needed).
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from tinytf.config import TrainConfig
from tinytf.corpus import load_corpus
from tinytf.distributed import DistContext, DistributedError, backend_for, setup, teardown
from tinytf.runs import load_run, read_metrics, start_run
from tinytf.training import StepMetrics

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL = {"block_size": 16, "n_layer": 1, "n_head": 2, "n_embd": 32}
TRAIN = TrainConfig(
    batch_size=4, max_steps=6, eval_interval=3, eval_batches=2, warmup_steps=2, device="cpu"
)
WORLD_SIZE = 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter's bytes, in order: equal digests mean equal weights."""
    digest = hashlib.sha256()
    for name, param in model.state_dict().items():
        digest.update(name.encode())
        digest.update(param.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _rank_main(rank: int, port: int, out: str) -> None:
    """One rank: join the group, train, and write 'step loss digest' lines to a file."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD_SIZE),
    )
    torch.set_num_threads(1)  # two processes on two cores
    context = DistContext.from_env()
    setup(context, torch.device("cpu"))
    try:
        corpus = load_corpus("zen")
        trainer = start_run(
            corpus, "char", MODEL, TRAIN, root=Path(out) / "runs", distributed=context
        )
        lines = []

        def on_event(event: object) -> None:
            if isinstance(event, StepMetrics):
                lines.append(f"{event.step} {event.loss!r} {weights_digest(trainer.model)}")

        result = trainer.train(on_event=on_event)
        lines.append(f"{result.status} {trainer.run is not None}")
        (Path(out) / f"rank{rank}.txt").write_text("\n".join(lines) + "\n")
    finally:
        teardown(context)


@pytest.mark.slow
def test_two_ranks_hold_identical_weights_after_every_step(tmp_path: Path) -> None:
    mp.spawn(_rank_main, args=(_free_port(), str(tmp_path)), nprocs=WORLD_SIZE, join=True)

    ranks = [(tmp_path / f"rank{r}.txt").read_text().split("\n")[:-1] for r in range(2)]
    steps = [[line.split() for line in lines[:-1]] for lines in ranks]
    assert [len(s) for s in steps] == [TRAIN.max_steps, TRAIN.max_steps]
    for (step0, _, digest0), (step1, _, digest1) in zip(*steps, strict=True):
        assert step0 == step1
        assert digest0 == digest1, f"ranks' weights differ after step {step0}"
    # Same starting weights, different first losses: the ranks drew different batches.
    assert steps[0][0][1] != steps[1][0][1]
    # Weights change at each step (the digests are not all the same).
    assert len({digest for _, _, digest in steps[0]}) == TRAIN.max_steps
    assert ranks[0][-1] == "finished True"  # rank 0 wrote a run
    assert ranks[1][-1] == "finished False"  # rank 1 wrote nothing

    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1
    loaded = load_run(runs[0], checkpoint="last")
    assert loaded.record["status"] == "finished"
    assert loaded.step == TRAIN.max_steps
    assert weights_digest(loaded.model) == steps[0][-1][2]
    load_run(runs[0], checkpoint="best")
    assert [row["step"] for row in read_metrics(runs[0] / "metrics.csv")] == list(range(7))


@pytest.mark.slow
def test_torchrun_trains_one_run_that_a_single_process_loads(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(load_corpus("zen").text)
    command = [
        *(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"),
        *("-m", "tinytf", "train", "--corpus", str(corpus), "--level", "char"),
        *("--steps", "4", "--eval-interval", "2", "--batch-size", "4", "--block-size", "16"),
        *("--layers", "1", "--heads", "2", "--width", "32", "--device", "cpu"),
        *("--runs-dir", str(tmp_path / "runs")),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("finished at step 4") == 1  # only rank 0 prints

    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1
    loaded = load_run(runs[0], checkpoint="last")
    assert loaded.record["status"] == "finished"
    assert loaded.step == 4
    assert [row["step"] for row in read_metrics(runs[0] / "metrics.csv")] == [0, 1, 2, 3, 4]


def test_context_from_torchrun_variables() -> None:
    context = DistContext.from_env({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4"})
    assert (context.rank, context.local_rank, context.world_size) == (3, 1, 4)
    assert context.enabled and not context.is_main
    assert context.batch_seed(1337) == 1340
    single = DistContext.from_env({})
    assert not single.enabled and single.is_main and single.batch_seed(1337) == 1337


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"RANK": "two", "WORLD_SIZE": "4"}, "RANK"),
        ({"RANK": "4", "WORLD_SIZE": "4"}, "RANK"),
        ({"WORLD_SIZE": "0"}, "WORLD_SIZE"),
        ({"LOCAL_RANK": "-1", "WORLD_SIZE": "2"}, "LOCAL_RANK"),
    ],
)
def test_bad_torchrun_variables_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(DistributedError, match=f"^{variable}:"):
        DistContext.from_env(env)


def test_backend_gloo_on_cpu_nccl_on_cuda() -> None:
    assert backend_for(torch.device("cpu")) == "gloo"
    assert backend_for(torch.device("cuda", 0)) == "nccl"


def test_single_process_setup_joins_nothing() -> None:
    device = setup(DistContext(), torch.device("cpu"))
    assert device == torch.device("cpu")
    assert not torch.distributed.is_initialized()
