"""Readers of raw 3D data into scenes (`pcseg.data.contract`): S3DIS, ScanNet v2, users' files.

`READER_VERSION` is stored in every HDF5 store; bump it when a reader's output changes so
stores written by an older reader can be told apart.
"""
from pcseg.data.readers.files import load_scene_file
from pcseg.data.readers.s3dis import load_room
from pcseg.data.readers.scannet import load_scannet_npy, load_scannet_scene

READER_VERSION = "1"

__all__ = ["READER_VERSION", "load_room", "load_scannet_npy", "load_scannet_scene", "load_scene_file"]
