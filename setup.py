"""pcseg: semantic segmentation from weak labels.

The dataset facts (`datasets/*.yaml`) and experiment recipes (`configs/*.yaml`) live at the
top of the repository, and ship inside the wheel as the packages `pcseg._datasets` and
`pcseg._configs`, so an installed pcseg finds them from any working directory.
"""
import re
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (ROOT / "pcseg" / "__init__.py").read_text()).group(1)

setup(
    name="pcseg",
    version=VERSION,
    description="Semantic segmentation of point clouds and images from weak labels",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["pcseg", "pcseg.*"]) + ["pcseg._datasets", "pcseg._configs", "pcseg._ops"],
    package_dir={"pcseg._datasets": "datasets", "pcseg._configs": "configs", "pcseg._ops": "ops"},
    package_data={
        "pcseg._datasets": ["*.yaml", "splits/*.txt"],
        "pcseg._configs": ["*.yaml", "grids/*.yaml"],
        "pcseg._ops": ["*.cpp", "*.cu", "*.h"],
    },
    install_requires=[
        "torch>=2.1",
        "numpy>=1.24",
        "scipy>=1.10",
        "pyyaml>=6",
        "omegaconf>=2.3",
        "tqdm>=4.60",
        "h5py>=3.8",
        "plyfile>=1.0",
        "matplotlib>=3.7",
        "pillow>=9",
        "tensorboard>=2.12",
    ],
    extras_require={
        "viz": ["open3d>=0.17"],
        "las": ["laspy[lazrs]>=2.4"],
        "native": ["ninja>=1.11"],
        "dev": ["pytest>=7", "scikit-learn>=1.2", "open3d>=0.17", "laspy[lazrs]>=2.4", "ninja>=1.11"],
    },
    entry_points={"console_scripts": ["pcseg = pcseg.cli:main"]},
)
