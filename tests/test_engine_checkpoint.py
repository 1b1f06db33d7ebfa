import random

import numpy as np
import pytest
import torch

from pcseg.engine.checkpoint import (load_checkpoint, model_state, resolve_checkpoint, rng_state,
                                     save_checkpoint, set_rng_state)


def test_atomic_save_round_trip_leaves_no_temporary(tmp_path):
    state = {"method": {"model.w": torch.arange(3.0), "teacher.w": torch.ones(2)}, "config": {"name": "x"}}
    save_checkpoint(state, tmp_path / "last.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
    back = load_checkpoint(tmp_path / "last.pt")
    assert torch.equal(back["method"]["model.w"], torch.arange(3.0))
    assert list(model_state(back)) == ["w"]  # the teacher is not part of the inference network


def test_failed_write_keeps_previous_checkpoint(tmp_path):
    save_checkpoint({"method": {"model.w": torch.zeros(1)}, "config": {}}, tmp_path / "last.pt")
    with pytest.raises(Exception):
        save_checkpoint({"method": {"model.w": torch.ones(1)}, "config": {}, "bad": lambda: 0}, tmp_path / "last.pt")
    assert torch.equal(load_checkpoint(tmp_path / "last.pt")["method"]["model.w"], torch.zeros(1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    torch.save({"weights": 1}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not a pcseg checkpoint"):
        load_checkpoint(tmp_path / "x.pt")
    with pytest.raises(FileNotFoundError, match="neither best.pt nor last.pt"):
        resolve_checkpoint(tmp_path)


def test_resolve_prefers_best(tmp_path):
    for name in ("last.pt", "best.pt"):
        (tmp_path / name).write_bytes(b"")
    assert resolve_checkpoint(tmp_path).name == "best.pt"


def test_rng_states_restore_every_generator():
    state = rng_state()
    first = (random.random(), np.random.random(), torch.rand(1).item())
    set_rng_state(state)
    assert (random.random(), np.random.random(), torch.rand(1).item()) == first
