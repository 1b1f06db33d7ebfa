"""Sparse tensors and sparse convolution with a MinkowskiEngine-like API."""
