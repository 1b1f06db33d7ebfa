import numpy as np
import pytest

from pcseg.data.meta import load_dataset_meta
from pcseg.viz.colors import (CORRECT_GREY, UNLABELLED_GREY, WRONG_RED, colorize, dataset_palette,
                              error_colors, legend_entries, legend_text)


def test_colorize_uint8_palette_and_ignore():
    palette = np.array([[255, 0, 0], [0, 0, 255], [0, 51, 0]], dtype=np.uint8)
    out = colorize(np.array([2, -1, 0, 1, 2]), palette)
    assert out.dtype == np.float32 and out.shape == (5, 3)
    expected = np.array([[0, 0.2, 0], UNLABELLED_GREY, [1, 0, 0], [0, 0, 1], [0, 0.2, 0]], np.float32)
    np.testing.assert_allclose(out, expected, atol=1e-7)


def test_colorize_float_palette_and_does_not_modify_input():
    labels = np.array([1, 0, -1])
    before = labels.copy()
    out = colorize(labels, np.array([[0.1, 0.2, 0.3], [0.5, 0.5, 0.5]]))
    np.testing.assert_allclose(out[:2], [[0.5, 0.5, 0.5], [0.1, 0.2, 0.3]], atol=1e-7)
    np.testing.assert_array_equal(labels, before)


@pytest.mark.parametrize("bad", [3, -2])
def test_colorize_rejects_labels_without_colour(bad):
    with pytest.raises(ValueError, match=rf"label {bad} at point 1 .* 3 classes"):
        colorize(np.array([0, bad]), np.zeros((3, 3), np.uint8))


def test_error_colors():
    pred = np.array([0, 1, 2, 2])
    label = np.array([0, 2, -1, 2])
    out = error_colors(pred, label)
    np.testing.assert_array_equal(out, np.stack([CORRECT_GREY, WRONG_RED, UNLABELLED_GREY, CORRECT_GREY]))
    with pytest.raises(ValueError, match="shape"):
        error_colors(pred, label[:3])


def test_dataset_palette_comes_from_yaml():
    meta = load_dataset_meta("s3dis")
    palette, names = dataset_palette("s3dis")
    np.testing.assert_array_equal(palette, meta.colors)
    assert names == meta.class_names
    palette[0] = 7  # a copy: the cached metadata stays intact
    assert not np.array_equal(load_dataset_meta("s3dis").colors[0], palette[0])


def test_legend_entries_only_classes_shown():
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    entries = legend_entries(palette, ["a", "b", "c"], np.array([2, -1, 0, 2]))
    assert [(i, n) for i, n, _ in entries] == [(0, "a"), (2, "c")]
    np.testing.assert_array_equal(entries[1][2], [0, 0, 1])
    assert legend_text(palette, ["a", "b", "c"], np.array([1])) == "  1 b                rgb(0, 255, 0)"
    with pytest.raises(ValueError, match="2 class names for a palette of 3"):
        legend_entries(palette, ["a", "b"])
