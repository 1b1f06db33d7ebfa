"""Surface colours: material palettes and per-point shading.

Palettes deliberately overlap across classes (white walls, ceilings and boards; wood tables,
doors and bookcases; grey carpets and grey chairs) so that colour alone cannot segment a room.
"""
from __future__ import annotations

import numpy as np

PALETTES: dict[str, np.ndarray] = {
    "paint": np.array([[0.92, 0.92, 0.90], [0.88, 0.86, 0.80], [0.80, 0.81, 0.82], [0.86, 0.81, 0.70],
                       [0.78, 0.84, 0.80], [0.95, 0.95, 0.95]]),
    "floor": np.array([[0.42, 0.42, 0.44], [0.35, 0.38, 0.45], [0.55, 0.45, 0.35], [0.74, 0.71, 0.64],
                       [0.62, 0.48, 0.32], [0.30, 0.30, 0.30]]),
    "wood": np.array([[0.76, 0.60, 0.42], [0.62, 0.44, 0.28], [0.42, 0.28, 0.18], [0.82, 0.72, 0.56]]),
    "laminate": np.array([[0.90, 0.90, 0.88], [0.62, 0.62, 0.62], [0.20, 0.20, 0.21], [0.80, 0.76, 0.68]]),
    "metal": np.array([[0.55, 0.57, 0.60], [0.72, 0.73, 0.74], [0.25, 0.26, 0.28], [0.88, 0.88, 0.88]]),
    "fabric": np.array([[0.15, 0.20, 0.40], [0.60, 0.15, 0.15], [0.45, 0.45, 0.48], [0.25, 0.40, 0.30],
                        [0.12, 0.12, 0.13], [0.55, 0.45, 0.35], [0.80, 0.78, 0.72]]),
    "glass": np.array([[0.55, 0.65, 0.72], [0.35, 0.40, 0.45], [0.80, 0.85, 0.88], [0.50, 0.55, 0.50]]),
    "board": np.array([[0.94, 0.94, 0.94], [0.90, 0.91, 0.92], [0.16, 0.30, 0.22], [0.18, 0.18, 0.20]]),
    "object": np.array([[0.85, 0.20, 0.15], [0.20, 0.45, 0.80], [0.95, 0.80, 0.20], [0.15, 0.15, 0.15],
                        [0.92, 0.92, 0.90], [0.60, 0.45, 0.30], [0.30, 0.60, 0.30], [0.70, 0.70, 0.72]]),
}


def pick(rng: np.random.Generator, *palettes: str) -> np.ndarray:
    """A base colour float64 [3] from one of `palettes`, jittered so no two objects match exactly."""
    palette = PALETTES[palettes[int(rng.integers(len(palettes)))]]
    base = palette[int(rng.integers(len(palette)))]
    return np.clip(base + rng.normal(0.0, 0.025, 3), 0.0, 1.0)


def shade(base: np.ndarray, normal: np.ndarray, light: np.ndarray, exposure: np.ndarray,
          rng: np.random.Generator) -> np.ndarray:
    """Per-point colours float32 [N, 3] in 0..1.

    base: float [N, 3] material colours; normal: float [N, 3] unit normals; light: [3] unit
    direction towards the light; exposure: [3] per-channel gain of the scan (white balance).
    Half-Lambert shading keeps faces turned away from the light (ceilings) visible, as indoor
    scans lit from many lamps are; the noise terms stand for texture and sensor noise.
    """
    lambert = 0.5 + 0.5 * (normal @ light)
    brightness = 0.55 + 0.45 * lambert
    texture = rng.normal(1.0, 0.05, (len(base), 1)) + rng.normal(0.0, 0.015, (len(base), 3))
    color = base * brightness[:, None] * texture * exposure
    return np.clip(color, 0.0, 1.0).astype(np.float32)
