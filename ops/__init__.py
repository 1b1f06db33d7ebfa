"""Sources of pcseg's optional native kernels (shipped as `pcseg._ops`)."""
