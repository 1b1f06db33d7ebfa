"""pcseg: semantic segmentation of point clouds and images from weak labels."""

__version__ = "0.1.0"
