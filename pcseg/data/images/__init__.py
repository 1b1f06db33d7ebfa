"""2D data: image readers (VOC, Cityscapes, CamVid, iSAID, generic folders), synthetic
scenes, tiling, collate (and the flat batches of training), image weak-label protocols, the
weak-labelled `ImageDataset`, and sources / protocols built from a config. See docs/images.md."""
