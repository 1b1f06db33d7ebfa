"""Weak-label protocols: spec parsing, sampling rules, the protocol file, official imports, CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pcseg.data import contract
from pcseg.weak.protocol import (IGNORE, apply_protocol, labels_checksum, make_protocol, parse_spec,
                                 sample_indices, scene_generator)
from pcseg.weak.protocol_file import load_protocol, save_protocol
from pcseg.weak.protocol_import import import_official, read_official_points
from scene_sources import ListSource


def hand_scene(name: str, seed: int, n: int = 200, num_classes: int = 4) -> dict:
    """Random labels with some IGNORE points and instances (-1 on a few points)."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, num_classes, n).astype(np.int64)
    label[rng.random(n) < 0.2] = IGNORE
    instance = rng.integers(-1, 6, n).astype(np.int64)
    coord = rng.random((n, 3)).astype(np.float32)
    return {"name": name, "coord": coord, "color": coord.copy(), "label": label, "instance": instance}


def items(scenes: list[dict]) -> list[tuple[str, dict]]:
    return [(s["name"], s) for s in scenes]


def test_ignore_matches_the_data_contract():
    assert IGNORE == contract.IGNORE


@pytest.mark.parametrize("spec, kind, value, text", [
    ("ratio:0.01", "ratio", 0.01, "ratio:0.01"), ("ratio:0.001", "ratio", 0.001, "ratio:0.001"),
    ("count:20", "count", 20, "count:20"), ("per-class:1", "per-class", 1, "per-class:1"),
    (" clicks:3 ", "clicks", 3, "clicks:3"), ("ratio:1", "ratio", 1.0, "ratio:1"),
])
def test_parse_spec(spec, kind, value, text):
    parsed = parse_spec(spec)
    assert (parsed.kind, parsed.value, str(parsed)) == (kind, value, text)


@pytest.mark.parametrize("spec", ["ratio:0", "ratio:1.5", "ratio:abc", "count:0", "count:2.5", "per-class:",
                                  "clicks", "percent:1", ""])
def test_parse_spec_errors_list_valid_forms(spec):
    with pytest.raises(ValueError, match=r"valid forms: ratio:<0\.\.1>.*count:<int>.*per-class:<int>.*clicks:<int>"):
        parse_spec(spec)


@pytest.mark.parametrize("num_valid, ratio, expected", [
    (1000, 0.01, 10), (750, 0.01, 8), (749, 0.01, 7), (750, 0.001, 1), (100, 0.001, 1), (3, 1.0, 3), (0, 0.01, 0),
])
def test_ratio_count_rounds_half_up_at_least_one(num_valid, ratio, expected):
    label = np.full(num_valid + 50, IGNORE, dtype=np.int64)
    label[50:] = 1
    idx = sample_indices(parse_spec(f"ratio:{ratio}"), label, np.random.default_rng(0))
    assert len(idx) == expected
    assert np.all(label[idx] != IGNORE)
    assert np.all(np.diff(idx) > 0)


def test_ratio_one_percent_on_every_scene():
    scenes = [hand_scene(f"s{i}", i, n=3000) for i in range(5)]
    protocol = make_protocol("ratio:0.01", items(scenes), seed=1, source="test")
    for s in scenes:
        valid = int((s["label"] != IGNORE).sum())
        idx = protocol.scenes[s["name"]].indices
        assert len(idx) == int(np.floor(0.01 * valid + 0.5))
        assert np.all(s["label"][idx] != IGNORE)
        np.testing.assert_array_equal(protocol.scenes[s["name"]].labels, s["label"][idx])


def test_count_caps_at_valid_points():
    label = np.array([IGNORE, 0, 1, IGNORE, 2], dtype=np.int64)
    idx = sample_indices(parse_spec("count:20"), label, np.random.default_rng(0))
    assert idx.tolist() == [1, 2, 4]
    label = np.arange(100, dtype=np.int64) % 3
    assert len(sample_indices(parse_spec("count:20"), label, np.random.default_rng(0))) == 20


@pytest.mark.parametrize("per", [1, 3])
def test_per_class_picks_per_present_class(per):
    scene = hand_scene("a", 3, n=300)
    scene["label"][scene["label"] == 2] = IGNORE  # class 2 absent
    scene["label"][:2] = 3  # class 3 may be small: make sure it exists
    idx = sample_indices(parse_spec(f"per-class:{per}"), scene["label"], np.random.default_rng(0))
    counts: dict[int, int] = {}
    for i in idx:
        counts[int(scene["label"][i])] = counts.get(int(scene["label"][i]), 0) + 1
    present = {int(c) for c in scene["label"] if c != IGNORE}
    assert set(counts) == present == {0, 1, 3}
    for c in present:
        assert counts[c] == min(per, int((scene["label"] == c).sum()))


