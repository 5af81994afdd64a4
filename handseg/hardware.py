"""What this machine offers: devices, CPU cores, bf16 arithmetic."""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterator

import torch


class DeviceUnavailableError(ValueError):
    """The device asked for is not one torch knows, or not available on this machine (CUDA without a GPU)."""


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """`device` as a torch.device that this machine has (None: CUDA when available, else the CPU).

    Raises DeviceUnavailableError, in one line, for a name torch does not know ("cuda:x", "gpu") and for
    CUDA on a machine without it, instead of a traceback from deep inside loading."""
    if device is None:
        return default_device()
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceUnavailableError(
            f"device {str(device)!r} is not one torch knows; use cpu, cuda or cuda:N"
        ) from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"device {str(device)!r}: CUDA is not available here (no NVIDIA GPU, or a CPU build of torch); "
                "use cpu, or leave the device out to use CUDA only where there is one"
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise DeviceUnavailableError(
                f"device {str(device)!r}: this machine has {torch.cuda.device_count()} CUDA device(s), numbered from 0"
            )
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceUnavailableError(f"device {str(device)!r}: Apple's MPS is not available here; use cpu")
    elif resolved.type not in ("cpu", "cuda", "mps"):
        backend = getattr(torch, resolved.type, None)
        if backend is None or not getattr(backend, "is_available", lambda: False)():
            raise DeviceUnavailableError(f"device {str(device)!r} is not available here; use cpu or cuda")
    return resolved


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


#: The most threads torch may use in this process: None, except in a forked child (below).
_torch_threads_cap: int | None = None


def _one_torch_thread_in_forked_child() -> None:
    # torch's CPU threads are GNU OpenMP's, and a forked child hangs in its first parallel region when the
    # parent ran one (datasets.map(num_proc=N), multiprocessing's fork): one thread there, as PyTorch's
    # own DataLoader workers do. onnxruntime's sessions (the int8 default) run in a forked child as they are,
    # also one inherited from the parent (tests/test_engines.py), so they keep their threads.
    global _torch_threads_cap
    _torch_threads_cap = 1
    torch.set_num_threads(1)


os.register_at_fork(after_in_child=_one_torch_thread_in_forked_child)


def torch_threads(threads: int) -> int:
    """The threads torch runs with when `threads` are asked for: `threads`, or 1 in a process forked from
    one that imported handseg (GNU OpenMP cannot start a thread team again after a fork)."""
    return min(threads, _torch_threads_cap) if _torch_threads_cap else threads


@contextlib.contextmanager
def torch_threads_set(threads: int) -> Iterator[None]:
    """torch's CPU threads (a per-process setting) at `torch_threads(threads)` inside, and as they were after:
    a segmentation's own torch work (the input tensor, the mask back to full size) runs on the torch pool's
    count whichever backend runs the network, without changing the count for the caller's own torch code."""
    before, wanted = torch.get_num_threads(), torch_threads(threads)
    if wanted != before:
        torch.set_num_threads(wanted)
    try:
        yield
    finally:
        if wanted != before:
            torch.set_num_threads(before)


#: The two thread pools a segmentation runs on. torch's CPU threads are a GNU OpenMP team: each layer's
#: work is split evenly among them and all wait for the slowest, so one thread sharing a busy core holds
#: up the rest. onnxruntime's pool (thread spinning off) hands each layer out in small pieces to whichever
#: thread is free, so a thread on a busy core just takes fewer of them.
TORCH_POOL, ONNXRUNTIME_POOL = "torch", "onnxruntime"


def default_threads(concurrent: int = 1, pool: str = TORCH_POOL) -> int:
    """CPU threads for one segmentation when `concurrent` run at once, at least 1: for torch (the network
    on the torch backends, and a segmentation's own torch work on every backend), half the usable cores
    shared among them; for onnxruntime (the int8 default, the hand landmark models), every usable core
    shared among them.

    Why not all cores for torch (its own default): when another process keeps one core busy, its team of
    threads waits on its slowest member at every layer. On the 2-core development machine with a core
    busy, 1280x720 frames at 2 threads had a p90 of 493 ms against 102 ms at 1 thread. onnxruntime's pool
    does not wait that way: the default path at 2 threads was faster than at 1 both idle and with a core
    busy (`python benchmarks/threads.py`, docs/performance.md)."""
    if pool not in (TORCH_POOL, ONNXRUNTIME_POOL):
        raise ValueError(f"unknown thread pool {pool!r}; choose {TORCH_POOL!r} or {ONNXRUNTIME_POOL!r}")
    cores = usable_cores() if pool == ONNXRUNTIME_POOL else usable_cores() // 2
    return max(1, cores // max(1, concurrent))


def cpu_threads(threads: int | None = None, concurrent: int = 1, pool: str = TORCH_POOL) -> int:
    """The CPU threads a segmentation uses on `pool`: `threads`; else OMP_NUM_THREADS where the user set it
    (torch reads it at start-up); else `default_threads(concurrent, pool)`: the one place that shares the
    cores among segmentations running at once."""
    if concurrent < 1:
        raise ValueError(f"concurrent must be at least 1, got {concurrent}")
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        return threads
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    return default_threads(concurrent, pool)


def cpu_multiplies_int8_exactly() -> bool:
    """Whether this CPU adds up int8 products without saturating in onnxruntime's default int8 kernels: x86
    with VNNI (AVX512-VNNI or AVX-VNNI: products summed into 32 bits), or 64-bit ARM (dot products into 32
    bits). On x86 without VNNI, pairs of uint8 x int8 products are first summed into 16 bits with
    saturation, and the masks move (`python benchmarks/int8_cpus.py`): there handseg asks onnxruntime
    for exact sums instead (`handseg.backends.exact_int8_entries`)."""
    machine = platform.machine().lower()
    if machine in ("arm64", "aarch64"):
        return True
    if machine not in ("x86_64", "amd64"):
        return False
    # torch has no public query for VNNI either (see cpu_has_native_bf16); tests/test_runtime.py checks the name.
    vnni = bool(getattr(torch.cpu, "_is_vnni_supported", lambda: False)())
    return vnni or "avx_vnni" in _linux_cpu_flags()


def _linux_cpu_flags() -> set[str]:
    """The CPU's flags from /proc/cpuinfo (empty elsewhere): AVX-VNNI, which torch does not report."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())
    except OSError:
        return set()


def cpu_has_native_bf16() -> bool:
    """Whether this CPU does bf16 arithmetic in hardware (AVX512-BF16, AMX, ARM's BF16 extension).

    There oneDNN runs this model's convolutions in bf16 at about twice the float32 speed; elsewhere
    bf16 is emulated and far slower than float32 (13x on an AVX2-only AMD EPYC)."""
    # torch has no public query for this (torch.backends.cpu.get_cpu_capability() names the vector ISA,
    # not bf16); tests/test_backends.py fails if this private name goes away.
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
