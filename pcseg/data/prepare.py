"""`pcseg prepare {s3dis,scannet,files} RAW OUT.h5`: raw data -> one HDF5 scene store.

Scenes are read in parallel worker processes and written by this process alone (HDF5 has
one writer). The store is built as `OUT.h5.partial` and renamed to `OUT.h5` only once every
scene is in it, so a killed run is resumed by running the same command again: complete
scenes are kept, a half-written one is dropped and redone. A scene that fails is reported
and the others go on; the run then exits 1 and leaves the `.partial` file.

`PCSEG_PREPARE_PAUSE_AFTER=<n>` (a testing hook) makes the run print `paused after <n>
scenes` to stderr once it has written n scenes and then wait to be killed, so a test can
kill it at a known point.
"""
from __future__ import annotations

import argparse
import glob
import itertools
import os
import re
import sys
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from tqdm import tqdm

from pcseg.data.contract import Scene
from pcseg.data.meta import load_dataset_meta
from pcseg.data.readers import READER_VERSION, load_room, load_scannet_npy, load_scannet_scene, load_scene_file
from pcseg.data.readers import s3dis, scannet
from pcseg.data.readers.files import SUFFIXES
from pcseg.data.store import complete_scenes, open_for_writing, sha256_files, write_scene

_SCANNET_SCENE = re.compile(r"^scene\d{4}_\d{2}$")


@dataclass(frozen=True)
class SceneJob:
    """One scene to read: `kind` picks the reader, `source` is its folder or file."""

    name: str
    split: str
    kind: str  # s3dis | scannet | scannet_npy | file
    source: str
    files: tuple[str, ...]  # raw files, hashed into the scene's checksum
    options: tuple[tuple[str, str], ...] = ()


@dataclass
class JobResult:
    job: SceneJob
    scene: Optional[Scene]
    checksum: str
    warnings: list[str]
    error: Optional[str]


def _s3dis_jobs(raw: Path) -> list[SceneJob]:
    return [SceneJob(s3dis.scene_name(room), room.parent.name, "s3dis", str(room),
                     tuple(str(f) for f in sorted((room / "Annotations").glob("*.txt"))))
            for room in s3dis.find_rooms(raw)]


def _scannet_jobs(raw: Path) -> list[SceneJob]:
    splits = scannet.split_of_scenes()
    npy = sorted(p.name[: -len("_vert_all.npy")] for p in raw.glob("*_vert_all.npy"))
    jobs = []
    for scene in npy:
        files = tuple(str(p) for p in scannet.npy_scene_files(raw, scene).values())
        jobs.append(SceneJob(scene, splits.get(scene, "other"), "scannet_npy", str(raw), files))
    folders = [p for pattern in ("scans/*", "scans_test/*", "*") for p in sorted(raw.glob(pattern))
               if p.is_dir() and _SCANNET_SCENE.match(p.name)]
    tsv = raw / scannet.TSV_NAME
    options = (("tsv", str(tsv)),) if tsv.is_file() else ()
    for folder in folders:
        files = tuple(str(p) for p in scannet.scene_files(folder).values())
        jobs.append(SceneJob(folder.name, splits.get(folder.name, "other"), "scannet", str(folder), files, options))
    if not jobs:
        raise FileNotFoundError(f"{raw}: no ScanNet scenes found (expected scans/sceneXXXX_XX/ folders "
                                f"or sceneXXXX_XX_vert_all.npy files)")
    names = [j.name for j in jobs]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"{raw}: scenes found twice (npy and raw folders?): {', '.join(duplicated)}")
    return jobs


def _file_jobs(raw: str, classes: Optional[str]) -> list[SceneJob]:
    root = Path(raw)
    folder = root.is_dir()
    if folder:
        paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    else:
        paths = sorted(Path(p) for p in glob.glob(raw, recursive=True) if Path(p).suffix.lower() in SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"{raw}: no scene files ({' '.join(SUFFIXES)})")
    stems = [p.stem for p in paths]
    duplicated = sorted({s for s in stems if stems.count(s) > 1})
    if duplicated:
        raise ValueError(f"{raw}: several files are named {duplicated[0]!r}; scene names must be unique")
    options = (("classes", classes),) if classes else ()
    jobs = []
    for path in paths:
        # a file inside a first-level subfolder (RAW/train/x.ply) belongs to that split
        parts = path.relative_to(root).parts if folder else (path.name,)
        jobs.append(SceneJob(path.stem, parts[0] if len(parts) > 1 else "all", "file", str(path),
                             (str(path),), options))
    return jobs


def _load(job: SceneJob) -> Scene:
    options = dict(job.options)
    if job.kind == "s3dis":
        return load_room(job.source)
    if job.kind == "scannet":
        return load_scannet_scene(job.source, tsv=options.get("tsv"))
    if job.kind == "scannet_npy":
        return load_scannet_npy(job.source, job.name)
    return load_scene_file(job.source, classes=options.get("classes"))


