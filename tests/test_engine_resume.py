"""`--resume` continues exactly: a run killed by SIGKILL mid-epoch and resumed ends with the
same weights (torch.equal) as an uninterrupted run. The child process is this file run as a
script; it kills itself from the method's `after_step` hook, one step after a checkpoint,
so the step it lost is redone from the checkpoint."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def run_child(run_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(HERE / "test_engine_resume.py"), str(run_dir), *args],
                          capture_output=True, text=True, env=env, timeout=120)


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "last.pt", weights_only=False)["method"]


def test_killed_and_resumed_run_equals_uninterrupted(tmp_path):
    full = run_child(tmp_path / "full")
    assert full.returncode == 0, full.stderr
    killed = run_child(tmp_path / "cut", "--kill-after", "6")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    ckpt = torch.load(tmp_path / "cut" / "last.pt", weights_only=False)
    # checkpoint_every=5 with 4 steps per epoch: the last save was step 5, mid epoch 1
    assert (ckpt["step"], ckpt["epoch"], ckpt["step_in_epoch"]) == (5, 1, 1)
    resumed = run_child(tmp_path / "cut", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a, b = final_weights(tmp_path / "full"), final_weights(tmp_path / "cut")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert torch.load(tmp_path / "full" / "last.pt", weights_only=False)["step"] == 12
    # the comparison is not vacuous: training after the checkpoint changed the weights
    assert any(not torch.equal(ckpt["method"][k], a[k]) for k in a)


def _child(argv: list[str]) -> None:
    import argparse

    from test_engine_trainer import make_setup, seeded_source, tiny_config

    from pcseg.engine.trainer import Trainer

    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--kill-after", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cfg = tiny_config("train.checkpoint_every=5", "optim.name=adamw", "optim.lr=0.01", "scheduler.name=cosine")
    setup = make_setup(cfg, seeded_source(range(8)), None)
    if args.kill_after:
        def after_step(step: int) -> None:
            if step == args.kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
        setup.method.after_step = after_step
    trainer = Trainer(setup, args.run_dir, torch.device("cpu"))
    if args.resume:
        trainer.resume(Path(args.run_dir) / "last.pt")
    trainer.fit()


if __name__ == "__main__":
    _child(sys.argv[1:])
