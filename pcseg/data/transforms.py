"""Scene augmentations and sampling: `transform(scene, rng) -> new scene`.

Every transform is a frozen dataclass called with an explicit `np.random.Generator`; it
returns a new scene and never modifies its input. Transforms that drop points index every
per-point key (`pcseg.data.contract.index_scene`), so `label`, `weak_label`, `instance`,
`normal`, ... stay aligned with `coord`. Geometric transforms also move `normal`.
Colours are float 0..1 (the Pointcept originals work in 0..255; constants are rescaled).

Build a pipeline from config data with `build_transforms([{"name": "random_rotate"}, ...])`;
`TRANSFORMS` lists the names.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable, Sequence

import numpy as np

from pcseg.data.contract import IGNORE, Scene, index_scene, num_points

Transform = Callable[[Scene, np.random.Generator], Scene]


def _rotation(axis: str, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _with_linear_map(scene: Scene, matrix: np.ndarray) -> Scene:
    """coord -> matrix @ (coord - centre) + centre; normals by the inverse transpose."""
    out = dict(scene)
    coord = scene["coord"].astype(np.float64)
    centre = (coord.min(0) + coord.max(0)) / 2 if len(coord) else np.zeros(3)
    out["coord"] = ((coord - centre) @ matrix.T + centre).astype(np.float32)
    if "normal" in scene:
        normal = scene["normal"].astype(np.float64) @ np.linalg.inv(matrix)
        length = np.linalg.norm(normal, axis=1, keepdims=True)
        out["normal"] = (normal / np.maximum(length, 1e-12)).astype(np.float32)
    return out


@dataclass(frozen=True)
class RandomRotate:
    """Rotate about the scene's bounding-box centre: uniform angle about z, plus small
    tilts about x and y (radians, uniform in ±tilt)."""

    max_angle: float = np.pi
    tilt: float = np.pi / 64

    def __call__(self, scene: Scene, rng: np.random.Generator) -> Scene:
        rz = _rotation("z", rng.uniform(-self.max_angle, self.max_angle))
        rx = _rotation("x", rng.uniform(-self.tilt, self.tilt))
        ry = _rotation("y", rng.uniform(-self.tilt, self.tilt))
        return _with_linear_map(scene, rz @ ry @ rx)


@dataclass(frozen=True)
class RandomScale:
    """Scale by a factor uniform in [low, high], one per axis if `anisotropic`."""

    low: float = 0.9
    high: float = 1.1
    anisotropic: bool = False

    def __call__(self, scene: Scene, rng: np.random.Generator) -> Scene:
        factor = rng.uniform(self.low, self.high, size=3 if self.anisotropic else 1)
        return _with_linear_map(scene, np.diag(np.broadcast_to(factor, (3,))))


@dataclass(frozen=True)
class RandomFlip:
    """Mirror x and y, each with probability p (z is up and never flipped)."""

    p: float = 0.5

    def __call__(self, scene: Scene, rng: np.random.Generator) -> Scene:
        signs = np.where(rng.random(2) < self.p, -1.0, 1.0)
        return _with_linear_map(scene, np.diag([signs[0], signs[1], 1.0]))


@dataclass(frozen=True)
class RandomJitter:
    """Add N(0, sigma) noise clipped to ±clip (metres) to every coordinate."""

    sigma: float = 0.005
    clip: float = 0.02

    def __call__(self, scene: Scene, rng: np.random.Generator) -> Scene:
        noise = np.clip(rng.normal(0.0, self.sigma, size=scene["coord"].shape), -self.clip, self.clip)
        return {**scene, "coord": (scene["coord"] + noise).astype(np.float32)}


def _box_blur3(grid: np.ndarray, axis: int) -> np.ndarray:
    """Mean over 3 neighbours along `axis`, zero outside the grid (as the reference's
    scipy.ndimage.convolve(mode="constant", cval=0))."""
    pad = [(0, 0)] * 3
    pad[axis] = (1, 1)
    padded = np.pad(grid, pad + [(0, 0)])
    n = grid.shape[axis]
    return (np.take(padded, range(0, n), axis) + np.take(padded, range(1, n + 1), axis)
            + np.take(padded, range(2, n + 2), axis)) / 3


def _trilinear(grid: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Sample grid [X, Y, Z, 3] at fractional cell positions pos [N, 3] (clamped inside)."""
    size = np.array(grid.shape[:3])
    pos = np.clip(pos, 0, size - 1 - 1e-9)
    base = np.floor(pos).astype(np.int64)
    frac = pos - base
    out = np.zeros((len(pos), grid.shape[3]))
    for corner in np.ndindex(2, 2, 2):
        c = np.array(corner)
        idx = np.minimum(base + c, size - 1)
        weight = np.prod(np.where(c == 1, frac, 1 - frac), axis=1)
        out += weight[:, None] * grid[idx[:, 0], idx[:, 1], idx[:, 2]]
    return out


