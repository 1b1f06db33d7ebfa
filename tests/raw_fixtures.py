"""Format-exact raw-data fixtures (S3DIS text rooms, ScanNet v2 scene folders) for the
reader, store and prepare tests. Each writer returns what its files must load to."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from plyfile import PlyData, PlyElement


def s3dis_lines(points: np.ndarray) -> bytes:
    """`x y z r g b` lines as the S3DIS release writes them (3 decimals, integer colours)."""
    return b"".join(b"%.3f %.3f %.3f %d %d %d\n" % tuple(row) for row in points.tolist())


def write_s3dis_room(root: Path, area: int, room: str, files: dict[str, bytes]) -> Path:
    annotations = root / f"Area_{area}" / room / "Annotations"
    annotations.mkdir(parents=True)
    for name, data in files.items():
        (annotations / name).write_bytes(data)
    return annotations.parent


def s3dis_defect_room(root: Path, area: int = 5, room: str = "hallway_6") -> dict:
    """A room with the real release's defects: a NUL byte between two colour values, a
    duplicate `wall_3 (1).txt`, a `stairs` file (-> clutter) and CRLF line endings.

    Returns the expected coord [N,3], color 0-255 [N,3], label [N], instance [N]."""
    ceiling = np.array([[0.5, 1.25, 3.0, 185, 187, 190], [1.0, 1.5, 3.0, 10, 20, 30],
                        [1.5, 2.0, 3.0, 0, 0, 0]])
    chair = np.array([[2.0, 2.0, 0.5, 255, 0, 0], [2.125, 2.0, 0.5, 250, 5, 5]])
    stairs = np.array([[3.0, 0.25, 0.125, 7, 8, 9]])
    wall = np.array([[0.0, 0.0, 1.0, 100, 100, 100], [0.0, 4.0, 2.0, 110, 120, 130]])
    ceiling_bytes = s3dis_lines(ceiling).replace(b"185 187", b"185\x00187")
    write_s3dis_room(root, area, room, {
        "ceiling_1.txt": ceiling_bytes,
        "chair_1.txt": s3dis_lines(chair).replace(b"\n", b"\r\n"),
        "stairs_1.txt": s3dis_lines(stairs),
        "wall_3.txt": s3dis_lines(wall),
        "wall_3 (1).txt": s3dis_lines(wall),
    })
    # sorted file order: ceiling_1, chair_1, stairs_1, wall_3 (its copy skipped)
    points = np.concatenate([ceiling, chair, stairs, wall])
    return {
        "coord": points[:, :3],
        "color": points[:, 3:],
        "label": np.array([0, 0, 0, 8, 8, 12, 2, 2]),
        "instance": np.array([0, 0, 0, 1, 1, 2, 3, 3]),
    }


def s3dis_random_room(root: Path, area: int, room: str, rng: np.random.Generator,
                      objects: int = 4, lines: int = 50) -> np.ndarray:
    """A room of random objects; returns its points [N, 6] in load order."""
    classes = ["ceiling", "floor", "wall", "chair", "table", "clutter"]
    files, parts = {}, []
    for k in range(objects):
        points = np.concatenate([np.round(rng.uniform(-5, 5, (lines, 3)), 3),
                                 rng.integers(0, 256, (lines, 3))], axis=1)
        files[f"{classes[k % len(classes)]}_{k + 1}.txt"] = s3dis_lines(points)
    for name in sorted(files):
        parts.append(np.array([line.split() for line in files[name].decode().splitlines()], dtype=float))
    write_s3dis_room(root, area, room, files)
    return np.concatenate(parts)


def write_scannet_scene(folder: Path, name: str, xyz: np.ndarray, rgb: np.ndarray, nyu40: np.ndarray | None,
                        seg_indices: np.ndarray | None, groups: list[dict] | None,
                        axis_alignment: np.ndarray | None) -> Path:
    """One raw ScanNet v2 scene folder (binary PLYs, json, txt) as the release lays it out."""
    scene = folder / name
    scene.mkdir(parents=True)
    n = len(xyz)
    vertex = np.empty(n, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"),
                                ("blue", "u1"), ("alpha", "u1")])
    vertex["x"], vertex["y"], vertex["z"] = xyz.T
    vertex["red"], vertex["green"], vertex["blue"] = rgb.T
    vertex["alpha"] = 255
    faces = np.array([([0, 1, 2],)], dtype=[("vertex_indices", "i4", (3,))])
    PlyData([PlyElement.describe(vertex, "vertex"), PlyElement.describe(faces, "face")],
            byte_order="<").write(str(scene / f"{name}_vh_clean_2.ply"))
    if nyu40 is not None:
        labelled = np.empty(n, dtype=vertex.dtype.descr + [("label", "u2")])
        for field in vertex.dtype.names:
            labelled[field] = vertex[field]
        labelled["label"] = nyu40
        PlyData([PlyElement.describe(labelled, "vertex"), PlyElement.describe(faces, "face")],
                byte_order="<").write(str(scene / f"{name}_vh_clean_2.labels.ply"))
    if seg_indices is not None:
        (scene / f"{name}_vh_clean_2.0.010000.segs.json").write_text(
            json.dumps({"params": {"segMinVerts": 20}, "sceneId": name, "segIndices": seg_indices.tolist()}))
    if groups is not None:
        (scene / f"{name}.aggregation.json").write_text(json.dumps({"sceneId": f"scannet.{name}", "segGroups": groups}))
    meta = f"colorHeight = 968\nsceneType = Bedroom / Hotel\n"
    if axis_alignment is not None:
        meta = f"axisAlignment = {' '.join(f'{v:g}' for v in axis_alignment.ravel())}\n" + meta
    (scene / f"{name}.txt").write_text(meta)
    return scene


TSV_HEADER = ("id\traw_category\tcategory\tcount\tnyu40id\teigen13id\tnyuClass\tnyu40class\teigen13class\t"
              "ModelNet40\tModelNet10\tShapeNetCore55\tsynsetoffset\twnsynsetid\twnsynsetkey\tmpcat40\tmpcat40index")


def write_tsv(path: Path, rows: list[tuple[str, int]]) -> None:
    """A scannetv2-labels.combined.tsv with the official header (CRLF, as ScanNet ships it)."""
    lines = [TSV_HEADER] + [f"{i + 1}\t{raw}\t{raw}\t1\t{nyu}\t1\t{raw}\t{raw}\t{raw}\t\t\t\t\t\t\t{raw}\t1"
                            for i, (raw, nyu) in enumerate(rows)]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
