"""A scene source over in-memory scenes, for tests that need the source interface."""
from __future__ import annotations

import numpy as np


class ListSource:
    """The scene-source interface over in-memory scenes (fresh copies on every load)."""

    def __init__(self, scenes: list[dict]):
        self.scenes = {s["name"]: s for s in scenes}

    def names(self) -> list[str]:
        return list(self.scenes)

    def load(self, name: str) -> dict:
        return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in self.scenes[name].items()}
