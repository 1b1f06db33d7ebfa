"""Backbones (MinkUNet family) and heads; image/ holds the 2D networks."""
