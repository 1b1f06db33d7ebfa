import warnings

import numpy as np
import pytest

from pcseg.data.readers.s3dis import (
    annotation_files, class_lookup, cross_validation_folds, find_rooms, held_out_area, load_room,
)
from pcseg.data.readers.text import MalformedFileError, parse_numeric_text, tokens_per_line
from raw_fixtures import s3dis_defect_room, s3dis_lines, s3dis_random_room, write_s3dis_room


def test_defect_room_loads_exactly(tmp_path):
    expected = s3dis_defect_room(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scene = load_room(tmp_path / "Area_5" / "hallway_6")
    messages = [str(w.message) for w in caught]
    assert any("wall_3 (1).txt" in m and "byte-identical duplicate of wall_3.txt" in m for m in messages)
    assert any("ceiling_1.txt" in m and "1 stray byte" in m for m in messages)
    assert scene["name"] == "Area_5_hallway_6"
    assert scene["coord"].dtype == np.float32 and scene["color"].dtype == np.float32
    np.testing.assert_array_equal(scene["coord"], expected["coord"].astype(np.float32))
    np.testing.assert_allclose(scene["color"], expected["color"] / 255.0, rtol=0, atol=1e-7)
    assert scene["label"].tolist() == expected["label"].tolist()
    assert scene["instance"].tolist() == expected["instance"].tolist()
    assert scene["label"].dtype == np.int64 and scene["instance"].dtype == np.int64


def test_stairs_alias_is_clutter():
    lookup = class_lookup()
    assert lookup["stairs"] == lookup["clutter"] == 12 and lookup["ceiling"] == 0 and len(lookup) == 14


def test_bad_line_names_file_line_and_content(tmp_path):
    good = s3dis_lines(np.array([[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6]]))
    room = write_s3dis_room(tmp_path, 2, "office_2", {"table_1.txt": good + b"1.0 2.0 3.0 4 5\n" + good})
    with pytest.raises(MalformedFileError) as err:
        load_room(room)
    message = str(err.value)
    assert f"{room / 'Annotations' / 'table_1.txt'}:3:" in message and "'1.0 2.0 3.0 4 5'" in message


def test_column_counts_that_sum_right_still_fail(tmp_path):
    # 7 + 5 numbers = two lines' worth: only a per-line count catches it
    room = write_s3dis_room(tmp_path, 1, "office_1", {"wall_1.txt": b"1 2 3 4 5 6 7\n1 2 3 4 5\n"})
    with pytest.raises(MalformedFileError, match=r"wall_1.txt:1: expected 6 numbers, got '1 2 3 4 5 6 7'"):
        load_room(room)


def test_non_numeric_token_fails_with_line(tmp_path):
    room = write_s3dis_room(tmp_path, 1, "office_1", {"wall_1.txt": b"1 2 3 4 5 6\n1 2 3 4 x5 6\n"})
    with pytest.raises(MalformedFileError, match=r"wall_1.txt:2: expected 6 numbers, got '1 2 3 4 x5 6'"):
        load_room(room)


def test_point_identical_copy_is_skipped_and_different_copy_fails(tmp_path):
    wall = np.array([[1, 2, 3, 4, 5, 6]])
    room = write_s3dis_room(tmp_path, 1, "office_1", {"wall_1.txt": s3dis_lines(wall),
                                                      "wall_1 (1).txt": b"1.0 2.0 3.0 4 5 6\n"})
    with pytest.warns(UserWarning, match="point-identical duplicate"):
        assert [f.name for f in annotation_files(room)] == ["wall_1.txt"]
    other = write_s3dis_room(tmp_path, 1, "office_2", {"wall_1.txt": s3dis_lines(wall),
                                                       "wall_1 (1).txt": b"9 2 3 4 5 6\n"})
    with pytest.raises(ValueError, match="holds different points"):
        annotation_files(other)


def test_unknown_class_file_fails(tmp_path):
    room = write_s3dis_room(tmp_path, 1, "office_1", {"lamp_1.txt": b"1 2 3 4 5 6\n"})
    with pytest.raises(ValueError, match=r"lamp_1.txt: annotation file name must be <class>_<k>.txt"):
        load_room(room)


def test_random_rooms_match_python_parse(tmp_path):
    rng = np.random.default_rng(0)
    expected = s3dis_random_room(tmp_path, 3, "lounge_1", rng, objects=5, lines=40)
    scene = load_room(tmp_path / "Area_3" / "lounge_1")
    np.testing.assert_array_equal(scene["coord"], expected[:, :3].astype(np.float32))
    np.testing.assert_array_equal(np.rint(scene["color"] * 255), expected[:, 3:])
    assert np.bincount(scene["instance"]).tolist() == [40] * 5
    assert [r.name for r in find_rooms(tmp_path)] == ["lounge_1"]


def test_tokens_per_line_matches_split():
    rng = np.random.default_rng(1)
    lines = [" ".join("7" for _ in range(rng.integers(0, 9))) + (" " * int(rng.integers(0, 3))) for _ in range(200)]
    data = "\n".join(lines).encode()
    assert tokens_per_line(data).tolist() == [len(line.split()) for line in lines]
    assert tokens_per_line(b"1 2\n3\n").tolist() == [2, 1]


def test_parse_numeric_text_values():
    assert parse_numeric_text(b"1 2\n\n-3.5 4e1\n", 2, "x").tolist() == [[1.0, 2.0], [-3.5, 40.0]]


def test_splits():
    assert held_out_area() == 5
    folds = cross_validation_folds()
    assert len(folds) == 6 and folds[4] == (["Area_1", "Area_2", "Area_3", "Area_4", "Area_6"], "Area_5")
    assert all(test not in train and len(train) == 5 for train, test in folds)
