"""Dataset facts shipped with pcseg (as `pcseg._datasets`)."""