def run_job(job: SceneJob) -> JobResult:
    """Read one scene (in a worker process); errors come back as text, never raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            scene, error = _load(job), None
            checksum = sha256_files(job.files)
        except Exception as err:  # noqa: BLE001 - one bad scene must not stop the others
            scene, checksum, error = None, "", f"{type(err).__name__}: {err}"
    return JobResult(job, scene, checksum, [str(w.message) for w in caught], error)


def _results(jobs: list[SceneJob], workers: int) -> Iterator[JobResult]:
    if workers <= 1:
        for job in jobs:
            yield run_job(job)
        return
    # a bounded number of scenes in flight: finished scenes wait in memory for the writer
    pending = iter(jobs)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        running: set[Future] = {pool.submit(run_job, job) for job in itertools.islice(pending, 2 * workers)}
        while running:
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                yield future.result()
                job = next(pending, None)
                if job is not None:
                    running.add(pool.submit(run_job, job))


def _dataset_facts(args: argparse.Namespace) -> tuple[str, list[str]]:
    if args.kind == "files":
        if args.classes is None:
            return "files", []
        meta = load_dataset_meta(args.classes)
        return meta.name, list(meta.class_names)
    meta = load_dataset_meta(args.kind)
    return meta.name, list(meta.class_names)


def _size(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} GiB"


def _summary(written: list[tuple[SceneJob, int]], skipped: int, failed: list[JobResult], seconds: float,
             store_path: Path) -> str:
    """The end-of-run table; `written` holds (job, number of points) of each scene written now."""
    points = sum(n for _, n in written)
    raw_bytes = sum(Path(f).stat().st_size for job, _ in written for f in job.files)
    by_split: dict[str, list[int]] = {}
    for job, n in written:
        entry = by_split.setdefault(job.split, [0, 0])
        entry[0] += 1
        entry[1] += n
    rows = [f"{'split':<16}{'scenes':>8}{'points':>14}"]
    rows += [f"{split:<16}{n:>8}{p:>14,}" for split, (n, p) in sorted(by_split.items())]
    rate = len(written) / seconds if seconds > 0 else 0.0
    rows += [
        f"{'written':<16}{len(written):>8}{points:>14,}   in {seconds:.1f} s "
        f"({rate:.2f} scenes/s, {points / max(seconds, 1e-9):,.0f} points/s)",
        f"{'already done':<16}{skipped:>8}",
        f"{'failed':<16}{len(failed):>8}",
        f"raw {_size(raw_bytes)} of written scenes -> store {store_path} {_size(store_path.stat().st_size)}",
    ]
    return "\n".join(rows)


def prepare(kind: str, raw: str, out: str, workers: int = 2, classes: Optional[str] = None,
            split: Optional[str] = None) -> int:
    """Build the store `out` from `raw`; returns 0 when complete, 1 when scenes failed."""
    return main(argparse.Namespace(kind=kind, raw=raw, out=out, workers=workers, classes=classes, split=split))


def _jobs(args: argparse.Namespace) -> list[SceneJob]:
    if args.kind == "s3dis":
        return _s3dis_jobs(Path(args.raw))
    if args.kind == "scannet":
        return _scannet_jobs(Path(args.raw))
    return _file_jobs(args.raw, args.classes)


def main(args: argparse.Namespace) -> int:
    out = Path(args.out)
    partial = Path(f"{out}.partial")
    if out.exists():
        print(f"pcseg prepare: {out} already exists; delete it to prepare again", file=sys.stderr)
        return 2
    try:
        jobs = _jobs(args)
        dataset, class_names = _dataset_facts(args)
    except (FileNotFoundError, ValueError) as err:
        print(f"pcseg prepare: {err}", file=sys.stderr)
        return 2
    if args.split is not None:
        found = sorted({j.split for j in jobs})
        jobs = [j for j in jobs if j.split == args.split]
        if not jobs:
            print(f"pcseg prepare: no scenes of split {args.split!r} in {args.raw} (splits: {', '.join(found)})",
                  file=sys.stderr)
            return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        store = open_for_writing(partial, dataset, class_names, READER_VERSION)
    except ValueError as err:  # a partial store of another dataset or reader version
        print(f"pcseg prepare: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # killed in the middle of an HDF5 metadata write: start over
        print(f"pcseg prepare: {partial} is unreadable ({err}); starting it again", file=sys.stderr)
        partial.unlink()
        store = open_for_writing(partial, dataset, class_names, READER_VERSION)
    pause_after = int(os.environ.get("PCSEG_PREPARE_PAUSE_AFTER", "0"))
    written: list[tuple[SceneJob, int]] = []
    failed: list[JobResult] = []
    start = time.perf_counter()
    with store:
        done = complete_scenes(store)
        todo = [j for j in jobs if j.name not in done]
        if done:
            print(f"pcseg prepare: resuming {partial}: {len(jobs) - len(todo)} of {len(jobs)} scenes already done",
                  file=sys.stderr)
        bar = tqdm(total=len(todo), unit="scene", desc="prepare", file=sys.stderr)
        for result in _results(todo, args.workers):
            for message in result.warnings:
                tqdm.write(f"warning: {result.job.name}: {message}", file=sys.stderr)
            if result.error is not None:
                failed.append(result)
                tqdm.write(f"FAILED {result.job.name}: {result.error}", file=sys.stderr)
            else:
                write_scene(store, result.job.name, result.scene, result.job.split, result.checksum)
                written.append((result.job, len(result.scene["coord"])))
                if len(written) == pause_after:
                    print(f"paused after {pause_after} scenes", file=sys.stderr, flush=True)
                    time.sleep(3600)
            bar.update(1)
        bar.close()
    seconds = time.perf_counter() - start
    if not failed:
        os.replace(partial, out)
    print(_summary(written, len(jobs) - len(todo), failed, seconds, partial if failed else out))
    if failed:
        print(f"pcseg prepare: {len(failed)} scene(s) failed: {', '.join(r.job.name for r in failed)}; "
              f"the store stays incomplete at {partial} (fix them and run the same command to finish)",
              file=sys.stderr)
        return 1
    print(f"pcseg prepare: wrote {out} ({len(jobs)} scenes)")
    return 0
