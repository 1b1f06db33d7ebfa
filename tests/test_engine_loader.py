import numpy as np

from pcseg.engine.loader import EpochLoader, epoch_plan


def test_plan_is_a_function_of_seed_and_epoch():
    a = epoch_plan(10, 3, seed=1, epoch=2)
    assert a == epoch_plan(10, 3, seed=1, epoch=2)
    assert a != epoch_plan(10, 3, seed=1, epoch=3)
    assert [len(b.indices) for b in a] == [3, 3, 3, 1]
    assert sorted(i for b in a for i in b.indices) == list(range(10))
    assert len({b.seed for b in a}) == 4  # every batch augments from its own seed


def test_ranks_get_disjoint_equal_shares():
    plans = [epoch_plan(11, 2, seed=0, epoch=0, rank=r, world_size=3) for r in range(3)]
    shares = [[i for b in p for i in b.indices] for p in plans]
    assert [len(s) for s in shares] == [3, 3, 3]  # 11 // 3: equal step counts for DDP
    flat = sum(shares, [])
    assert len(set(flat)) == 9
    order = np.random.default_rng([0, 0]).permutation(11)
    assert flat == order[:9].tolist()


def make_batch(indices, rng):
    return {"indices": list(indices), "noise": float(rng.random())}


def test_resumed_epoch_replays_the_remaining_batches():
    loader = EpochLoader(9, make_batch, 2, seed=5)
    full = list(loader.batches(epoch=1))
    assert loader.steps_per_epoch() == len(full) == 5
    assert list(loader.batches(epoch=1, start=3)) == full[3:]


def test_workers_give_the_same_batches():
    plain = list(EpochLoader(6, make_batch, 2, seed=5).batches(0))
    workers = list(EpochLoader(6, make_batch, 2, seed=5, num_workers=2).batches(0))
    assert workers == plain


def test_pair_batches_share_a_labelled_class_and_replay_on_resume():
    from pcseg.data.sampler import PairSampler

    # scenes 0-2 label class 0, scenes 3-4 label class 1 only, scene 5 labels nothing
    classes = [{0}, {0, 2}, {0}, {1}, {1}, set()]
    loader = EpochLoader(6, make_batch, 4, seed=3, batch_sampler=PairSampler(classes, pairs_per_batch=2, seed=3))
    full = list(loader.batches(epoch=2))
    assert full == list(loader.batches(epoch=2))
    pairs = [(b["indices"][k], b["indices"][k + 1]) for b in full for k in range(0, len(b["indices"]), 2)]
    anchors = [a for a, _ in pairs]  # half of the scenes with a partner (0-4), rounded up, anchor once
    assert len(anchors) == len(set(anchors)) == 3 and set(anchors) <= {0, 1, 2, 3, 4}
    assert all(classes[a] & classes[b] and a != b for a, b in pairs)
    assert len(full) == 2 and list(loader.batches(epoch=2, start=1)) == full[1:]


def test_dsp_trains_on_pairs(tmp_path):
    from pcseg.config import load_config
    from pcseg.engine.build import build_setup

    cfg = load_config("synthetic_demo", ["method.name=dsp", "data.train_rooms=4", "data.val_rooms=1",
                                         "data.room_points=2000", "data.batch_size=2"])
    setup = build_setup(cfg)
    assert setup.train_loader.batch_sampler is not None
    assert all(len(p.indices) == 2 for p in setup.train_loader.plan(0))


def test_scene_lists_select_scenes_and_name_missing_ones():
    import pytest

    from pcseg.config import load_config
    from pcseg.engine.build import build_source

    cfg = load_config("synthetic_demo", ["data.train_rooms=3", "data.room_points=1000",
                                         "data.train_scenes=[room_0002,room_0000]"])
    assert build_source(cfg, "train").names() == ["room_0002", "room_0000"]
    bad = load_config("synthetic_demo", ["data.train_rooms=3", "data.train_scenes=[room_0007]"])
    with pytest.raises(ValueError, match="data.train_scenes.*room_0007"):
        build_source(bad, "train")


def test_preload_in_worker_processes_gives_the_rooms_load_gives():
    from pcseg.data.synthetic import SyntheticRoomSource
    from pcseg.engine.build import CachedSource
    parallel = CachedSource(SyntheticRoomSource(3, seed=5, num_points=500))
    parallel.preload(workers=2)
    direct = SyntheticRoomSource(3, seed=5, num_points=500)
    for name in direct.names():
        got, want = parallel.load(name), direct.load(name)
        assert got.keys() == want.keys()
        for key in ("coord", "color", "normal", "label", "instance"):
            np.testing.assert_array_equal(got[key], want[key])
