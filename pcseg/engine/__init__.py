"""Trainer, evaluation/inference and checkpoints."""
