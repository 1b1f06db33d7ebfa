"""SceneDataset (weak labels + deterministic augmentation), collate_scenes, samplers."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from pcseg.data.collate import collate_scenes, feature_channels
from pcseg.data.contract import IGNORE
from pcseg.data.dataset import SceneDataset, resolve_protocol
from pcseg.data.sampler import PairSampler, ShardedSampler
from pcseg.data.transforms import Compose, RandomCrop, RandomJitter, RandomRotate
from pcseg.weak.protocol import Protocol, make_entry, make_protocol
from pcseg.weak.protocol_file import save_protocol
from scene_sources import ListSource


def hand_scene(name: str, seed: int, n: int = 100, classes: tuple[int, ...] = (0, 1, 2)) -> dict:
    rng = np.random.default_rng(seed)
    coord = rng.random((n, 3)).astype(np.float32)
    return {"name": name, "coord": coord, "color": rng.random((n, 3)).astype(np.float32),
            "normal": np.tile(np.array([0, 0, 1], np.float32), (n, 1)),
            "label": rng.choice(classes, n).astype(np.int64), "instance": rng.integers(-1, 4, n).astype(np.int64)}


def source_protocol(source: ListSource, spec: str, seed: int = 0) -> Protocol:
    return make_protocol(spec, [(n, source.load(n)) for n in source.names()], seed, "test")


def test_dataset_applies_protocol_and_keeps_dense_labels():
    source = ListSource([hand_scene(f"s{i}", i) for i in range(3)])
    protocol = source_protocol(source, "count:4")
    ds = SceneDataset(source, protocol=protocol)
    assert len(ds) == 3
    scene = ds[1]
    assert scene["name"] == "s1"
    np.testing.assert_array_equal(scene["label"], source.scenes["s1"]["label"])
    assert np.flatnonzero(scene["weak_label"] != IGNORE).tolist() == protocol.scenes["s1"].indices.tolist()
    full = SceneDataset(source)[1]
    np.testing.assert_array_equal(full["weak_label"], full["label"])


def test_dataset_rejects_a_protocol_missing_scenes():
    source = ListSource([hand_scene(f"s{i}", i) for i in range(3)])
    protocol = source_protocol(ListSource([hand_scene("s0", 0)]), "count:4")
    with pytest.raises(ValueError, match="no entry for 2 scene.*s1, s2"):
        SceneDataset(source, protocol=protocol)


def test_augmentation_depends_on_seed_epoch_index_only():
    source = ListSource([hand_scene(f"s{i}", i) for i in range(3)])
    transforms = Compose([RandomRotate(), RandomJitter(), RandomCrop(max_points=60)])
    ds = SceneDataset(source, source_protocol(source, "ratio:0.1"), transforms, seed=5)
    ds.set_epoch(2)
    a = ds[0]["coord"]
    ds.set_epoch(3)
    b = ds[0]["coord"]
    ds.set_epoch(2)
    np.testing.assert_array_equal(ds[0]["coord"], a)  # a resumed run sees the same data
    assert not np.array_equal(a, b)
    other = SceneDataset(source, source_protocol(source, "ratio:0.1"), transforms, seed=5)
    other.set_epoch(2)
    _ = other[2]  # order of access does not matter
    np.testing.assert_array_equal(other[0]["coord"], a)
    assert len(a) == 60


def test_collate_hand_example():
    s0 = {"name": "a", "coord": np.zeros((3, 3), np.float32) + [[0, 0, 1], [0, 0, 2], [0, 0, 4]],
          "color": np.full((3, 3), 0.5, np.float32), "normal": np.tile(np.float32([1, 0, 0]), (3, 1)),
          "label": np.array([0, 1, IGNORE]), "weak_label": np.array([0, IGNORE, IGNORE])}
    s1 = {"name": "b", "coord": np.ones((2, 3), np.float32), "color": np.zeros((2, 3), np.float32),
          "normal": np.tile(np.float32([0, 1, 0]), (2, 1)), "label": np.array([2, 2]), "weak_label": np.array([2, 2])}
    batch = collate_scenes([s0, s1], features=("color", "normal", "coord_z"))
    assert batch["offset"].tolist() == [3, 5]
    assert batch["batch"].tolist() == [0, 0, 0, 1, 1]
    assert batch["names"] == ["a", "b"]
    assert batch["feat"].shape == (5, 7) == (5, feature_channels(("color", "normal", "coord_z")))
    assert batch["feat"][:, 6].tolist() == [0, 1, 3, 0, 0]
    assert batch["feat"][0, :6].tolist() == [0.5, 0.5, 0.5, 1, 0, 0]
    assert batch["feat"][4, :6].tolist() == [0, 0, 0, 0, 1, 0]
    assert batch["label"].tolist() == [0, 1, IGNORE, 2, 2]
    assert batch["weak_label"].tolist() == [0, IGNORE, IGNORE, 2, 2]
    assert batch["coord"].dtype == torch.float32 and batch["label"].dtype == torch.int64
    assert batch["batch"].dtype == torch.int64 and batch["offset"].dtype == torch.int64
    assert "instance" not in batch and "pseudo_label" not in batch


def test_collate_missing_labels_are_ignore_and_missing_features_error():
    scene = {"name": "x", "coord": np.zeros((2, 3), np.float32), "color": np.zeros((2, 3), np.float32),
             "instance": np.array([4, -1])}
    batch = collate_scenes([scene])
    assert batch["label"].tolist() == [IGNORE, IGNORE] == batch["weak_label"].tolist()
    assert batch["instance"].tolist() == [4, -1]
    with pytest.raises(ValueError, match="x: input feature 'normal' requested but the scene has no 'normal'"):
        collate_scenes([scene], features=("color", "normal"))
    with pytest.raises(ValueError, match="unknown input feature.*'rgb'.*valid: color, normal"):
        collate_scenes([scene], features=("rgb",))


def test_dataloader_end_to_end_with_pair_sampler():
    scenes = [hand_scene("s0", 0, classes=(0, 1)), hand_scene("s1", 1, classes=(1, 2)),
              hand_scene("s2", 2, classes=(3,)), hand_scene("s3", 3, classes=(3, 4))]
    source = ListSource(scenes)
    ds = SceneDataset(source, source_protocol(source, "per-class:1"), features=("color", "normal"))
    sampler = PairSampler(ds.labelled_classes(), seed=0, world_size=1, rank=0)
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=ds.collate)
    batches = list(loader)
    assert len(batches) == 2  # half of the 4 scenes are anchors: 4 scenes per epoch, as without pairs
    for batch in batches:
        assert batch["offset"].tolist() == [100, 200] and batch["feat"].shape == (200, 6)
        first = set(batch["weak_label"][:100].tolist()) - {IGNORE}
        second = set(batch["weak_label"][100:].tolist()) - {IGNORE}
        assert first & second, batch["names"]


def test_pair_sampler_pairs_share_a_labelled_class():
    rng = np.random.default_rng(0)
    classes = [set(rng.choice(8, rng.integers(0, 3), replace=False).tolist()) for _ in range(30)]
    sampler = PairSampler(classes, pairs_per_batch=2, seed=3, rank=0, world_size=1)
    with_partner = [i for i, c in enumerate(classes) if any(c & d for j, d in enumerate(classes) if j != i)]
    anchors = []
    for batch in sampler:
        assert len(batch) in (2, 4)
        for a, b in zip(batch[::2], batch[1::2]):
            assert a != b and classes[a] & classes[b]
            anchors.append(a)
    half = -(-len(with_partner) // 2)  # an epoch holds as many scenes as the data: half are anchors
    assert len(anchors) == len(set(anchors)) == half and set(anchors) <= set(with_partner)
    assert len(sampler) == -(-half // 2)
    seen = set()
    for epoch in range(12):  # each epoch draws a fresh half
        sampler.set_epoch(epoch)
        seen |= {b for batch in sampler for b in batch[::2]}
    assert seen == set(with_partner)
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    same = PairSampler(classes, pairs_per_batch=2, seed=3, rank=0, world_size=1)
    same.set_epoch(1)
    assert list(same) == epoch1
    sampler.set_epoch(0)
    assert list(sampler) != epoch1


def test_pair_sampler_error_when_no_pair_exists():
    with pytest.raises(ValueError, match="none of the 3 scenes shares a labelled class"):
        PairSampler([{0}, {1}, set()], rank=0, world_size=1)
    with pytest.raises(ValueError, match="none of the 1 scenes"):
        PairSampler([set()], rank=0, world_size=1)


def test_pair_sampler_pairs_a_single_scene_with_itself():
    assert list(PairSampler([{2, 5}], pairs_per_batch=1, rank=0, world_size=1)) == [[0, 0]]


def test_pair_sampler_shards_anchors_across_ranks():
    classes = [{i % 3} for i in range(20)]
    anchors = []
    for rank in range(3):
        batches = list(PairSampler(classes, seed=1, rank=rank, world_size=3, even=False))
        anchors += [b[0] for b in batches]
    assert len(anchors) == len(set(anchors)) == 4 + 4 + 3  # half of each rank's 7, 7, 6, rounded up


@pytest.mark.parametrize("n, world", [(10, 3), (7, 7), (5, 8), (12, 4)])
def test_sharded_sampler_partitions_exactly(n, world):
    shards = [list(ShardedSampler(n, shuffle=True, seed=2, rank=r, world_size=world)) for r in range(world)]
    flat = [i for s in shards for i in s]
    assert sorted(flat) == list(range(n))  # disjoint, union is everything, no padding
    assert [len(ShardedSampler(n, seed=2, rank=r, world_size=world)) for r in range(world)] == [len(s) for s in shards]
    even = [list(ShardedSampler(n, seed=2, rank=r, world_size=world, even=True)) for r in range(world)]
    assert len({len(s) for s in even}) == 1 and len(set(sum(even, []))) == n - n % world


def test_sharded_sampler_epochs_and_order():
    sampler = ShardedSampler(50, seed=0, rank=0, world_size=1)
    e0 = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != e0 and sorted(list(sampler)) == list(range(50))
    sampler.set_epoch(0)
    assert list(sampler) == e0
    assert list(ShardedSampler(5, shuffle=False, rank=1, world_size=2)) == [1, 3]
    with pytest.raises(ValueError, match="rank 2 is outside 0..1"):
        ShardedSampler(5, rank=2, world_size=2)


def test_labelled_classes_with_and_without_protocol():
    scenes = [hand_scene("s0", 0, classes=(0, 1)), hand_scene("s1", 1, classes=(2,))]
    source = ListSource(scenes)
    protocol = Protocol(spec="test", seed=0, source="test", scenes={
        "s0": make_entry(np.array([0]), scenes[0]["label"]), "s1": make_entry(np.array([], np.int64), scenes[1]["label"])})
    assert SceneDataset(source, protocol).labelled_classes() == [{int(scenes[0]["label"][0])}, set()]
    assert SceneDataset(source).labelled_classes() == [{0, 1}, {2}]


def test_real_synthetic_rooms_if_available():
    synthetic = pytest.importorskip("pcseg.data.synthetic")
    source = synthetic.SyntheticRoomSource(2, 0, num_points=3000)
    protocol = source_protocol(source, "ratio:0.01")
    ds = SceneDataset(source, protocol)
    batch = collate_scenes([ds[0], ds[1]])
    assert batch["offset"].tolist() == [3000, 6000]
    for s in range(2):
        valid = int((batch["label"][s * 3000:(s + 1) * 3000] != IGNORE).sum())
        labelled = int((batch["weak_label"][s * 3000:(s + 1) * 3000] != IGNORE).sum())
        assert labelled == max(1, int(np.floor(0.01 * valid + 0.5)))


def test_resolve_protocol_from_spec_file_or_none(tmp_path):
    source = ListSource([hand_scene(f"s{i}", i) for i in range(3)])
    assert resolve_protocol(None, source, 0) is None
    from_spec = resolve_protocol("count:3", source, 4)
    expected = source_protocol(source, "count:3", seed=4)
    for name in source.names():
        np.testing.assert_array_equal(from_spec.scenes[name].indices, expected.scenes[name].indices)
    path = save_protocol(expected, tmp_path / "p.npz")
    from_file = resolve_protocol(str(path), source, 999)
    assert from_file.path == str(path) and from_file.seed == 4
    with pytest.raises(FileNotFoundError, match="nope.npz does not exist"):
        resolve_protocol(str(tmp_path / "nope.npz"), source, 0)
    with pytest.raises(ValueError, match="valid forms"):
        resolve_protocol("ratio-0.01", source, 0)


def test_sharded_sampler_reads_rank_and_world_from_torch_distributed(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        sampler = ShardedSampler(6, seed=0)
        assert (sampler.rank, sampler.world_size) == (0, 1)
        assert sorted(sampler) == list(range(6))
    finally:
        dist.destroy_process_group()
    assert (ShardedSampler(6, rank=1, world_size=2).rank, ShardedSampler(6).world_size) == (1, 1)