@dataclass(frozen=True)
class ElasticDistortion:
    """MinkowskiEngine/Pointcept elastic distortion: for each (granularity, magnitude),
    Gaussian noise on a coarse grid of cell `granularity` metres, box-blurred three times
    along each axis, interpolated trilinearly at every point and added times `magnitude`.
    Normals are left as they are (the distortion is small and smooth)."""

    params: tuple[tuple[float, float], ...] = ((0.2, 0.4), (0.8, 1.6))
    p: float = 0.95

    def __call__(self, scene: Scene, rng: np.random.Generator) -> Scene:
        if rng.random() >= self.p or num_points(scene) == 0:
            return dict(scene)
        coord = scene["coord"].astype(np.float64)
        for granularity, magnitude in self.params:
            lo = coord.min(0)
            shape = ((coord - lo).max(0) // granularity).astype(int) + 3
            noise = rng.standard_normal((*shape, 3))
            for _ in range(2):
                for axis in range(3):
                    noise = _box_blur3(noise, axis)
            # the reference grid starts one cell below the minimum
            pos = (coord - lo) / granularity + 1
            coord = coord + _trilinear(noise, pos) * magnitude
        return {**scene, "coord": coord.astype(np.float32)}


@dataclass(frozen=True)
class ChromaticAutoContrast:
    """Stretch each colour channel to 0..1, blended with the original by a random factor."""

    p: float = 0.2
    blend_factor: float | None = None

    def __call__(self, scene: Scene, rng: np.random.Generator) -> Scene:
        if rng.random() >= self.p or num_points(scene) == 0:
            return dict(scene)
        color = scene["color"]
        lo, hi = color.min(0, keepdims=True), color.max(0, keepdims=True)
        contrast = (color - lo) / np.maximum(hi - lo, 1e-6)
        blend = rng.random() if self.blend_factor is None else self.blend_factor
        return {**scene, "color": ((1 - blend) * color + blend * contrast).astype(np.float32)}


@dataclass(frozen=True)
class ChromaticTranslation:
    """Shift all colours by one random offset in ±ratio (of the 0..1 range), clipped."""

    p: float = 0.95
    ratio: float = 0.05

    def __call__(self, scene: Scene, rng: np.random.Generator) -> Scene:
        if rng.random() >= self.p:
            return dict(scene)
        shift = (rng.random(3) - 0.5) * 2 * self.ratio
        return {**scene, "color": np.clip(scene["color"] + shift, 0, 1).astype(np.float32)}


@dataclass(frozen=True)
class ChromaticJitter:
    """Per-point Gaussian colour noise (std in 0..1 units), clipped."""

    p: float = 0.95
    std: float = 0.005

    def __call__(self, scene: Scene, rng: np.random.Generator) -> Scene:
        if rng.random() >= self.p:
            return dict(scene)
        noise = rng.normal(0.0, self.std, size=scene["color"].shape)
        return {**scene, "color": np.clip(scene["color"] + noise, 0, 1).astype(np.float32)}


@dataclass(frozen=True)
class RandomCrop:
    """Keep at most `max_points`: the nearest ones to a centre point, by 3D distance
    (`shape="sphere"`) or horizontal Chebyshev distance (`"box"`, full-height column).

    The centre is a random point with a weak label (`weak_label` != IGNORE) when any exist,
    so a crop never loses every labelled point; otherwise a random point. Point order is kept.
    """

    max_points: int = 200000
    shape: str = "sphere"

    def __post_init__(self) -> None:
        if self.shape not in ("sphere", "box"):
            raise ValueError(f"RandomCrop shape {self.shape!r}: expected 'sphere' or 'box'")
        if self.max_points < 1:
            raise ValueError(f"RandomCrop max_points {self.max_points}: expected >= 1")

    def __call__(self, scene: Scene, rng: np.random.Generator) -> Scene:
        n = num_points(scene)
        if n <= self.max_points:
            return dict(scene)
        labelled = np.flatnonzero(scene["weak_label"] != IGNORE) if "weak_label" in scene else np.zeros(0)
        centre = int(rng.choice(labelled)) if len(labelled) else int(rng.integers(n))
        delta = scene["coord"] - scene["coord"][centre]
        if self.shape == "sphere":
            dist = np.einsum("ij,ij->i", delta, delta)
        else:
            dist = np.abs(delta[:, :2]).max(1)
        dist[centre] = -1.0  # duplicates at distance 0 must not push the centre out
        keep = np.sort(np.argpartition(dist, self.max_points - 1)[: self.max_points])
        return index_scene(scene, keep)


def grid_sample_index(coord: np.ndarray, grid_size: float, rng: np.random.Generator | None = None,
                      prefer: np.ndarray | None = None) -> np.ndarray:
    """One point index per occupied voxel of edge `grid_size`, int64 [M] sorted.

    rng None: the first point (in input order) of each voxel; else a random one.
    prefer: bool [N]; a voxel holding preferred points picks among those.
    """
    keys = np.floor((coord - coord.min(0)) / grid_size).astype(np.int64)
    dims = keys.max(0) + 1
    # one int64 per voxel: 1-D unique is several times faster than unique over rows
    flat = (keys[:, 0] * dims[1] + keys[:, 1]) * dims[2] + keys[:, 2]
    _, voxel = np.unique(flat, return_inverse=True)
    tiebreak = rng.random(len(coord)) if rng is not None else np.arange(len(coord))
    first = ~prefer if prefer is not None else np.zeros(len(coord), dtype=bool)
    order = np.lexsort((tiebreak, first, voxel))
    starts = np.flatnonzero(np.r_[True, voxel[order][1:] != voxel[order][:-1]])
    return np.sort(order[starts]).astype(np.int64)


@dataclass(frozen=True)
class GridSample:
    """Keep one point per voxel of `grid_size` metres: random in training, the first point
    otherwise. With `prefer_labelled`, a voxel holding weak-labelled points keeps one of
    them, so voxelization does not throw away the scarce supervision."""

    grid_size: float = 0.02
    train: bool = True
    prefer_labelled: bool = True

    def __call__(self, scene: Scene, rng: np.random.Generator) -> Scene:
        if num_points(scene) == 0:
            return dict(scene)
        prefer = None
        if self.prefer_labelled and "weak_label" in scene:
            prefer = scene["weak_label"] != IGNORE
        keep = grid_sample_index(scene["coord"], self.grid_size, rng if self.train else None, prefer)
        return index_scene(scene, keep)


@dataclass(frozen=True)
class CenterShift:
    """Move the scene so its horizontal bounding-box centre is at x = y = 0 and its lowest
    point at z = 0 (voxel coordinates stay small; height becomes meaningful)."""

    def __call__(self, scene: Scene, rng: np.random.Generator) -> Scene:
        coord = scene["coord"]
        if len(coord) == 0:
            return dict(scene)
        lo, hi = coord.min(0), coord.max(0)
        shift = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]], dtype=np.float32)
        return {**scene, "coord": (coord - shift).astype(np.float32)}


