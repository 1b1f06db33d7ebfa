"""Training methods: each an nn.Module whose forward(batch) returns a dict with `loss`."""
