"""Weak-label protocols: which points of each scene (or image) carry a label.

A protocol spec is a short string:

    ratio:R       R * n points per scene, n = points whose ground truth is not IGNORE;
                  the count is max(1, floor(R * n + 0.5)) (round half up), capped at n
    count:C       C points per scene (ScanNet Data-Efficient "LA20/50/100/200"), capped at n
    per-class:C   C points of every class present in the scene (fewer if a class has fewer)
    clicks:C      C points of every object instance (needs `instance`; -1 = no instance)

Only points with a valid ground-truth label (!= IGNORE) can be picked: a "labelled point"
whose label is unknown would teach nothing and would make the ratio a lie.

Sampling is seeded per scene: the generator comes from (seed, sha256(scene name)), so
adding or removing a scene never changes the points chosen in the others.

A `Protocol` is the result: per-scene sorted indices plus the labels found there and a
sha256 checksum of the scene's source labels, so applying it to changed data fails loudly.
This module is modality-agnostic (numpy only): a "scene" here is any dict with `label`
int64 [N] (and `instance` for clicks), e.g. a flattened image.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol as TypingProtocol

import numpy as np

# Same value as pcseg.data.contract.IGNORE; weak/ does not import data/ (DESIGN.md layering).
IGNORE = -1

FORMAT_VERSION = 1

SPEC_FORMS = "ratio:<0..1> (e.g. ratio:0.01), count:<int> (e.g. count:20), per-class:<int> (e.g. per-class:1), clicks:<int> (e.g. clicks:1)"


@dataclass(frozen=True)
class ProtocolSpec:
    """A parsed spec: `kind` in ratio | count | per-class | clicks, `value` its number."""

    kind: str
    value: float

    def __str__(self) -> str:
        if self.kind == "ratio":
            return f"ratio:{self.value:g}"
        return f"{self.kind}:{int(self.value)}"


def parse_spec(spec: str) -> ProtocolSpec:
    """Parse "ratio:0.01" etc.; a malformed spec raises ValueError listing the valid forms."""
    kind, sep, value = str(spec).strip().partition(":")
    problem = None
    if not sep or kind not in ("ratio", "count", "per-class", "clicks"):
        problem = "unknown form"
    elif kind == "ratio":
        try:
            ratio = float(value)
        except ValueError:
            ratio = float("nan")
        if not 0.0 < ratio <= 1.0:
            problem = "the ratio must be a number in (0, 1]"
        else:
            return ProtocolSpec("ratio", ratio)
    else:
        if not value.isdigit() or int(value) < 1:
            problem = f"{kind} needs a whole number >= 1"
        else:
            return ProtocolSpec(kind, int(value))
    raise ValueError(f"bad weak-label protocol {spec!r} ({problem}); valid forms: {SPEC_FORMS}")


def labels_checksum(label: np.ndarray) -> str:
    """sha256 hex digest of the labels as contiguous little-endian int64 (any int dtype in)."""
    data = np.ascontiguousarray(np.asarray(label).astype("<i8", copy=False))
    return hashlib.sha256(data.tobytes()).hexdigest()


def scene_generator(seed: int, name: str) -> np.random.Generator:
    """The sampling generator of one scene: independent of every other scene's name."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    words = [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *words])


def _ratio_count(ratio: float, n: int) -> int:
    if n == 0:
        return 0
    return min(n, max(1, int(np.floor(ratio * n + 0.5))))


def _pick_per_group(groups: np.ndarray, candidates: np.ndarray, count: int,
                    rng: np.random.Generator) -> np.ndarray:
    """Up to `count` random members of `candidates` for each distinct value of `groups`."""
    chosen = []
    for g in np.unique(groups):
        members = candidates[groups == g]
        chosen.append(rng.choice(members, size=min(count, len(members)), replace=False))
    return np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)


def sample_indices(spec: ProtocolSpec, label: np.ndarray, rng: np.random.Generator,
                   instance: np.ndarray | None = None, name: str = "scene") -> np.ndarray:
    """Labelled point indices of one scene under `spec`.

    label: int [N] ground truth (IGNORE = -1 never picked); instance: int [N] (-1 = none),
    required by clicks. Returns int64 [L], sorted, unique.
    """
    label = np.asarray(label)
    valid = np.flatnonzero(label != IGNORE)
    if spec.kind == "ratio":
        chosen = rng.choice(valid, size=_ratio_count(spec.value, len(valid)), replace=False)
    elif spec.kind == "count":
        chosen = rng.choice(valid, size=min(int(spec.value), len(valid)), replace=False)
    elif spec.kind == "per-class":
        chosen = _pick_per_group(label[valid], valid, int(spec.value), rng)
    elif spec.kind == "clicks":
        if instance is None:
            raise ValueError(f"{name}: protocol {spec} needs per-point 'instance' ids, the scene has none")
        instance = np.asarray(instance)
        if len(instance) != len(label):
            raise ValueError(f"{name}: 'instance' has {len(instance)} rows, 'label' has {len(label)}")
        in_object = valid[instance[valid] >= 0]
        chosen = _pick_per_group(instance[in_object], in_object, int(spec.value), rng)
    else:
        raise ValueError(f"unknown protocol kind {spec.kind!r}; valid forms: {SPEC_FORMS}")
    return np.sort(np.asarray(chosen, dtype=np.int64))


