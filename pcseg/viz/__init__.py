"""Colours, Open3D viewer, headless rendering and plots."""