def test_per_class_takes_all_of_a_small_class():
    label = np.array([0, 0, 0, 1, IGNORE, 0], dtype=np.int64)
    idx = sample_indices(parse_spec("per-class:2"), label, np.random.default_rng(5))
    assert 3 in idx.tolist() and len(idx) == 3 and np.all(label[idx] != IGNORE)


def test_clicks_one_per_instance_with_a_valid_label():
    label = np.array([0, 0, 1, 1, 1, IGNORE, 2, 2], dtype=np.int64)
    instance = np.array([5, 5, 7, 7, -1, 9, -1, 8], dtype=np.int64)
    for seed in range(10):
        idx = sample_indices(parse_spec("clicks:1"), label, np.random.default_rng(seed), instance)
        # instance 9 has only an IGNORE point; -1 is "no instance"
        assert sorted(instance[idx].tolist()) == [5, 7, 8]
        assert np.all(label[idx] != IGNORE)


def test_clicks_needs_instances():
    with pytest.raises(ValueError, match="room_7.*needs per-point 'instance'"):
        sample_indices(parse_spec("clicks:1"), np.zeros(4, np.int64), np.random.default_rng(0), name="room_7")


def test_scene_generator_depends_on_seed_and_name_only():
    a = scene_generator(3, "scene0000_00").integers(1 << 30, size=4)
    assert np.array_equal(a, scene_generator(3, "scene0000_00").integers(1 << 30, size=4))
    assert not np.array_equal(a, scene_generator(4, "scene0000_00").integers(1 << 30, size=4))
    assert not np.array_equal(a, scene_generator(3, "scene0000_01").integers(1 << 30, size=4))


def test_adding_a_scene_keeps_the_others():
    scenes = [hand_scene(f"s{i}", i) for i in range(4)]
    small = make_protocol("count:7", items(scenes[:2]), seed=9, source="test")
    large = make_protocol("count:7", items(scenes), seed=9, source="test")
    for name in ("s0", "s1"):
        np.testing.assert_array_equal(small.scenes[name].indices, large.scenes[name].indices)


def test_same_seed_same_file_bytes(tmp_path):
    scenes = [hand_scene(f"s{i}", i) for i in range(3)]
    paths = []
    for k, seed in enumerate((4, 4, 5)):
        protocol = make_protocol("ratio:0.1", items(scenes), seed=seed, source="test")
        paths.append(save_protocol(protocol, tmp_path / f"p{k}.npz"))
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()


def test_file_round_trip_and_plain_numpy_reading(tmp_path):
    scenes = [hand_scene(f"s{i}", i) for i in range(3)]
    protocol = make_protocol("per-class:2", items(scenes), seed=0, source="store.h5#train", dataset="s3dis")
    path = save_protocol(protocol, tmp_path / "p.npz")
    back = load_protocol(path)
    assert (back.spec, back.seed, back.source, back.dataset) == ("per-class:2", 0, "store.h5#train", "s3dis")
    assert list(back.scenes) == ["s0", "s1", "s2"]
    for name, entry in protocol.scenes.items():
        np.testing.assert_array_equal(back.scenes[name].indices, entry.indices)
        np.testing.assert_array_equal(back.scenes[name].labels, entry.labels)
        assert back.scenes[name].checksum == entry.checksum
    # documented plain-numpy reading, no pcseg involved
    z = np.load(path, allow_pickle=False)
    meta = json.loads(str(z["meta"]))
    s = [m["name"] for m in meta["scenes"]].index("s1")
    idx = z["indices"][z["offsets"][s]:z["offsets"][s + 1]]
    np.testing.assert_array_equal(idx, protocol.scenes["s1"].indices)
    import hashlib
    expected = hashlib.sha256(scenes[1]["label"].astype("<i8").tobytes()).hexdigest()
    assert meta["scenes"][s]["label_sha256"] == expected == labels_checksum(scenes[1]["label"].astype(np.int16))


def test_load_rejects_other_files(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros(3))
    with pytest.raises(ValueError, match="bad.npz: not a pcseg weak-label protocol file"):
        load_protocol(bad)
    with pytest.raises(FileNotFoundError, match="missing.npz does not exist"):
        load_protocol(tmp_path / "missing.npz")


