"""Sparse tensors and sparse convolution with a MinkowskiEngine-like API.

    coords, inverse, feats, _ = quantize(points, 0.02, feats=colors)
    x = SparseTensor(feats, coords)                      # tensor stride 1
    y = Conv3d(3, 32, kernel_size=3)(x)                  # submanifold: same coordinates
    z = Conv3d(32, 64, kernel_size=2, stride=2)(y)       # tensor stride 2
    up = ConvTranspose3d(64, 32, kernel_size=2, stride=2)(z)   # back onto y's coordinates
    per_point = cat(up, y).slice(inverse)                # [N points, 64]
"""
from pcseg.sparse.conv import Conv3d, ConvTranspose3d
from pcseg.sparse.kernel_map import KernelMap, kernel_offsets
from pcseg.sparse.manager import CoordinateManager
from pcseg.sparse.modules import BatchNorm, LeakyReLU, ReLU, cat
from pcseg.sparse.pooling import AvgPool3d, GlobalAvgPool, GlobalMaxPool, MaxPool3d
from pcseg.sparse.quantize import quantize
from pcseg.sparse.tensor import SparseTensor

__all__ = [
    "AvgPool3d", "BatchNorm", "Conv3d", "ConvTranspose3d", "CoordinateManager", "GlobalAvgPool",
    "GlobalMaxPool", "KernelMap", "LeakyReLU", "MaxPool3d", "ReLU", "SparseTensor", "cat",
    "kernel_offsets", "quantize",
]
