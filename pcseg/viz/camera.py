"""Where the virtual camera stands: framing a room from above at an angle, with the ceiling
cut away by geometry (so it works on unlabelled scans too), and the pinhole projection both
renderers share."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Camera:
    """A look-at pinhole camera; `fov_deg` is the vertical field of view.

    eye, center, up: float [3] metres (world frame, z up).
    """

    eye: tuple[float, float, float]
    center: tuple[float, float, float]
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)
    fov_deg: float = 60.0


def below_ceiling(coord: np.ndarray, margin: float = 0.15, min_height: float = 1.5) -> np.ndarray:
    """bool [N]: the points to keep once the ceiling is removed.

    coord: float [N, 3] metres, z up. Drops points above (95th z percentile - margin): in a
    room the ceiling holds well over 5% of the points, so that percentile lies in the ceiling
    slab. Scenes flatter than `min_height` metres are not rooms; everything is kept.
    """
    z = np.asarray(coord)[:, 2]
    if len(z) == 0 or float(z.max() - z.min()) < min_height:
        return np.ones(len(z), dtype=bool)
    return z <= np.percentile(z, 95) - margin


def room_camera(coord: np.ndarray, width: int, height: int, elevation_deg: float = 65.0,
                azimuth_deg: float = -60.0, fov_deg: float = 40.0, fill: float = 0.95) -> Camera:
    """A camera that frames all of `coord` (float [N, 3] metres, z up) from above at an angle.

    elevation: degrees above the horizon; azimuth: degrees from +x of the horizontal viewing
    direction (from the eye towards the room). The camera looks at the bounding box's centre
    from the nearest distance at which the box's corners stay within `fill` of the image's
    half-width and half-height.
    """
    coord = np.asarray(coord, dtype=np.float64)
    if len(coord) == 0:
        raise ValueError("no points to frame (the scene is empty, or nothing is left below its ceiling)")
    lo, hi = coord.min(axis=0), coord.max(axis=0)
    center = (lo + hi) / 2
    radius = max(float(np.linalg.norm(hi - lo)) / 2, 1e-3)
    el, az = np.deg2rad(elevation_deg), np.deg2rad(azimuth_deg)
    # Unit vector from the centre back to the eye.
    back = -np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), -np.sin(el)])
    half_v = np.deg2rad(fov_deg) / 2
    half_h = np.arctan(np.tan(half_v) * width / height)
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])

    def at(distance: float) -> Camera:
        return Camera(eye=tuple(center + distance * back), center=tuple(center), fov_deg=fov_deg)

    def fits(distance: float) -> bool:
        uv, depth = project(corners, at(distance), width, height)
        return bool((depth > 0).all() and (np.abs(uv[:, 0] - width / 2) <= fill * width / 2).all()
                    and (np.abs(uv[:, 1] - height / 2) <= fill * height / 2).all())

    # The bounding sphere fits inside `fill` of the frame from `far`; the corners' projected
    # extent only grows as the camera moves in, so bisect for the nearest distance that fits.
    near, far = 0.0, radius / np.sin(min(half_v, half_h)) / fill
    for _ in range(30):
        middle = (near + far) / 2
        near, far = (near, middle) if fits(middle) else (middle, far)
    return at(far)


def project(coord: np.ndarray, camera: Camera, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel positions and depths of `coord` (float [N, 3]) seen by `camera`.

    Returns (uv float64 [N, 2] pixel (column, row) with (0, 0) the top-left corner of the top-left
    pixel, depth float64 [N] metres along the viewing axis; <= 0 means behind the camera).
    """
    eye, center = np.asarray(camera.eye, np.float64), np.asarray(camera.center, np.float64)
    forward = center - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, np.asarray(camera.up, np.float64))
    norm = np.linalg.norm(right)
    if norm < 1e-9:
        raise ValueError(f"camera up {camera.up} is parallel to the viewing direction {tuple(forward)}")
    right /= norm
    true_up = np.cross(right, forward)
    rel = np.asarray(coord, np.float64) - eye
    x, y, depth = rel @ right, rel @ true_up, rel @ forward
    focal = (height / 2) / np.tan(np.deg2rad(camera.fov_deg) / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = np.stack([width / 2 + focal * x / depth, height / 2 - focal * y / depth], axis=1)
    return uv, depth