def test_apply_protocol_sets_weak_labels_and_keeps_input():
    scene = hand_scene("s0", 0, n=50)
    before = {k: v.copy() for k, v in scene.items() if isinstance(v, np.ndarray)}
    protocol = make_protocol("count:6", items([scene]), seed=2, source="test")
    out = apply_protocol(scene, protocol)
    idx = protocol.scenes["s0"].indices
    expected = np.full(50, IGNORE)
    for i in idx:
        expected[i] = scene["label"][i]
    np.testing.assert_array_equal(out["weak_label"], expected)
    assert int((out["weak_label"] != IGNORE).sum()) == 6
    np.testing.assert_array_equal(out["label"], before["label"])
    for k, v in before.items():
        np.testing.assert_array_equal(scene[k], v)
    assert "weak_label" not in scene


def test_changed_labels_fail_loudly_naming_the_scene(tmp_path):
    scenes = [hand_scene(f"room_{i}", i) for i in range(2)]
    protocol = load_protocol(save_protocol(make_protocol("count:5", items(scenes), 0, "test"), tmp_path / "p.npz"))
    changed = dict(scenes[1])
    changed["label"] = scenes[1]["label"].copy()
    changed["label"][3] = (changed["label"][3] + 1) % 4
    apply_protocol(scenes[0], protocol)
    with pytest.raises(ValueError, match=r"scene 'room_1': its labels changed since protocol file .*p\.npz"):
        apply_protocol(changed, protocol)
    shorter = {**scenes[1], "label": scenes[1]["label"][:-1]}
    with pytest.raises(ValueError, match="room_1.*199 points now, 200 then"):
        apply_protocol(shorter, protocol)
    with pytest.raises(KeyError, match="scene 'room_9' is not in protocol file"):
        apply_protocol({**scenes[0], "name": "room_9"}, protocol)


@pytest.mark.parametrize("as_numpy", [False, True])
def test_import_official_points_file(tmp_path, as_numpy):
    scenes = [hand_scene("scene0000_00", 0, n=100), hand_scene("scene0001_00", 1, n=80)]
    official = {"scene0000_00": [3, 17, 42], "scene0001_00": [0, 79], "scene0999_00": [1]}
    saved = {k: (np.array(v, dtype=np.int64) if as_numpy else torch.tensor(v)) for k, v in official.items()}
    torch.save(saved, tmp_path / "points20")
    assert {k: v.tolist() for k, v in read_official_points(tmp_path / "points20").items()} == official
    protocol = import_official(tmp_path / "points20", items(scenes), source="store.h5#train")
    assert protocol.spec == "import:points20" and protocol.seed is None
    assert list(protocol.scenes) == ["scene0000_00", "scene0001_00"]
    assert protocol.scenes["scene0000_00"].indices.tolist() == [3, 17, 42]
    out = apply_protocol(scenes[1], protocol)
    assert np.flatnonzero(out["weak_label"] != IGNORE).tolist() == \
        [i for i in (0, 79) if scenes[1]["label"][i] != IGNORE]


def test_import_official_points_errors(tmp_path):
    scenes = [hand_scene("scene0000_00", 0, n=100)]
    torch.save({"scene0000_00": torch.tensor([5, 100])}, tmp_path / "points50")
    with pytest.raises(ValueError, match="points50: scene 'scene0000_00' index 100 is outside its 100 points"):
        import_official(tmp_path / "points50", items(scenes), source="x")
    torch.save({"scene0042_00": torch.tensor([1])}, tmp_path / "points100")
    with pytest.raises(ValueError, match="points100: has no indices for scene 'scene0000_00'"):
        import_official(tmp_path / "points100", items(scenes), source="x")
    torch.save({"scene0000_00": torch.tensor([0.5])}, tmp_path / "points200")
    with pytest.raises(ValueError, match="expected a 1-D array of integer point indices"):
        read_official_points(tmp_path / "points200")


def test_import_official_scene_list(tmp_path):
    scenes = [hand_scene(f"scene000{i}_00", i, n=60) for i in range(3)]
    (tmp_path / "scenes").mkdir()
    (tmp_path / "scenes" / "1.txt").write_text("scene0001_00\n\n")
    protocol = import_official(tmp_path / "scenes" / "1.txt", items(scenes), source="x")
    assert protocol.spec == "import:scenes/1"
    full = apply_protocol(scenes[1], protocol)
    np.testing.assert_array_equal(full["weak_label"], scenes[1]["label"])
    assert np.all(apply_protocol(scenes[0], protocol)["weak_label"] == IGNORE)
    (tmp_path / "scenes" / "5.txt").write_text("scene0001_00\nscene0777_00\n")
    with pytest.raises(ValueError, match="5.txt: lists 1 scene.*scene0777_00"):
        import_official(tmp_path / "scenes" / "5.txt", items(scenes), source="x")


def _tiny_store(path, scenes, dataset="s3dis"):
    from pcseg.data.meta import load_dataset_meta
    from pcseg.data.store import open_for_writing, write_scene

    store = open_for_writing(path, dataset, list(load_dataset_meta(dataset).class_names), "test")
    for s in scenes:
        write_scene(store, s["name"], s, "train", "none")
    store.close()