class Compose:
    """Apply transforms in order, all drawing from the same generator."""

    def __init__(self, transforms: Sequence[Transform]):
        self.transforms = list(transforms)

    def __call__(self, scene: Scene, rng: np.random.Generator) -> Scene:
        for t in self.transforms:
            scene = t(scene, rng)
        return scene

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


TRANSFORMS: dict[str, type] = {
    "random_rotate": RandomRotate,
    "random_scale": RandomScale,
    "random_flip": RandomFlip,
    "random_jitter": RandomJitter,
    "elastic_distortion": ElasticDistortion,
    "chromatic_auto_contrast": ChromaticAutoContrast,
    "chromatic_translation": ChromaticTranslation,
    "chromatic_jitter": ChromaticJitter,
    "random_crop": RandomCrop,
    "grid_sample": GridSample,
    "center_shift": CenterShift,
}


def build_transform(item: str | dict[str, Any], where: str = "transforms") -> Transform:
    """One transform from a name or a `{"name": ..., <params>}` mapping."""
    params = dict(item) if isinstance(item, dict) else {"name": item}
    name = params.pop("name", None)
    if name not in TRANSFORMS:
        raise ValueError(f"{where}: unknown transform {name!r}; valid: {', '.join(TRANSFORMS)}")
    cls = TRANSFORMS[name]
    valid = [f.name for f in fields(cls)]
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(f"{where}: transform {name!r} has no parameter {', '.join(unknown)}; "
                         f"valid: {', '.join(valid) or '(none)'}")
    if "params" in params:
        params["params"] = tuple(tuple(p) for p in params["params"])
    return cls(**params)


def build_transforms(items: Sequence[str | dict[str, Any]]) -> Compose:
    """A `Compose` from config data, e.g. `["random_rotate", {"name": "random_crop", "max_points": 80000}]`."""
    return Compose([build_transform(item, f"transforms[{i}]") for i, item in enumerate(items)])


def train_transforms(max_points: int, grid_size: float | None = None) -> Compose:
    """The default training recipe (Pointcept's indoor semseg augmentations)."""
    steps: list[Transform] = [
        CenterShift(), RandomRotate(), RandomScale(), RandomFlip(), RandomJitter(),
        ElasticDistortion(), ChromaticAutoContrast(), ChromaticTranslation(), ChromaticJitter(),
    ]
    if grid_size is not None:
        steps.append(GridSample(grid_size, train=True))
    steps += [RandomCrop(max_points), CenterShift()]
    return Compose(steps)


def eval_transforms() -> Compose:
    """Evaluation: only centring (metrics are computed on every original point)."""
    return Compose([CenterShift()])
