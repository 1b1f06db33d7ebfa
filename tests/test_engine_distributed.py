"""Two CPU processes under torchrun (gloo): DDP training steps, then validation where each
rank evaluates a disjoint share of the scenes and only the confusion matrix is summed. The
matrix must equal a single-process evaluation of the same weights: every scene counted
exactly once (5 scenes over 2 ranks: no padding duplicate). The child is this file."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
VAL_SEEDS = range(100, 105)


def test_two_process_confusion_equals_single_process(tmp_path):
    # faulthandler: should a process abort, its Python stack is in the assertion message
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(HERE / "test_engine_distributed.py"), str(tmp_path)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    from test_engine_trainer import TinyNet, collate, seeded_source

    from pcseg.engine.checkpoint import load_checkpoint, model_state
    from pcseg.engine.evaluate import evaluate_source

    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["step"] == 2  # 8 scenes, 2 ranks, batch 2: two DDP steps
    net = TinyNet()
    net.load_state_dict(model_state(ckpt))
    val = seeded_source(VAL_SEEDS)
    single = evaluate_source(lambda s: net(collate([s]))["logits"], val, 3).matrix
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["confusion"] == single.tolist()
    assert int(np.sum(metrics["confusion"])) == 5 * 64
    # both ranks took part: each wrote down the scenes it evaluated, disjoint and complete
    shares = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert sorted(shares[0] + shares[1]) == sorted(val.names()) and not set(shares[0]) & set(shares[1])


def _child(run_dir: str) -> None:
    from test_engine_trainer import make_setup, seeded_source, tiny_config

    from pcseg.engine import distributed as dist
    from pcseg.engine.trainer import Trainer

    torch.set_num_threads(1)
    device = torch.device("cpu")
    dist.init_distributed(device)
    cfg = tiny_config("train.epochs=1")
    val = seeded_source(VAL_SEEDS)
    seen: list[str] = []
    load = val.load
    val.load = lambda name: (seen.append(name), load(name))[1]
    setup = make_setup(cfg, seeded_source(range(8)), val, dist.rank(), dist.world_size())
    Trainer(setup, run_dir, device).fit()
    Path(run_dir, f"rank{dist.rank()}.json").write_text(json.dumps(seen))
    dist.shutdown_distributed()  # as `pcseg train` leaves: barrier, then destroy


if __name__ == "__main__":
    _child(sys.argv[1])
