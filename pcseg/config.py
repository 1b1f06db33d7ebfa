"""Experiment configuration: dataclass schema + YAML recipe + dotted command-line overrides.

    cfg = load_config("configs/synthetic_demo.yaml", ["train.epochs=3", "model.name=minkunet18a"])

OmegaConf structured configs do the merging and type checking; this module turns their
exceptions into one message naming the file, line and full key path, with the nearest valid
names. A recipe may start from another with `base: other.yaml` (path relative to the recipe).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Optional

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from pcseg.resources import find_config


class ConfigError(ValueError):
    """A config the user wrote is wrong; the message names the key (and file:line)."""


@dataclass
class ImageDataConfig:
    """Keys of the 2D module, read when data.modality=images (docs/images.md "Training")."""
    root: Optional[str] = None  # dataset folder: voc (VOC2012), cityscapes, isaid, folder, mmseg
    image_dir: str = "{split}/images"  # folder, isaid: image folder under root ({split} = the split)
    mask_dir: str = "{split}/masks"  # folder: mask folder under root
    mask_suffix: str = ""  # folder: mask file = <image stem><suffix>.<ext> (CamVid: _P)
    mask_encoding: Optional[str] = None  # folder, mmseg: index | rgb; null = the dataset YAML's
    annotations: str = "{split}/iSAID_{split}.json"  # isaid: COCO json under root
    voc_mode: str = "blended"  # images:<f> on VOC train_aug: blended (from train_aug) | classic (from train)
    train_images: int = 64  # synthetic scenes generated for training
    val_images: int = 16
    height: int = 128  # synthetic scene size (pixels)
    width: int = 128
    patch: Optional[int] = None  # tile every image into patch x patch tiles (training and evaluation)
    stride: int = 512  # tile step (pixels)
    crop_size: Optional[int] = None  # square random crop of training images; null = whole images
    scale: list[float] = field(default_factory=lambda: [0.5, 2.0])  # random rescaling range ([1, 1] = none)
    flip: bool = True  # random horizontal flips of training images
    color_jitter: float = 0.0  # per-channel gain 1 +- j and offset +- j/2 of training images (0 = none)
    channel_shuffle: bool = False  # random RGB channel order of training images
    # each batch: this many images with labels + (batch_size - it) without; null = plain shuffled batches
    labelled_per_batch: Optional[int] = None


@dataclass
class DataConfig:
    dataset: str = "synthetic_rooms"  # datasets/<name>.yaml, or a path to a class YAML
    modality: str = "points"  # points (3D scenes) | images (the 2D module, keys in data.images)
    # points: synthetic | store; images: synthetic | voc | cityscapes | isaid | folder | mmseg
    source: str = "synthetic"
    store: Optional[str] = None  # HDF5 store written by `pcseg prepare` (source=store)
    train_split: str = "train"  # store split(s), comma-separated: "Area_1,Area_2,Area_3,Area_4,Area_6"
    val_split: str = "val"
    train_scenes: list[str] = field(default_factory=list)  # if given, only these scenes of the train split(s)
    val_scenes: list[str] = field(default_factory=list)  # if given, only these scenes of the val split(s)
    train_rooms: int = 24  # synthetic rooms generated for training
    val_rooms: int = 6
    room_points: int = 60000  # points per synthetic room
    synthetic_seed: int = 0
    protocol: Optional[str] = None  # weak-label protocol file, or a spec ("ratio:0.01"); None = all labels
    protocol_seed: int = 0
    voxel_size: float = 0.05  # metres
    max_points: int = 200000  # random crop cap for training scenes
    features: list[str] = field(default_factory=lambda: ["color"])  # per-point input features
    augment: bool = True
    batch_size: int = 2
    val_batch_size: int = 1
    num_workers: int = 0
    images: ImageDataConfig = field(default_factory=ImageDataConfig)


@dataclass
class ModelConfig:
    name: str = "minkunet14a"  # a key of pcseg.models.BACKBONES (images: of pcseg.models.image.IMAGE_MODELS)
    pretrained: Optional[str] = None  # images: torchvision ResNet state_dict file for the backbone (never downloaded)


@dataclass
class PseudoLabelConfig:
    """How pseudo labels are chosen (pcseg.weak): DARS or a plain confidence threshold."""
    dars: bool = True  # distribution-aligned thresholds + sampling; False = plain threshold
    threshold: float = 0.9  # plain threshold; with DARS and ratio=null it sets the pseudo-labelled fraction
    # DARS: fraction of unlabelled points to pseudo-label; null: the fraction `threshold` would keep
    # (0 early in training, when nothing is that confident)
    ratio: Optional[float] = 0.5
    bins: int = 1000  # confidence histogram bins per class (streaming DARS)


@dataclass
class DSPConfig:
    schedule: str = "staged"  # staged (CSFR, then ISFR) | joint | csfr | isfr
    stage1_epochs: int = 5  # staged: epochs of CSFR before ISFR fine-tuning
    stride: int = 16  # encoder tensor stride the modules act on (1, 2, 4, 8 or 16)
    csfr_weight: float = 1.0  # weight of L_CR, the CSFR consistency
    isfr_weight: float = 1.0  # weight of L_SR, the ISFR consistency
    isfr_ce_weight: float = 1.0  # weight of L_seg_s, CE on labelled points of the ISFR branch
    consistency: str = "mse"  # mse: ||p - p'||^2 (the paper's) | kl: KL(p || p')
    chunk_mb: float = 256.0  # memory budget of one affinity row-chunk (MiB)
    propagated_weight: float = 0.0  # CE on labels propagated by method.propagation (0: off, the paper's DSP)


@dataclass
class CPSConfig:
    weight: float = 1.0  # lambda of the cross pseudo supervision term (at the end of the ramp-up)
    rampup_steps: int = 0  # sigmoid ramp-up of lambda over this many steps (0 = lambda from step 0, the paper's)
    cutmix: bool = False  # images: cross terms on CutMix-ed pairs of unlabelled images (CPS paper's variant)
    cross_class_weights: bool = False  # weight the cross terms' CE by the labelled pixels' inverse frequency (not the paper's)
    threshold: float = 0.0  # cross terms only where the other network's max softmax >= threshold (0 = the paper's)
    distribution_alignment: bool = False  # pseudo labels from p * prior / moving mean p, ReMixMatch's (not the paper's)
    alignment_momentum: float = 0.99  # momentum of each network's moving average prediction (distribution alignment)
    dars: bool = False  # per batch, class k keeps at most its prior share of pseudo labels (not the paper's)


@dataclass
class MeanTeacherConfig:
    ema: float = 0.99  # teacher <- ema * teacher + (1 - ema) * student, after each step
    weight: float = 1.0  # consistency weight at the end of the ramp-up
    rampup_steps: int = 200  # sigmoid ramp-up of the consistency weight
    rotate: bool = True  # augmentation of the student view: random rotation about z
    flip: bool = True  # random flips of x / y (images: horizontal flip, undone on the logits)
    jitter: float = 0.01  # Gaussian jitter sigma (metres)
    color_jitter: float = 0.2  # images: brightness / contrast factors drawn from 1 +- color_jitter


@dataclass
class SelfTrainingConfig:
    weight: float = 1.0  # weight of the pseudo-label CE
    ema: float = 0.99  # EMA teacher that makes the online pseudo labels (0: the model itself)
    warmup_epochs: int = 1  # epochs of labelled-only training before pseudo labels start
    erda: bool = False  # ERDA (entropy regularisation + distribution alignment) instead of hard CE
    erda_entropy_weight: float = 1.0  # lambda of the entropy term of ERDA
    online: bool = True  # pseudo labels each step; False: only `pseudo_label` of the data (offline rounds)
    rounds: int = 2  # offline: retraining rounds after the first training (engine/rounds.py)


@dataclass
class S4LConfig:
    weight: float = 1.0  # w of the 4-way rotation loss (S4L-rotation, images)


@dataclass
class PropagationConfig:
    """`propagation`: pseudo labels from the nearest labelled point (pcseg/data/propagated.py)."""
    mode: str = "radius"  # radius | segments: within surface segments (pcseg/data/segments.py)
    radius: float = 0.3  # radius: the label of the nearest labelled point closer than this
    color_scale: float = 1.0  # radius: distance = |[xyz, color_scale * rgb]| (metres; rgb in 0..1)
    segment_neighbours: int = 8  # segments: k of the k-NN graph
    segment_max_distance: float = 0.2  # segments: longest graph edge (metres)
    segment_max_color: float = 0.1  # segments: largest rgb difference across an edge
    segment_min_normal_cos: float = 0.8  # segments: smallest |n_a . n_b| across an edge
    weight: float = 1.0  # weight of the CE on propagated labels
    entropy_weight: float = 0.0  # weight of the mean softmax entropy on points with no label (0: off)


@dataclass
class MethodConfig:
    name: str = "supervised"  # a key of pcseg.methods.METHODS
    class_weights: bool = False  # inverse-frequency weights from labelled points only
    pseudo: PseudoLabelConfig = field(default_factory=PseudoLabelConfig)
    dsp: DSPConfig = field(default_factory=DSPConfig)
    cps: CPSConfig = field(default_factory=CPSConfig)
    mean_teacher: MeanTeacherConfig = field(default_factory=MeanTeacherConfig)
    self_training: SelfTrainingConfig = field(default_factory=SelfTrainingConfig)
    propagation: PropagationConfig = field(default_factory=PropagationConfig)
    s4l: S4LConfig = field(default_factory=S4LConfig)


@dataclass
class OptimConfig:
    name: str = "sgd"  # sgd | adamw
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = True


@dataclass
class SchedulerConfig:
    name: str = "poly"  # poly | cosine | onecycle | constant
    power: float = 0.9
    warmup_steps: int = 0


@dataclass
class TrainConfig:
    epochs: int = 10
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # mixed precision, CUDA only
    clip_grad: Optional[float] = None  # max gradient norm
    val_every: int = 1  # epochs
    log_every: int = 10  # steps
    checkpoint_every: int = 0  # steps between mid-epoch checkpoints (0: end of epoch only)
    save_every: int = 1  # epochs between end-of-epoch last.pt saves (the last epoch always saves)
    val_votes: int = 1  # test-time votes (rotations/flips) during validation
    eval_max_points: Optional[int] = None  # larger scenes are evaluated in spatial chunks
    progress: bool = True  # tqdm bars and the final table
    find_unused_parameters: bool = False  # DDP: methods with branches unused on some steps


@dataclass
class Config:
    name: str = "run"
    out_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def schema_keys(schema: type, dotted: str) -> list[str]:
    """Valid child names of the section `dotted` ('' = top level) of a dataclass schema."""
    node: Any = schema
    for part in [p for p in dotted.split(".") if p]:
        sub = {f.name: f for f in fields(node)}.get(part)
        if sub is None:
            return []
        node = sub.default_factory() if callable(sub.default_factory) else sub.default  # type: ignore[misc]
        node = type(node)
        if not is_dataclass(node):
            return []
    return [f.name for f in fields(node)]


def _yaml_line(path: Path, dotted: str) -> Optional[int]:
    """1-based line of `dotted` key in the YAML file `path` (None if not found)."""
    try:
        node = yaml.compose(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    line = None
    for part in dotted.split("."):
        if not isinstance(node, yaml.MappingNode):
            return line
        for key_node, value_node in node.value:
            if key_node.value == part:
                line, node = key_node.start_mark.line + 1, value_node
                break
        else:
            return line
    return line


def _explain(err: OmegaConfBaseException, schema: type, where: str, path: Optional[Path]) -> ConfigError:
    key = str(getattr(err, "full_key", "") or getattr(err, "key", "") or "")
    location = where
    if path is not None and key:
        line = _yaml_line(path, key)
        if line is not None:
            location = f"{path}:{line}"
    if isinstance(err, (ConfigKeyError, ConfigAttributeError)):
        parent, _, leaf = key.rpartition(".")
        valid = schema_keys(schema, parent)
        close = difflib.get_close_matches(leaf, valid, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(f'{parent}.{c}' if parent else c) for c in close)}?" if close else ""
        section = f"'{parent}'" if parent else "the top level"
        return ConfigError(f"{location}: unknown config key '{key}'{hint} (valid keys in {section}: {', '.join(valid)})")
    if isinstance(err, ValidationError):
        reason = str(err).splitlines()[0]
        return ConfigError(f"{location}: config key '{key}': {reason}")
    return ConfigError(f"{location}: config key '{key}': {str(err).splitlines()[0]}")


def _merge(base: DictConfig, other: Any, schema: type, where: str, path: Optional[Path]) -> DictConfig:
    try:
        return OmegaConf.merge(base, other)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        raise _explain(err, schema, where, path) from None


def _read_yaml(path: Path, chain: tuple[Path, ...] = ()) -> list[tuple[Path, dict]]:
    """The recipe at `path` and its `base:` ancestors, oldest first."""
    if path.resolve() in chain:
        raise ConfigError(f"{path}: 'base' chain loops back to itself")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections, got {type(data).__name__}")
    base = data.pop("base", None)
    parents = _read_yaml((path.parent / base), chain + (path.resolve(),)) if base else []
    return parents + [(path, data)]


def parse_overrides(overrides: list[str]) -> DictConfig:
    """`["train.epochs=3", ...]` -> a DictConfig; raises ConfigError on malformed items."""
    for item in overrides:
        key, sep, _ = item.partition("=")
        if not sep or not key or key.strip() != key or any(not p for p in key.split(".")):
            raise ConfigError(f"bad override {item!r}: expected dotted.key=value, e.g. train.epochs=3")
    try:
        return OmegaConf.from_dotlist(overrides)
    except OmegaConfBaseException as err:
        raise ConfigError(f"bad override: {str(err).splitlines()[0]}") from None


def load_config(path: Optional[str | Path] = None, overrides: Optional[list[str]] = None) -> DictConfig:
    """Schema defaults <- recipe YAML (with its `base:` chain) <- `overrides`.

    Returns a typed, read-only-structure DictConfig (assigning an unknown key raises).
    """
    cfg = OmegaConf.structured(Config)
    if path is not None:
        try:
            recipe = find_config(str(path))
        except FileNotFoundError as err:
            raise ConfigError(str(err)) from None
        for file, data in _read_yaml(recipe):
            cfg = _merge(cfg, data, Config, str(file), file)
    if overrides:
        cfg = _merge(cfg, parse_overrides(overrides), Config, "command line", None)
    return cfg


def apply_overrides(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """`cfg` with dotted `overrides` merged on top (a new config; `cfg` is left as it was)."""
    return _merge(cfg, parse_overrides(overrides), Config, "command line", None)


def config_to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


def save_config(cfg: DictConfig, path: str | Path) -> None:
    """Write the resolved config (written next to every run and inside every checkpoint)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(config_to_yaml(cfg), encoding="utf-8")


def config_from_dict(data: dict) -> DictConfig:
    """Rebuild a typed config from a plain dict (as stored in a checkpoint)."""
    return _merge(OmegaConf.structured(Config), data, Config, "checkpoint config", None)
