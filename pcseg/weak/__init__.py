"""Weak-label protocols and pseudo-label machinery, modality-agnostic (depends on torch alone)."""