@dataclass(frozen=True)
class SceneEntry:
    """One scene of a protocol: indices int64 [L] sorted, labels int64 [L] (ground truth
    there when the protocol was made), num_points of the scene, checksum of its labels."""

    indices: np.ndarray
    labels: np.ndarray
    num_points: int
    checksum: str


@dataclass(frozen=True)
class Protocol:
    """Labelled points of every scene of a dataset split.

    spec: the spec string ("ratio:0.01", or "import:points20" for imported files);
    seed: sampling seed (None for imports); source: identity of the data it was made from
    (store path / "synthetic:<rooms>:<seed>:<points>"); scenes: name -> SceneEntry.
    """

    spec: str
    seed: int | None
    source: str
    scenes: dict[str, SceneEntry]
    dataset: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    path: str | None = None  # the file it was read from, for error messages

    def labelled_classes(self, name: str) -> set[int]:
        """Classes with at least one labelled point in scene `name`."""
        labels = self.entry(name).labels
        return set(int(c) for c in np.unique(labels[labels != IGNORE]))

    def entry(self, name: str) -> SceneEntry:
        if name not in self.scenes:
            where = f"protocol file {self.path}" if self.path else f"protocol {self.spec}"
            raise KeyError(f"scene {name!r} is not in {where} (made from {self.source}, "
                           f"{len(self.scenes)} scenes)")
        return self.scenes[name]


class SceneSource(TypingProtocol):
    """Anything serving scenes (pcseg.data.store.SceneStore, SyntheticRoomSource, ...)."""

    def names(self) -> list[str]: ...

    def load(self, name: str) -> dict[str, Any]: ...


def make_entry(indices: np.ndarray, label: np.ndarray) -> SceneEntry:
    indices = np.asarray(indices, dtype=np.int64)
    return SceneEntry(indices=indices, labels=np.asarray(label, dtype=np.int64)[indices],
                      num_points=int(len(label)), checksum=labels_checksum(label))


def make_protocol(spec: str | ProtocolSpec, scenes: Iterable[tuple[str, dict[str, Any]]], seed: int,
                  source: str, dataset: str | None = None) -> Protocol:
    """Sample `spec` on every (name, scene) pair; scenes need `label` (and `instance` for clicks)."""
    parsed = spec if isinstance(spec, ProtocolSpec) else parse_spec(spec)
    entries = {}
    for name, scene in scenes:
        if "label" not in scene:
            raise ValueError(f"{name}: has no 'label'; a protocol is sampled from ground-truth labels")
        idx = sample_indices(parsed, scene["label"], scene_generator(seed, name),
                             scene.get("instance"), name=name)
        entries[name] = make_entry(idx, scene["label"])
    return Protocol(spec=str(parsed), seed=int(seed), source=source, scenes=entries, dataset=dataset)


def iter_source(source: SceneSource, progress: bool = False) -> Iterable[tuple[str, dict[str, Any]]]:
    """(name, scene) for every scene of `source`, with a tqdm bar if `progress`."""
    names = source.names()
    if progress:
        from tqdm import tqdm
        names = tqdm(names, desc="scenes", unit="scene")
    for name in names:
        yield name, source.load(name)


def apply_protocol(scene: dict[str, Any], protocol: Protocol, name: str | None = None) -> dict[str, Any]:
    """A new scene whose `weak_label` is `label` on the protocol's points, IGNORE elsewhere.

    The dense `label` is kept (evaluation only). Raises ValueError naming the scene when its
    labels differ from those the protocol was made from (checksum or point count).
    """
    if name is None:
        if "name" not in scene:
            raise ValueError("apply_protocol: the scene has no 'name'; pass name= to say which protocol entry applies")
        name = str(scene["name"])
    entry = protocol.entry(name)
    label = np.asarray(scene["label"])
    where = f"protocol file {protocol.path}" if protocol.path else f"protocol {protocol.spec}"
    if len(label) != entry.num_points or labels_checksum(label) != entry.checksum:
        raise ValueError(
            f"scene {name!r}: its labels changed since {where} was made from {protocol.source} "
            f"({len(label)} points now, {entry.num_points} then; label checksum differs); "
            "remake the protocol with `pcseg weak-labels make`"
        )
    weak = np.full(len(label), IGNORE, dtype=np.int64)
    weak[entry.indices] = label[entry.indices]
    out = dict(scene)
    out["weak_label"] = weak
    return out
