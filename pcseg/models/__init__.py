"""Backbones (MinkUNet family) and heads; image/ holds the 2D networks."""
from pcseg.models.backbones import BACKBONES, build_backbone
from pcseg.models.segmentor import Segmentor

__all__ = ["BACKBONES", "Segmentor", "build_backbone"]
