"""2D data: image readers (VOC, Cityscapes, CamVid, iSAID, generic folders), synthetic
scenes, tiling, collate and image weak-label protocols. See docs/images.md."""
