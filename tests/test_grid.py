"""`pcseg grid`: parsing a grid file, expanding its runs, the summary statistics against numpy
by hand, and one tiny grid trained end to end (two settings x one protocol x two seeds)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from pcseg.cli import main as cli_main
from pcseg.config import ConfigError
from pcseg.engine.grid import (GridRun, claim, expand_grid, format_markdown, load_grid, slug, summarise)
from pcseg.resources import configs_dir

TINY_RECIPE = """
name: tiny
data: {train_rooms: 2, val_rooms: 1, room_points: 1500, voxel_size: 0.4, features: [color, coord_z],
       batch_size: 2, protocol: "ratio:0.01"}
model: {name: minkunet14a}
optim: {name: adamw, lr: 0.003}
train: {epochs: 1, val_every: 1000, log_every: 1}
"""
TINY_CPS_RECIPE = """
base: tiny.yaml
name: tiny_cps
method: {name: cps}
"""


def write_grid(tmp_path: Path, text: str) -> Path:
    (tmp_path / "tiny.yaml").write_text(TINY_RECIPE)
    (tmp_path / "tiny_cps.yaml").write_text(TINY_CPS_RECIPE)
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    return path


GRID = """
recipe: tiny.yaml
seeds: [0, 1]
seed_keys: [train.seed, data.protocol_seed]
protocols: {"1%": "ratio:0.01", full: null}
settings:
  - name: fully supervised
    protocols: [full]
    overrides: [method.name=supervised]
  - name: CPS
    recipe: tiny_cps.yaml
    overrides: [method.cps.weight=0.5]
