"""Experiment recipes shipped with pcseg (as `pcseg._configs`)."""