def test_cli_make_show_import(tmp_path, capsys):
    pytest.importorskip("h5py")
    from pcseg.cli import main

    scenes = [hand_scene(f"scene000{i}_00", i, n=120) for i in range(3)]
    _tiny_store(tmp_path / "store.h5", scenes)
    out = tmp_path / "p.npz"
    assert main(["weak-labels", "make", str(tmp_path / "store.h5"), "count:5", "--seed", "3", "--out", str(out)]) == 0
    protocol = load_protocol(out)
    assert protocol.spec == "count:5" and protocol.seed == 3 and protocol.dataset == "s3dis"
    for s in scenes:
        assert len(protocol.scenes[s["name"]].indices) == 5
        apply_protocol(s, protocol)  # the store keeps labels exactly: checksums agree
    capsys.readouterr()
    assert main(["weak-labels", "show", str(out)]) == 0
    text = capsys.readouterr().out
    assert "scene0001_00" in text and "total" in text and "ceiling" in text  # s3dis class 0
    lines = {line.split()[0]: line.split() for line in text.splitlines() if line.strip()}
    assert lines["scene0001_00"][1:3] == ["120", "5"]
    assert lines["total"][1:3] == ["360", "15"]
    labelled = np.concatenate([s["label"][protocol.scenes[s["name"]].indices] for s in scenes])
    assert lines["ceiling"][1] == str(int((labelled == 0).sum()))
    assert main(["weak-labels", "show", str(out), "--dataset", "scannet"]) == 0
    assert "wall" in capsys.readouterr().out  # scannet class 0
    assert main(["weak-labels", "show", str(out), "--dataset", "nosuch"]) == 2
    assert "unknown dataset 'nosuch'" in capsys.readouterr().err
    assert main(["weak-labels", "make", str(tmp_path / "store.h5"), "ratio:7", "--out", str(out)]) == 2
    assert "valid forms" in capsys.readouterr().err
    torch.save({s["name"]: torch.tensor([0, 1]) for s in scenes}, tmp_path / "points20")
    assert main(["weak-labels", "import", str(tmp_path / "points20"), str(tmp_path / "store.h5"),
                 "--out", str(tmp_path / "i.npz")]) == 0
    assert load_protocol(tmp_path / "i.npz").scenes["scene0002_00"].indices.tolist() == [0, 1]


def test_real_scannet_labels_per_class(shared_data):
    from pcseg.data.meta import load_dataset_meta

    raw = np.load(shared_data / "scannet" / "scene0000_00_sem_label_all.npy").astype(np.int64)
    label = load_dataset_meta("scannet").raw_to_label(int(raw.max()))[raw]
    scene = {"name": "scene0000_00", "label": label}
    protocol = make_protocol("per-class:1", [("scene0000_00", scene)], seed=0, source="real")
    idx = protocol.scenes["scene0000_00"].indices
    present = sorted(set(np.unique(label).tolist()) - {IGNORE})
    assert sorted(label[idx].tolist()) == present
    ratio = make_protocol("ratio:0.01", [("scene0000_00", scene)], seed=0, source="real")
    assert len(ratio.scenes["scene0000_00"].indices) == int(np.floor(0.01 * (label != IGNORE).sum() + 0.5))


def test_real_scannet_official_import_through_a_store(shared_data, tmp_path):
    from pcseg.cli import main
    from pcseg.data.meta import load_dataset_meta

    root = shared_data / "scannet"
    vert = np.load(root / "scene0000_00_vert_all.npy")
    raw = np.load(root / "scene0000_00_sem_label_all.npy").astype(np.int64)
    label = load_dataset_meta("scannet").raw_to_label(int(raw.max()))[raw]
    scene = {"name": "scene0000_00", "coord": vert[:, :3], "color": vert[:, 3:6] / 255.0, "label": label}
    _tiny_store(tmp_path / "scannet.h5", [scene], "scannet")
    official = torch.from_numpy(np.random.default_rng(0).choice(len(label), 20, replace=False))
    torch.save({"scene0000_00": official, "scene0707_00": torch.arange(20)}, tmp_path / "points20")
    assert main(["weak-labels", "import", str(tmp_path / "points20"), str(tmp_path / "scannet.h5"),
                 "--out", str(tmp_path / "la20.npz")]) == 0
    out = apply_protocol(scene, load_protocol(tmp_path / "la20.npz"))
    expected = np.full(len(label), IGNORE)
    expected[official.numpy()] = label[official.numpy()]
    np.testing.assert_array_equal(out["weak_label"], expected)
