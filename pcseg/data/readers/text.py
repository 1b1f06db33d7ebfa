"""Fast parsing of whitespace-separated numeric text (S3DIS annotation files, XYZ exports).

Parsing goes through `np.fromstring` on the whole file (C speed, ~2.5M lines/s per core);
a vectorised count of tokens per line guards it. Only when that check fails does a slow
per-line pass run, to name the first malformed line.
"""
from __future__ import annotations

import warnings

import numpy as np


class MalformedFileError(ValueError):
    """A text file has a line that is not `columns` numbers; the message names file and line."""


def clean_stray_bytes(data: bytes) -> tuple[bytes, int]:
    """Replace control bytes (other than tab/LF/CR) and non-ASCII bytes by spaces.

    The real S3DIS release has a NUL byte between two numbers (`185\\x00187` = `185 187`);
    a space is the only replacement that keeps such a line's columns. Returns the cleaned
    bytes and how many bytes were replaced.
    """
    arr = np.frombuffer(data, dtype=np.uint8)
    stray = ((arr < 32) & (arr != 9) & (arr != 10) & (arr != 13)) | (arr >= 127)
    count = int(stray.sum())
    if count == 0:
        return data, 0
    fixed = arr.copy()
    fixed[stray] = ord(" ")
    return fixed.tobytes(), count


def tokens_per_line(data: bytes) -> np.ndarray:
    """int64 [L]: number of whitespace-separated tokens on each line of `data` (L lines)."""
    arr = np.frombuffer(data, dtype=np.uint8)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    is_sep = arr <= 32  # tab, LF, CR, space (control bytes were cleaned before)
    starts = np.flatnonzero(~is_sep[1:] & is_sep[:-1]) + 1
    if not is_sep[0]:
        starts = np.concatenate([[0], starts])
    newlines = np.flatnonzero(arr == 10)
    num_lines = len(newlines) + (0 if arr[-1] == 10 else 1)
    return np.bincount(np.searchsorted(newlines, starts), minlength=num_lines)


def _first_bad_line(data: bytes, columns: int, source: str) -> MalformedFileError:
    for number, line in enumerate(data.split(b"\n"), start=1):
        parts = line.split()
        if not parts:
            continue
        ok = len(parts) == columns
        if ok:
            try:
                [float(p) for p in parts]
            except ValueError:
                ok = False
        if not ok:
            text = line.decode("ascii", errors="backslashreplace").strip()
            return MalformedFileError(f"{source}:{number}: expected {columns} numbers, got {text!r}")
    return MalformedFileError(f"{source}: could not parse as {columns} numeric columns")


def parse_numeric_text(data: bytes, columns: int, source: str) -> np.ndarray:
    """float64 [L, columns] from whitespace-separated text; blank lines are skipped.

    Raises MalformedFileError naming `source`, the 1-based line number and its content when
    a line does not hold exactly `columns` numbers.
    """
    counts = tokens_per_line(data)
    if np.any((counts != columns) & (counts != 0)):
        raise _first_bad_line(data, columns, source)
    expected = int(counts.sum())
    try:
        with warnings.catch_warnings():
            # older numpy warns (instead of raising) when it stops at a token it cannot read
            warnings.simplefilter("ignore", DeprecationWarning)
            values = np.fromstring(data, dtype=np.float64, sep=" ")
    except ValueError:
        raise _first_bad_line(data, columns, source) from None
    if values.size != expected:
        raise _first_bad_line(data, columns, source)
    return values.reshape(-1, columns)