"""


def test_expand_is_seed_major_and_sets_every_seed_key(tmp_path):
    spec = load_grid(write_grid(tmp_path, GRID))
    runs = expand_grid(spec, tmp_path / "out")
    assert [(r.seed, r.setting, r.protocol) for r in runs] == [
        (0, "fully supervised", "full"), (0, "CPS", "1%"), (1, "fully supervised", "full"), (1, "CPS", "1%")]
    assert runs[1].overrides == ("method.cps.weight=0.5", "data.protocol=ratio:0.01",
                                 "train.seed=0", "data.protocol_seed=0")
    assert runs[0].overrides[1] == "data.protocol=null"
    # a setting's own recipe, resolved beside the grid file; the others use the grid's
    assert runs[1].recipe == str(tmp_path / "tiny_cps.yaml") and runs[0].recipe == str(tmp_path / "tiny.yaml")
    assert runs[3].folder == tmp_path / "out" / "cps" / "1pct" / "seed1"
    assert [r.setting for r in expand_grid(spec, tmp_path, seeds=[5], only=["CPS"])] == ["CPS"]


def test_a_column_overrides_before_the_setting_overrides(tmp_path):
    text = GRID.replace('protocols: {"1%": "ratio:0.01", full: null}',
                        'protocols: {"1%": {protocol: "ratio:0.01", overrides: [train.epochs=3, method.cps.weight=2]},'
                        ' full: {protocol: null}}')
    runs = expand_grid(load_grid(write_grid(tmp_path, text)), tmp_path / "out")
    assert runs[1].overrides == ("train.epochs=3", "method.cps.weight=2", "method.cps.weight=0.5",
                                 "data.protocol=ratio:0.01", "train.seed=0", "data.protocol_seed=0")
    assert runs[0].overrides == ("method.name=supervised", "data.protocol=null", "train.seed=0", "data.protocol_seed=0")
    from pcseg.config import load_config
    cfg = load_config(runs[1].recipe, list(runs[1].overrides))
    assert cfg.train.epochs == 3 and cfg.method.cps.weight == 0.5  # the setting's override wins


def test_slug():
    assert slug("0.1%") == "0.1pct"
    assert slug("DSP staged") == "dsp_staged"
    assert slug("self-training DARS") == "self_training_dars"


@pytest.mark.parametrize("text, message", [
    ("recipe: tiny.yaml\nseeds: [0]\nprotocols: {a: null}\nsettings: [{name: x}]\nsead: 1\n", "unknown key(s) 'sead'"),
    ("recipe: tiny.yaml\nseeds: []\nprotocols: {a: null}\nsettings: [{name: x}]\n", "'seeds' must be"),
    ("recipe: tiny.yaml\nseeds: [0]\nprotocols: {a: null}\nsettings: [{name: x, protocols: [b]}]\n", "'b'"),
    ("recipe: tiny.yaml\nseeds: [0]\nprotocols: {a: null}\nsettings: [{name: x, overides: []}]\n", "'overides'"),
    ("recipe: tiny.yaml\nseeds: [0]\nprotocols: {a: null}\nsettings: [{name: x}, {name: x}]\n", "unique"),
    ("seeds: [0]\nprotocols: {a: null}\nsettings: [{name: x}]\n", "missing key 'recipe'"),
    ("recipe: tiny.yaml\nseeds: [0]\nprotocols: {a: null}\nsettings: [{name: x, recipe: [a]}]\n", "'recipe' must be"),
    ("recipe: tiny.yaml\nseeds: [0]\nprotocols: {a: {overrides: []}}\nsettings: [{name: x}]\n", "missing key 'protocol'"),
    ("recipe: tiny.yaml\nseeds: [0]\nprotocols: {a: {protocol: null, overides: []}}\nsettings: [{name: x}]\n",
     "protocols['a']: unknown key(s) 'overides'"),
    ("recipe: tiny.yaml\nseeds: [0]\nprotocols: {a: {protocol: null, overrides: x}}\nsettings: [{name: x}]\n",
     "'overrides' must be a list"),
])
def test_bad_grid_files_name_the_file_and_key(tmp_path, text, message):
    path = write_grid(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_grid(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_unknown_config_key_in_a_setting_fails_before_training(tmp_path, capsys):
    path = write_grid(tmp_path, GRID.replace("method.cps.weight=0.5", "method.cps.wieght=0.5"))
    assert cli_main(["grid", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "setting 'CPS'" in err and "method.cps.wieght" in err and "did you mean" in err
    assert not (tmp_path / "out" / "cps").exists()


def fake_run(tmp_path: Path, setting: str, protocol: str, seed: int, miou: float, oa: float) -> GridRun:
    folder = tmp_path / slug(setting) / slug(protocol) / f"seed{seed}"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"miou": miou, "oa": oa, "train_time_s": 10.0 + seed}))
    return GridRun(setting, protocol, seed, "tiny.yaml", (), folder)


def test_summary_is_mean_and_sample_std_over_seeds(tmp_path):
    spec = load_grid(write_grid(tmp_path, GRID))
    mious = [0.30, 0.34, 0.41]
    runs = [fake_run(tmp_path, "CPS", "1%", s, m, 0.5 + s / 10) for s, m in enumerate(mious)]
    runs.append(GridRun("CPS", "1%", 3, "tiny.yaml", (), tmp_path / "never_ran"))  # unfinished: left out
    summary = summarise(spec, runs)
    cell = summary["rows"][0]["cells"]["1%"]
    assert cell["miou"] == pytest.approx(np.mean(mious))
    assert cell["miou_std"] == pytest.approx(np.sqrt(sum((m - np.mean(mious)) ** 2 for m in mious) / 2))
    assert cell["oa"] == pytest.approx(0.6) and cell["seeds"] == [0, 1, 2] and cell["train_time_s"] == 11.0
    table = format_markdown(summary)
    assert f"| CPS | {100 * np.mean(mious):.1f} ± {100 * cell['miou_std']:.1f} | 60.0 | 3 | 11 |" in table
    one = format_markdown(summarise(spec, runs[:1]))
    assert "| CPS | 30.0 | 50.0 | 1 | 10 |" in one  # one seed: no spread to show


def test_summary_reports_the_final_model_not_the_best_validation(tmp_path):
    spec = load_grid(write_grid(tmp_path, GRID))
    run = fake_run(tmp_path, "CPS", "1%", 0, 0.40, 0.9)
    best = json.loads((run.folder / "metrics.json").read_text())
    final = {"step": 100, "miou": 0.35, "oa": 0.8, "macc": 0.5, "iou": {"a": 0.35}, "acc": {"a": 0.5}}
    (run.folder / "metrics.json").write_text(json.dumps({**best, "final": final}))
    summary = summarise(spec, [run])
    cell = summary["rows"][0]["cells"]["1%"]
    assert cell["miou"] == 0.35 and cell["oa"] == 0.8
    assert summary["runs"][0]["iou"] == {"a": 0.35}


def test_claim_refuses_a_run_a_live_process_holds_and_takes_over_a_dead_one(tmp_path):
    run = GridRun("x", "1%", 0, "tiny.yaml", (), tmp_path / "run")
    assert claim(run)
    assert not claim(run)  # our own pid is alive
    (run.folder / "RUNNING").write_text("999999999")  # no such process
    assert claim(run) and (run.folder / "RUNNING").read_text() == str(os.getpid())


def test_tiny_grid_end_to_end_and_resume_skips_finished_runs(tmp_path, capsys):
    path = write_grid(tmp_path, GRID)
    out = tmp_path / "out"
    assert cli_main(["grid", str(path), "--out", str(out), "--jobs", "2", "--seeds", "0"]) == 0
    summary = json.loads((out / "results.json").read_text())
    assert [r["setting"] for r in summary["rows"]] == ["fully supervised", "CPS"]
    for record in summary["runs"]:
        metrics = json.loads((Path(record["folder"]) / "metrics.json").read_text())
        assert record["miou"] == metrics["final"]["miou"]
    cps_config = (out / "cps" / "1pct" / "seed0" / "config.yaml").read_text()
    assert "weight: 0.5" in cps_config and "protocol: ratio:0.01" in cps_config and "name: tiny_cps" in cps_config
    assert (out / "results.png").stat().st_size > 0 and "| CPS |" in (out / "results.md").read_text()
    capsys.readouterr()
    assert cli_main(["grid", str(path), "--out", str(out), "--seeds", "0", "--dry-run"]) == 0
    assert capsys.readouterr().out.count("done  ") == 2


def test_shipped_grids_load_and_every_run_config_is_valid():
    from pcseg.engine.grid import check_runs
    grids = sorted((configs_dir() / "grids").glob("*.yaml"))
    assert grids
    for path in grids:
        spec = load_grid(path)
        check_runs(spec, expand_grid(spec, "/nonexistent"))
