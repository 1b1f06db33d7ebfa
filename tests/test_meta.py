import numpy as np
import pytest

from pcseg.data.meta import available_datasets, load_dataset_meta


def test_shipped_datasets():
    assert {"s3dis", "scannet", "synthetic_rooms"} <= set(available_datasets())


def test_s3dis_classes_standard_order():
    meta = load_dataset_meta("s3dis")
    assert meta.class_names[:3] == ("ceiling", "floor", "wall") and meta.class_names[-1] == "clutter"
    assert meta.num_classes == 13 and meta.colors.shape == (13, 3) and meta.colors.dtype == np.uint8


def test_scannet_raw_map():
    meta = load_dataset_meta("scannet")
    table = meta.raw_to_label(40)
    assert meta.num_classes == 20
    assert table[1] == 0 and table[39] == 19 and table[14] == meta.class_names.index("desk")
    assert table[0] == -1 and table[13] == -1 and table[40] == -1  # not benchmark classes


def test_user_yaml(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("classes:\n  - {name: ground, color: [1, 2, 3]}\n  - {name: tree, color: [4, 5, 6]}\n")
    meta = load_dataset_meta(str(path))
    assert meta.class_names == ("ground", "tree") and meta.raw_ids is None


def test_unknown_dataset_lists_known():
    with pytest.raises(FileNotFoundError, match="s3dis"):
        load_dataset_meta("nope")
