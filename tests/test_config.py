from pathlib import Path

import pytest

from pcseg.config import ConfigError, config_from_dict, load_config, save_config
from pcseg.resources import configs_dir


def write(tmp_path: Path, text: str, name: str = "x.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_and_overrides():
    cfg = load_config(None, ["train.epochs=3", "model.name=minkunet18a", "optim.lr=0.01"])
    assert cfg.train.epochs == 3 and isinstance(cfg.train.epochs, int)
    assert cfg.model.name == "minkunet18a"
    assert cfg.optim.lr == pytest.approx(0.01)


def test_recipe_then_override_wins(tmp_path):
    path = write(tmp_path, "train:\n  epochs: 7\ndata:\n  voxel_size: 0.02\n")
    cfg = load_config(path, ["train.epochs=2"])
    assert cfg.train.epochs == 2 and cfg.data.voxel_size == pytest.approx(0.02)


def test_unknown_key_names_path_line_and_suggestion(tmp_path):
    path = write(tmp_path, "name: x\ndata:\n  voxel_size: 0.02\n  batchsize: 4\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert f"{path}:4" in msg
    assert "data.batchsize" in msg
    assert "data.batch_size" in msg  # nearest valid name


def test_unknown_section(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key 'trian'.*'train'"):
        load_config(write(tmp_path, "trian:\n  epochs: 1\n"))


def test_wrong_type_names_key(tmp_path):
    path = write(tmp_path, "train:\n  epochs: many\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "train.epochs" in str(err.value) and f"{path}:2" in str(err.value)


def test_wrong_type_in_override():
    with pytest.raises(ConfigError, match="command line: config key 'optim.lr'"):
        load_config(None, ["optim.lr=fast"])


@pytest.mark.parametrize("bad", ["train.epochs", "=3", "train..epochs=3", " train.epochs=3"])
def test_malformed_override(bad):
    with pytest.raises(ConfigError, match="bad override"):
        load_config(None, [bad])


def test_unknown_override_key_suggests():
    with pytest.raises(ConfigError, match="did you mean 'train.epochs'"):
        load_config(None, ["train.epoch=3"])


def test_base_chain(tmp_path):
    write(tmp_path, "train:\n  epochs: 5\n  seed: 9\n", "base.yaml")
    cfg = load_config(write(tmp_path, "base: base.yaml\ntrain:\n  epochs: 1\n"))
    assert (cfg.train.epochs, cfg.train.seed) == (1, 9)


def test_base_loop_is_an_error(tmp_path):
    path = write(tmp_path, "base: x.yaml\n")
    with pytest.raises(ConfigError, match="loops"):
        load_config(path)


def test_missing_recipe_lists_shipped():
    with pytest.raises(ConfigError, match="synthetic_demo"):
        load_config("no_such_recipe")


def test_save_and_reload_round_trip(tmp_path):
    cfg = load_config("synthetic_demo", ["train.epochs=4"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == cfg
    from omegaconf import OmegaConf
    assert config_from_dict(OmegaConf.to_container(cfg)) == cfg


@pytest.mark.parametrize("recipe", sorted(p.name for p in configs_dir().glob("*.yaml")))
def test_every_shipped_recipe_loads(recipe):
    load_config(recipe)
