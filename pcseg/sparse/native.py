"""Optional native (C++/OpenMP) sparse-convolution kernels, built on first use.

The sources live in `ops/` (shipped as `pcseg._ops`) and are compiled with
`torch.utils.cpp_extension.load` into `$PCSEG_EXT_DIR/pcseg_sparse_conv` when that variable
is set, else torch's extension cache (`~/.cache/torch_extensions`). The build happens once
per machine and torch version; later imports load the cached library in well under a second.

float32 runs on AVX-512 micro-kernels where the CPU has AVX-512F, otherwise (and for float64)
on gather + BLAS GEMM + scatter; both give the same results (`simd_kernels` switches, for tests).

Anything that stops the build (no C++ compiler, no ninja, a compile error) makes
`available()` return False after one warning naming the cause; callers then use the
pure-PyTorch twin `pcseg.sparse.conv_torch`, which defines the results these kernels must
reproduce. `PCSEG_NO_NATIVE=1` disables the native path without trying to build.
"""
from __future__ import annotations

import os
import shutil
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import torch

from pcseg.resources import ops_dir

if TYPE_CHECKING:
    from pcseg.sparse.kernel_map import KernelMap

EXTENSION_NAME = "pcseg_sparse_conv"
SOURCES = ("sparse_conv.cpp", "kernel_map.cpp")

# None: not tried yet; False: tried and failed (warned once); otherwise the loaded module.
_module: ModuleType | bool | None = None


def _build() -> ModuleType:
    """Compile (or load from cache) the extension; raises RuntimeError naming what is missing."""
    from torch.utils import cpp_extension

    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        raise RuntimeError(f"no C++ compiler ({compiler!r} not on PATH)")
    cpp_extension.verify_ninja_availability()  # raises "Ninja is required to load C++ extensions"
    sources = [ops_dir() / name for name in SOURCES]
    missing = [str(path) for path in sources if not path.is_file()]
    if missing:
        raise RuntimeError(f"sources not found: {', '.join(missing)}")
    build_dir = None
    if os.environ.get("PCSEG_EXT_DIR"):
        build_dir = Path(os.environ["PCSEG_EXT_DIR"]) / EXTENSION_NAME
        build_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_lock(Path(build_dir) if build_dir is not None
                       else Path(cpp_extension._get_build_directory(EXTENSION_NAME, False)))
    return cpp_extension.load(
        name=EXTENSION_NAME,
        sources=[str(path) for path in sources],
        extra_cflags=["-O3", "-fopenmp"],
        extra_ldflags=["-fopenmp"],
        build_directory=None if build_dir is None else str(build_dir),
        verbose=False,
    )


# A build takes well under a minute; a lock older than this was left by a killed build.
STALE_LOCK_SECONDS = 600.0


def _remove_stale_lock(build_dir: Path) -> None:
    """Delete torch's build lock when its builder died (killed mid-build): torch waits on it
    forever otherwise, and every later run would hang before its first convolution."""
    lock = build_dir / "lock"
    try:
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return
    if age > STALE_LOCK_SECONDS:
        warnings.warn(f"removing the stale native-build lock {lock} ({age / 60:.0f} min old; "
                      "a build was interrupted)", RuntimeWarning)
        lock.unlink(missing_ok=True)


def _load() -> ModuleType | None:
    global _module
    if _module is None:
        if os.environ.get("PCSEG_NO_NATIVE", "") not in ("", "0"):
            _module = False
        else:
            try:
                _module = _build()
            except Exception as error:  # any build failure means "fall back", never a crash
                reason = str(error).strip().splitlines()
                warnings.warn(
                    f"pcseg native sparse kernels unavailable, using the PyTorch path: "
                    f"{type(error).__name__}: {reason[0] if reason else ''}",
                    RuntimeWarning,
                    stacklevel=3,
                )
                _module = False
    return _module or None


def available() -> bool:
    """True when the native kernels are (or could just now be) built and loaded."""
    return _load() is not None


def _extension() -> ModuleType:
    module = _load()
    if module is None:
        raise RuntimeError(
            "pcseg native sparse kernels are unavailable (PCSEG_NO_NATIVE set or the build "
            "failed; see the earlier warning); use pcseg.sparse.conv_torch"
        )
    return module


@contextmanager
def simd_kernels(enabled: bool) -> Iterator[None]:
    """Within the block float32 uses the AVX-512 kernels (`True`, the default where the CPU has
    AVX-512F; ignored elsewhere) or the BLAS ones (`False`). Process-wide: for tests and benchmarks."""
    previous = _extension().set_simd(enabled)
    try:
        yield
    finally:
        _extension().set_simd(previous)


def _identity(kmap: KernelMap) -> int:
    return -1 if kmap.identity_offset is None else int(kmap.identity_offset)


def conv_forward(feats: torch.Tensor, weight: torch.Tensor, kmap: KernelMap) -> torch.Tensor:
    """Sparse convolution over a kernel map.

    feats: float32/float64 [N_in, C_in] CPU; weight: same dtype [K, C_in, C_out];
    kmap: pairs per kernel offset (see `pcseg.sparse.kernel_map.KernelMap`).
    Returns [kmap.num_out, C_out]: out[o] = sum over pairs (i, o) of offset k of feats[i] @ weight[k].
    """
    return _extension().conv_forward(
        feats, weight, kmap.in_rows, kmap.out_rows, kmap.offset_ptr, int(kmap.num_out), _identity(kmap)
    )


def kernel_map(in_keys: torch.Tensor, out_keys: torch.Tensor, shifts: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pairs of a kernel map from packed coordinate keys (`pcseg.sparse.coords.pack_keys`).

    in_keys: int64 [N_in] unique keys of the input rows, in row order; out_keys: int64 [N_out]
    of the output rows; shifts: int64 [K] packed offset of each kernel offset
    (`pack_offsets`). Returns (in_rows [P], out_rows [P], offset_ptr [K + 1]), pairs sorted by
    (offset, out row), where in_keys[in_row] == out_keys[out_row] + shifts[k].
    """
    in_rows, out_rows, offset_ptr = _extension().kernel_map(in_keys, out_keys, shifts)
    return in_rows, out_rows, offset_ptr


def conv_backward(
    grad_out: torch.Tensor, feats: torch.Tensor, weight: torch.Tensor, kmap: KernelMap
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of `conv_forward`.

    grad_out: [num_out, C_out]; feats: [N_in, C_in]; weight: [K, C_in, C_out], one dtype, CPU.
    Returns (grad_feats [N_in, C_in], grad_weight [K, C_in, C_out]).
    """
    grad_feats, grad_weight = _extension().conv_backward(
        grad_out, feats, weight, kmap.in_rows, kmap.out_rows, kmap.offset_ptr, int(kmap.num_out), _identity(kmap)
    )
    return grad_feats, grad_weight
