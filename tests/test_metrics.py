"""pcseg.metrics: hand-computed matrices, the absent-class rule, scikit-learn as a reference."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pcseg.data.contract import IGNORE
from pcseg.metrics import ConfusionMatrix, compute_metrics, format_table

NAMES = ["floor", "wall", "chair"]

#               pred: floor wall chair
HAND_MATRIX = [[3, 1, 0],  # gt floor
               [0, 2, 2],  # gt wall
               [1, 0, 1]]  # gt chair


def _pairs_from_matrix(matrix):
    """(pred, target) lists that produce `matrix`, in a shuffled but fixed order."""
    pred, target = [], []
    for t, row in enumerate(matrix):
        for p, count in enumerate(row):
            pred += [p] * count
            target += [t] * count
    order = np.random.default_rng(0).permutation(len(pred))
    return np.asarray(pred)[order], np.asarray(target)[order]


def test_update_builds_the_matrix_and_skips_ignore():
    pred, target = _pairs_from_matrix(HAND_MATRIX)
    # Ignored targets with any prediction (even an out-of-range one) are not counted.
    pred = np.concatenate([pred, [2, 0, 7]])
    target = np.concatenate([target, [IGNORE, IGNORE, IGNORE]])
    cm = ConfusionMatrix(3)
    cm.update(torch.from_numpy(pred[:5]), torch.from_numpy(target[:5]))  # torch ...
    cm.update(pred[5:].reshape(-1, 1), target[5:].reshape(-1, 1))  # ... numpy, any shape
    cm.update(np.zeros(0, dtype=np.int64), torch.zeros(0, dtype=torch.int64))  # empty batch
    assert cm.matrix.dtype == torch.int64
    assert cm.matrix.tolist() == HAND_MATRIX
    cm.reset()
    assert cm.matrix.tolist() == [[0] * 3] * 3


def test_hand_computed_metrics():
    m = compute_metrics(torch.tensor(HAND_MATRIX), NAMES)
    # IoU = tp / (gt + pred - tp): floor 3/(4+4-3), wall 2/(4+3-2), chair 1/(2+3-1)
    assert m["iou"] == pytest.approx({"floor": 0.6, "wall": 0.4, "chair": 0.25})
    assert m["acc"] == pytest.approx({"floor": 0.75, "wall": 0.5, "chair": 0.5})
    assert m["miou"] == pytest.approx(1.25 / 3)
    assert m["macc"] == pytest.approx(1.75 / 3)
    assert m["oa"] == pytest.approx(0.6)
    assert m["num_points"] == {"floor": 4, "wall": 4, "chair": 2}
    assert m["num_predicted"] == {"floor": 4, "wall": 3, "chair": 3}
    assert m["total_points"] == 10 and m["present"] == NAMES and m["absent"] == []
    assert json.loads(json.dumps(m)) == m  # metrics.json takes it as is


def test_class_absent_from_ground_truth_is_excluded_not_zero():
    # wall has no ground-truth point but is predicted once (a floor point).
    matrix = np.array([[2, 1, 0], [0, 0, 0], [1, 0, 3]])
    m = compute_metrics(matrix, NAMES)
    assert m["iou"]["wall"] is None and m["acc"]["wall"] is None
    assert m["absent"] == ["wall"] and m["present"] == ["floor", "chair"]
    # floor: tp 2, gt 3 (its point predicted as wall still counts), pred 3 -> 2/4
    assert m["iou"]["floor"] == pytest.approx(0.5)
    assert m["iou"]["chair"] == pytest.approx(0.75)
    assert m["miou"] == pytest.approx(0.625)  # mean over the 2 present classes, not 3
    assert m["macc"] == pytest.approx((2 / 3 + 3 / 4) / 2)
    assert m["oa"] == pytest.approx(5 / 7)


def test_present_class_never_predicted_counts_as_zero():
    m = compute_metrics(np.array([[2, 0], [3, 0]]), ["a", "b"])
    assert m["iou"] == {"a": pytest.approx(0.4), "b": 0.0}
    assert m["miou"] == pytest.approx(0.2)


def test_empty_matrix_has_no_means():
    m = compute_metrics(np.zeros((2, 2), dtype=np.int64), ["a", "b"])
    assert m["miou"] is None and m["oa"] is None and m["macc"] is None
    assert m["absent"] == ["a", "b"] and m["iou"] == {"a": None, "b": None}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_scikit_learn(seed):
    metrics_sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    k = 6
    target = rng.integers(0, k, size=500)
    target[target == 4] = 5  # class 4 absent from the ground truth ...
    pred = np.where(rng.random(500) < 0.6, target, rng.integers(0, k, size=500))  # ... yet predicted
    target_with_ignore = np.where(rng.random(500) < 0.1, IGNORE, target)
    kept = target_with_ignore != IGNORE

    cm = ConfusionMatrix(k)
    cm.update(pred[:250], target_with_ignore[:250])
    cm.update(torch.from_numpy(pred[250:]), torch.from_numpy(target_with_ignore[250:]))
    expected = metrics_sk.confusion_matrix(target[kept], pred[kept], labels=list(range(k)))
    np.testing.assert_array_equal(cm.matrix.numpy(), expected)

    names = [f"c{i}" for i in range(k)]
    m = compute_metrics(cm.matrix, names)
    jaccard = metrics_sk.jaccard_score(target[kept], pred[kept], labels=list(range(k)), average=None, zero_division=0)
    present = [c for c in range(k) if c != 4]
    for c in present:
        assert m["iou"][names[c]] == pytest.approx(jaccard[c])
    assert m["absent"] == ["c4"]
    assert m["miou"] == pytest.approx(jaccard[present].mean())
    assert m["oa"] == pytest.approx(metrics_sk.accuracy_score(target[kept], pred[kept]))
    recall = metrics_sk.recall_score(target[kept], pred[kept], labels=present, average=None)
    assert m["macc"] == pytest.approx(recall.mean())


def test_errors_name_the_problem():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match=r"target holds class 3, expected 0\.\.2 \(or IGNORE=-1\)"):
        cm.update(np.array([0, 1]), np.array([0, 3]))
    with pytest.raises(ValueError, match=r"target holds class -2"):
        cm.update(np.array([0, 1]), np.array([-2, 1]))
    with pytest.raises(ValueError, match=r"pred holds class -1, expected 0\.\.2"):
        cm.update(torch.tensor([-1, 1]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="pred has 3 entries but target has 2"):
        cm.update(np.array([0, 1, 2]), np.array([0, 1]))
    with pytest.raises(ValueError, match="integer class ids, got dtype torch.float32"):
        cm.update(torch.tensor([0.0, 1.0]), torch.tensor([0, 1]))
    assert cm.matrix.sum() == 0  # a rejected batch adds nothing
    with pytest.raises(ValueError, match="2 class names given for a 3x3"):
        compute_metrics(np.eye(3, dtype=np.int64), ["a", "b"])


def test_format_table():
    m = compute_metrics(np.array([[2, 1, 0], [0, 0, 0], [1, 0, 3]]), NAMES)
    table = format_table(m)
    lines = table.splitlines()
    assert lines[0].split() == ["class", "IoU", "acc", "points"]
    assert lines[2].split() == ["floor", "50.00", "66.67", "3"]
    assert lines[3].split() == ["wall", "-", "-", "0", "(absent)"]
    assert lines[4].split() == ["chair", "75.00", "75.00", "4"]
    assert lines[-1].startswith("mIoU 62.50  mAcc 70.83  OA 71.43  (2/3 classes present, 7 points)")


def test_all_reduce_without_distributed_is_a_no_op():
    cm = ConfusionMatrix(2)
    cm.update(np.array([0, 1, 1]), np.array([0, 1, 0]))
    cm.all_reduce()
    assert cm.matrix.tolist() == [[1, 1], [0, 1]]


def _all_reduce_worker(rank: int, world_size: int, init_file: str, results) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        cm = ConfusionMatrix(2)
        # rank 0 sees one (0, 0) pair, rank 1 two (gt 1, pred 0) pairs
        cm.update(np.array([0] * (rank + 1)), np.array([rank] * (rank + 1)))
        cm.all_reduce()
        results[rank] = cm.matrix.tolist()
    finally:
        dist.destroy_process_group()


def test_all_reduce_sums_over_processes(tmp_path):
    results = mp.Manager().dict()
    mp.spawn(_all_reduce_worker, args=(2, str(tmp_path / "init"), results), nprocs=2, join=True)
    assert results[0] == results[1] == [[1, 0], [2, 0]]
