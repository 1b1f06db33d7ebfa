import argparse
import json

import numpy as np
import pytest
import yaml
from PIL import Image

from pcseg.viz.plots import (plot_confusion, plot_grouped_bars, plot_label_curve, plot_training_curves, read_log,
                             row_normalize)
from pcseg.viz.report import RunResult, aggregate, format_table, main, parse_ratio, read_run


def test_row_normalize():
    m = np.array([[3, 1, 0], [0, 0, 0], [2, 2, 4]])
    np.testing.assert_allclose(row_normalize(m), [[0.75, 0.25, 0], [0, 0, 0], [0.25, 0.25, 0.5]])


def test_grouped_bars_whisker_only_where_there_is_a_spread(tmp_path):
    """A std of None (one seed) draws no whisker: fewer black pixels than the same bar with
    std 0 (the whisker's caps), and the whisker of a real spread adds more black."""
    def black_pixels(std):
        out = plot_grouped_bars(["a"], {"1%": [(10.0, std)]}, tmp_path / f"{std}.png")
        rgb = np.asarray(Image.open(out).convert("RGB")).astype(int)
        return int((rgb.sum(axis=2) < 60).sum())
    assert black_pixels(None) < black_pixels(0.0) < black_pixels(3.0)


def test_confusion_png(tmp_path):
    out = plot_confusion(np.array([[5, 1], [0, 4]]), ["floor", "wall"], tmp_path / "c.png")
    assert Image.open(out).size == (400, 400)  # 0.5 * K + 2 inches, at least 4, at 100 dpi
    out = plot_confusion(np.eye(13, dtype=np.int64), [f"c{i}" for i in range(13)], tmp_path / "c13.png")
    assert Image.open(out).size == (850, 850)
    with pytest.raises(ValueError, match=r"shape \(2, 2\), expected \(3, 3\)"):
        plot_confusion(np.eye(2), ["a", "b", "c"], tmp_path / "bad.png")


def test_training_curves_png(tmp_path):
    log = tmp_path / "log.jsonl"
    rows = [{"split": "train", "epoch": e, "step": 10 * e, "lr": 0.1 / (e + 1), "loss": 2.0 / (e + 1),
             "loss_ce": 1.5 / (e + 1)} for e in range(4)]
    rows += [{"split": "val", "epoch": e, "step": 10 * e, "miou": 0.1 * e} for e in range(4)]
    log.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert read_log(log) == rows
    assert Image.open(plot_training_curves(log, tmp_path / "curves.png")).size == (1200, 360)
    log.write_text('{"step": 1}\nnot json\n')
    with pytest.raises(ValueError, match=r"log.jsonl:2: not a JSON object"):
        read_log(log)


def test_parse_ratio():
    assert parse_ratio("ratio:0.01") == 0.01
    assert parse_ratio(None) == 1.0
    assert parse_ratio("count:20") is None
    with pytest.raises(ValueError, match="must be in"):
        parse_ratio("ratio:2")


def test_aggregate_mean_and_sample_std():
    runs = [RunResult("r1", "dsp", 0.01, 0, 0.60), RunResult("r2", "dsp", 0.01, 1, 0.64),
            RunResult("r3", "dsp", 0.01, 2, 0.65), RunResult("r4", "dsp", 1.0, 0, 0.70),
            RunResult("r5", "supervised", 0.01, 0, 0.50), RunResult("r6", "supervised", 0.1, 0, 0.55),
            RunResult("r7", "supervised", 0.1, 1, 0.59)]
    curves = aggregate(runs)
    # dsp at 1%: mean 0.63, deviations -0.03 0.01 0.02 -> sum of squares 0.0014, / (3 - 1) -> std sqrt(0.0007)
    (r, mean, std, n), full = curves["dsp"]
    assert (r, n) == (0.01, 3) and mean == pytest.approx(0.63) and std == pytest.approx(0.0007 ** 0.5)
    assert full == (1.0, 0.70, 0.0, 1)
    assert [p[0] for p in curves["supervised"]] == [0.01, 0.1]
    assert curves["supervised"][1][1:] == pytest.approx((0.57, 0.02 * 2 ** 0.5, 2))
    assert "dsp                      0.01    63.00    2.65     3" in format_table(curves)
    with pytest.raises(ValueError, match="r1 and r8 are the same experiment"):
        aggregate(runs[:1] + [RunResult("r8", "dsp", 0.01, 0, 0.1)])


def make_run(root, name, method, protocol, seed, miou):
    folder = root / name
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(
        {"method": {"name": method}, "data": {"protocol": protocol}, "train": {"seed": seed}}))
    (folder / "metrics.json").write_text(json.dumps({"miou": miou, "oa": 0.9}))
    return str(folder)


def test_report_curve_cli(tmp_path, capsys):
    runs = [make_run(tmp_path, "a", "supervised", "ratio:0.01", 0, 0.4),
            make_run(tmp_path, "b", "supervised", "ratio:0.01", 1, 0.5),
            make_run(tmp_path, "c", "supervised", None, 0, 0.7),
            make_run(tmp_path, "d", "supervised", "count:20", 0, 0.3)]
    assert read_run(runs[2]) == RunResult(runs[2], "supervised", 1.0, 0, 0.7)
    out = tmp_path / "curve.png"
    assert main(argparse.Namespace(action="curve", runs=runs, out=str(out))) == 0
    printed = capsys.readouterr()
    assert "supervised               0.01    45.00    7.07     2" in printed.out
    assert "supervised                  1    70.00    0.00     1" in printed.out
    assert "skipping" in printed.err and "/d" in printed.err
    assert Image.open(out).size == (640, 440)
    (tmp_path / "a" / "config.yaml").write_text(yaml.safe_dump({"method": {"name": "x"}, "data": {}}))
    assert main(argparse.Namespace(action="curve", runs=runs, out=str(out))) == 2
    assert "config.yaml: missing key 'data.protocol'" in capsys.readouterr().err


def test_label_curve_png(tmp_path):
    out = plot_label_curve({"m": [(0.01, 0.5, 0.01, 3), (1.0, 0.7, 0.0, 1)]}, tmp_path / "l.png")
    assert Image.open(out).size == (640, 440)
    with pytest.raises(ValueError, match="no runs"):
        plot_label_curve({}, tmp_path / "e.png")


def test_report_reads_protocol_files_and_runs_from_pcseg_cli(tmp_path, capsys):
    pytest.importorskip("pcseg.weak.protocol_file")
    from pcseg.cli import main as pcseg_main
    from pcseg.weak.protocol import make_protocol
    from pcseg.weak.protocol_file import save_protocol

    label = np.arange(1000) % 3
    runs = []
    for seed, miou in ((0, 0.30), (1, 0.34)):
        run = make_run(tmp_path, f"r{seed}", "dsp", "weak.npz", seed, miou)
        save_protocol(make_protocol("ratio:0.1", [("s", {"label": label})], seed=seed, source="t"),
                      tmp_path / f"r{seed}" / "weak.npz")
        runs.append(run)
    assert pcseg_main(["report", "curve", *runs, "--out", str(tmp_path / "c.png")]) == 0
    assert "dsp                       0.1    32.00    2.83     2" in capsys.readouterr().out
    (tmp_path / "r1" / "weak.npz").unlink()
    assert pcseg_main(["report", "curve", *runs, "--out", str(tmp_path / "c.png")]) == 2
    assert "data.protocol file 'weak.npz' not found" in capsys.readouterr().err
