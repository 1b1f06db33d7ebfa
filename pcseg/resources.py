"""Where the files that ship with pcseg live: dataset YAMLs and experiment configs.

They sit at the repository's top (`datasets/`, `configs/`) and are installed as the packages
`pcseg._datasets` / `pcseg._configs`, so both a checkout and a wheel find them.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path


def _package_dir(package: str) -> Path:
    return Path(str(resources.files(package)))


def datasets_dir() -> Path:
    """Folder holding `<dataset>.yaml` files (and `splits/`)."""
    return _package_dir("pcseg._datasets")


def configs_dir() -> Path:
    """Folder holding the shipped experiment recipes `configs/*.yaml`."""
    return _package_dir("pcseg._configs")


def ops_dir() -> Path:
    """Folder holding the C++/CUDA sources of the optional native kernels."""
    return _package_dir("pcseg._ops")


def find_config(name_or_path: str) -> Path:
    """A config given as a path, or as the name of a shipped recipe (`synthetic_demo`).

    Raises FileNotFoundError listing the shipped recipes when neither exists.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = configs_dir() / (path.name if path.suffix == ".yaml" else f"{path.name}.yaml")
    if shipped.is_file():
        return shipped
    names = sorted(p.stem for p in configs_dir().glob("*.yaml"))
    raise FileNotFoundError(f"config {name_or_path!r} not found; shipped recipes: {', '.join(names)}")


def find_grid(name_or_path: str) -> Path:
    """A results grid given as a path, or as the name of a shipped grid (`configs/grids/<name>.yaml`)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    grids = configs_dir() / "grids"
    shipped = grids / (path.name if path.suffix == ".yaml" else f"{path.name}.yaml")
    if shipped.is_file():
        return shipped
    names = sorted(p.stem for p in grids.glob("*.yaml"))
    raise FileNotFoundError(f"grid {name_or_path!r} not found; shipped grids: {', '.join(names) or '(none)'}")
