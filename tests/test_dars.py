"""DARS against a brute-force reference that sorts every confidence of each class."""
import numpy as np
import pytest
import torch

from pcseg.weak.dars import (ConfidenceHistogram, confidence_bin, dars_batch_pseudo_labels, dars_pseudo_labels,
                             dars_targets,
                             dars_thresholds)
from pcseg.weak.pseudo import IGNORE

K, BINS = 4, 100


def random_logits(m: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # a class bias makes predictions imbalanced, the case DARS is for
    return torch.randn(m, K, generator=g) * 2.0 + torch.tensor([1.5, 0.5, 0.0, -0.5])


def brute_force(logits: torch.Tensor, prior: np.ndarray, alpha: float):
    """(boundary bin [K], rows kept above it [K], target [K]) from sorted confidences."""
    prob = torch.softmax(logits.double(), 1).numpy()
    conf, pred = prob.max(1), prob.argmax(1)
    total = len(conf)
    bins, above, target = [], [], []
    for k in range(K):
        mine = np.sort(conf[pred == k])[::-1]
        n = min(int(round(alpha * total * prior[k])), len(mine))
        target.append(n)
        if n == 0:
            bins.append(BINS)
            above.append(0)
            continue
        b = min(int(np.floor(mine[n - 1] * BINS)), BINS - 1)
        bins.append(b)
        above.append(int(sum(min(int(np.floor(c * BINS)), BINS - 1) > b for c in mine)))
    return np.array(bins), np.array(above), np.array(target)


def test_confidence_bin_edges():
    conf = torch.tensor([0.0, 0.0099, 0.01, 0.5, 0.999, 1.0], dtype=torch.float64)
    assert confidence_bin(conf, 100).tolist() == [0, 0, 1, 50, 99, 99]


def test_tiny_hand_example():
    # 10 bins; class 0 confidences 0.95, 0.95, 0.85, 0.62; class 1: 0.92, 0.55
    prob = torch.tensor([[0.95, 0.05], [0.95, 0.05], [0.85, 0.15], [0.62, 0.38], [0.08, 0.92], [0.45, 0.55]])
    hist = ConfidenceHistogram(2, 10)
    hist.update(prob.log())
    assert hist.counts[0].tolist() == [0, 0, 0, 0, 0, 0, 1, 0, 1, 2]
    assert hist.counts[1].tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 0, 1]
    # alpha = 0.5 -> 3 pseudo labels; prior 2/3, 1/3 -> targets 2 and 1
    thr = dars_thresholds(hist, torch.tensor([2 / 3, 1 / 3]), ratio=0.5)
    assert thr.target.tolist() == [2, 1]
    assert thr.bin.tolist() == [9, 9]
    assert thr.keep_fraction.tolist() == [1.0, 1.0]
    # ratio 4/6, prior 0.75 / 0.25 -> targets 3, 1: class 0 needs its bin-8 row (0.85) as well
    thr = dars_thresholds(hist, torch.tensor([0.75, 0.25]), ratio=4 / 6)
    assert thr.target.tolist() == [3, 1]
    assert thr.bin.tolist() == [8, 9]
    labels = dars_pseudo_labels(prob.log(), torch.full((6,), IGNORE), thr, torch.Generator().manual_seed(0))
    assert labels.tolist() == [0, 0, 0, IGNORE, 1, IGNORE]
    # alpha from a plain threshold of 0.9: 3 of 6 rows are >= 0.9
    assert dars_targets(hist, torch.tensor([2 / 3, 1 / 3]), threshold=0.9).tolist() == [2, 1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_thresholds_and_counts_equal_brute_force(seed):
    logits = random_logits(3000, seed)
    prior = np.array([0.1, 0.2, 0.3, 0.4])
    hist = ConfidenceHistogram(K, BINS)
    hist.update(logits)
    thr = dars_thresholds(hist, torch.tensor(prior), ratio=0.5)
    bins, above, target = brute_force(logits, prior, 0.5)
    assert thr.bin.tolist() == bins.tolist()
    assert thr.target.tolist() == target.tolist()
    labels = dars_pseudo_labels(logits, torch.full((3000,), IGNORE), thr, torch.Generator().manual_seed(seed))
    counts = torch.bincount(labels[labels != IGNORE], minlength=K)
    assert counts.tolist() == target.tolist()
    # every class keeps all rows above its boundary bin and only rows at or above it
    prob = torch.softmax(logits, 1)
    conf, pred = prob.max(1)
    b = confidence_bin(conf, BINS)
    for k in range(K):
        kept = labels == k
        assert int((kept & (b > bins[k])).sum()) == above[k]
        assert bool((b[kept] >= bins[k]).all()) and bool((pred[kept] == k).all())


def test_labelled_rows_never_pseudo_labelled_and_inputs_untouched():
    logits = random_logits(500, 3)
    labels = torch.full((500,), IGNORE)
    labels[::5] = 2
    hist = ConfidenceHistogram(K, BINS)
    hist.update(logits, labels == IGNORE)
    assert hist.total() == 400
    thr = dars_thresholds(hist, torch.full((K,), 0.25), ratio=0.8)
    before = logits.clone(), labels.clone()
    out = dars_pseudo_labels(logits, labels, thr, torch.Generator().manual_seed(0))
    assert bool((out[::5] == IGNORE).all())
    assert torch.equal(logits, before[0]) and torch.equal(labels, before[1])


def test_proportions_match_prior_over_streamed_batches():
    prior = torch.tensor([0.4, 0.3, 0.2, 0.1])
    batches = [random_logits(2000, 10 + i) for i in range(5)]
    hist = ConfidenceHistogram(K, BINS)
    for logits in batches:
        hist.update(logits)
    thr = dars_thresholds(hist, prior, ratio=0.3)
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(K, dtype=torch.int64)
    for logits in batches:
        labels = dars_pseudo_labels(logits, torch.full((2000,), IGNORE), thr, g)
        counts += torch.bincount(labels[labels != IGNORE], minlength=K)
    share = counts.double() / counts.sum()
    assert share.tolist() == pytest.approx(prior.tolist(), abs=0.01)
    assert abs(int(counts.sum()) - 3000) <= 10
    # a plain threshold would have followed the biased predictions instead
    plain = torch.bincount(torch.cat(batches).argmax(1), minlength=K).double()
    assert abs(float(plain[0] / plain.sum()) - 0.4) > 0.05


def test_streaming_histogram_equals_one_pass():
    batches = [random_logits(m, 20 + i) for i, m in enumerate([7, 300, 1, 1200])]
    masks = [torch.rand(len(b), generator=torch.Generator().manual_seed(i)) < 0.7 for i, b in enumerate(batches)]
    streamed = ConfidenceHistogram(K, BINS)
    for logits, mask in zip(batches, masks):
        streamed.update(logits, mask)
    one = ConfidenceHistogram(K, BINS)
    one.update(torch.cat(batches), torch.cat(masks))
    assert torch.equal(streamed.counts, one.counts)
    halves = ConfidenceHistogram(K, BINS)
    halves.update(batches[0], masks[0])
    rest = ConfidenceHistogram(K, BINS)
    for logits, mask in zip(batches[1:], masks[1:]):
        rest.update(logits, mask)
    assert torch.equal((halves + rest).counts, one.counts)
    assert one.total() == int(torch.cat(masks).sum())


def test_bad_prior_and_ratio_raise():
    hist = ConfidenceHistogram(K, BINS)
    hist.update(random_logits(10, 0))
    with pytest.raises(ValueError, match="prior"):
        dars_thresholds(hist, torch.ones(3) / 3)
    with pytest.raises(ValueError, match="ratio"):
        dars_thresholds(hist, torch.ones(K) / K, ratio=1.5)


def test_offline_pseudo_labels_stream_over_scenes_and_match_one_pass():
    from pcseg.config import load_config
    from pcseg.data.dataset import SceneDataset
    from pcseg.engine.rounds import PseudoLabelledSource, make_pseudo_labels, pseudo_label_stats

    class Scenes:
        """Three scenes whose 'network' output is stored with them (logits [N, K])."""

        def __init__(self):
            self.scenes = {}
            for i, n in enumerate((300, 500, 200)):
                g = np.random.default_rng(i)
                label = g.integers(0, K, n)
                logits = random_logits(n, 40 + i).numpy()
                self.scenes[f"s{i}"] = {"coord": g.random((n, 3), dtype=np.float32), "label": label,
                                        "logits": logits}

        def names(self):
            return list(self.scenes)

        def load(self, name):
            return dict(self.scenes[name])

    source = Scenes()
    cfg = load_config(None, ["method.pseudo.ratio=0.4", f"method.pseudo.bins={BINS}"])
    dataset = SceneDataset(source)  # no protocol: every point labelled -> nothing to pseudo-label
    assert all((p == IGNORE).all() for p in make_pseudo_labels(
        lambda s: torch.from_numpy(s["logits"]), dataset, cfg, np.ones(K), progress=False).values())

    class Weak(Scenes):
        def load(self, name):
            scene = super().load(name)
            return {**scene, "label": np.full(len(scene["label"]), IGNORE)}

    weak = Weak()
    prior = np.array([1, 2, 3, 4])
    pseudo = make_pseudo_labels(lambda s: torch.from_numpy(s["logits"]), SceneDataset(weak), cfg, prior,
                                progress=False)
    everything = torch.cat([torch.from_numpy(weak.scenes[n]["logits"]) for n in weak.names()])
    _, _, target = brute_force(everything, prior / prior.sum(), 0.4)
    labels = np.concatenate([pseudo[n] for n in weak.names()])
    counts = np.bincount(labels[labels != IGNORE], minlength=K)
    # each scene rounds its share of a boundary bin up or down at random: off by < 3 over 3 scenes
    assert np.abs(counts - target).max() <= 2 and counts.tolist() != [0] * K
    stats = pseudo_label_stats(pseudo, source)
    assert stats["pseudo_fraction"] == pytest.approx(counts.sum() / 1000)
    scene = PseudoLabelledSource(weak, pseudo).load("s1")
    assert np.array_equal(scene["pseudo_label"], pseudo["s1"]) and "pseudo_label" not in weak.load("s1")


def test_batch_pseudo_labels_keep_each_class_within_its_prior_share_by_hand():
    """Six unlabelled rows and one labelled row; prior 0.5 / 0.3 / 0.2 allows 3 / 2 / 1 (round(6 p))."""
    def row(k, conf):  # logits whose softmax is conf on class k, the rest split evenly
        p = [(1 - conf) / 2] * 3
        p[k] = conf
        return np.log(p)
    confs = [(0, 0.9), (0, 0.6), (0, 0.8), (0, 0.7), (1, 0.5), (2, 0.95), (2, 0.99)]
    logits = torch.tensor(np.array([row(k, c) for k, c in confs]), dtype=torch.float32)
    labels = torch.tensor([IGNORE] * 6 + [1])  # the last row is labelled: never a pseudo label
    out = dars_batch_pseudo_labels(logits, labels, torch.tensor([0.5, 0.3, 0.2]), torch.Generator().manual_seed(0))
    # class 0 is predicted 4 times, allowed 3: its least confident row (0.6) drops;
    # class 1 once, allowed 2: kept; class 2 once among the unlabelled rows, allowed 1: kept
    assert out.tolist() == [0, IGNORE, 0, 0, 1, 2, IGNORE]
