"""Importing Open3D: lazily, with one clear message when it is missing."""
from __future__ import annotations

import os
import sys
from types import ModuleType

INSTALL_HINT = (
    "Open3D is needed for this: `pip install open3d` (or `pip install pcseg[viz]`); on Debian/Ubuntu "
    "it also needs the packages libusb-1.0-0 libvulkan1 mesa-vulkan-drivers libegl1 libgl1"
)


def import_open3d(headless: bool = False) -> ModuleType:
    """The `open3d` module; ImportError with the install hint when it cannot be imported.

    headless: about to render offscreen. Without a display, Open3D's EGL must be told to use
    the surfaceless platform (Mesa's lavapipe on a CPU-only machine) before it starts.
    """
    if headless and not has_display():
        os.environ.setdefault("EGL_PLATFORM", "surfaceless")
    try:
        import open3d
    except (ImportError, OSError) as err:  # OSError: a missing system library (libGL, libEGL)
        raise ImportError(f"{INSTALL_HINT} ({err})") from err
    open3d.utility.set_verbosity_level(open3d.utility.VerbosityLevel.Error)
    return open3d


def has_display() -> bool:
    """Whether a window can open: on Linux, an X11 or Wayland display is set (elsewhere the
    desktop always has one)."""
    if not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
