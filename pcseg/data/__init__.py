"""Readers, synthetic rooms, scene store, transforms and collate (3D data)."""
