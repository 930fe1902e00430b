"""The compiled CPU kernels (``_native.cpp``), built on first use with the system's C++ compiler.

Two kernels: the first layer's weight gradient (``sum_rows_backward``) and the gate softmax and mix of one-layer
experts (``moe_mix`` and its backward, used by MMoE and OMoE at the paper's shape).

Why compiled: the first layer's weight gradient is a scatter-add of output-gradient rows into the rows the batch's
categorical codes select. Expressed in PyTorch it is either a sparse CSR product, which pays a stable sort of every
code at every step, or one ``index_add_`` per categorical column, which reads the gradient 33 times; the compiled
loop does neither: faster than the CSR product at the paper's width, for one seed and more, and level with the
per-column loop at the budget's widest layer inside a training step (bench/first_layer.py; figures in
bench/PROFILE.md "Fifth pass"). That layer is about half of a many-seed step. The mix of
one-layer experts is a dozen elementwise operations in PyTorch, each a pass over ``(R, B, E, h)`` intermediates
and a dispatch; compiled, it is one pass forward and one backward (bench/PROFILE.md "Seventh pass").

Why built here rather than shipped: the kernel links against the installed torch, whose C++ ABI changes between
releases; building it against the torch actually installed (about 6 s, once per torch version and source, cached
under ``$HPO_NATIVE_CACHE`` or ``~/.cache/hpo/native``) avoids a wheel per torch. Where no compiler is found or the
build fails, :func:`native_ops` logs one warning and returns ``None`` and the layer uses the CSR product or the
per-column loop: the loop adds every element's terms in the kernel's order (the same bits), the CSR product in
an order PyTorch's sparse library may regroup on some CPUs (the same to rounding); either way only slower.
``HPO_NATIVE=0`` turns the kernel off.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["kernel_provenance", "loaded_ops", "native_build_error", "native_ops"]

log = logging.getLogger(__name__)

_SOURCE = Path(__file__).with_name("_native.cpp")
_BUILD_TIMEOUT_S = 600
_build_error: str | None = None
_loaded: Any | None = None  # set once the library is loaded: what traced code reads (see loaded_ops)


def _cache_dir() -> Path:
    if env := os.environ.get("HPO_NATIVE_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hpo" / "native"


def _compile_command(cxx: str, out: Path, openmp: bool = True) -> list[str]:
    from torch.utils.cpp_extension import include_paths

    torch_lib = Path(torch.__file__).parent / "lib"
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    return [
        cxx,
        "-O3",
        # at::parallel_for is OpenMP code inlined into the kernel's file: without this flag it compiles to a plain
        # loop on one thread (as every build before the seventh pass did). The OpenMP runtime it links is torch's
        # own, already loaded (the same soname), so no second thread pool starts. Apple's compiler has no OpenMP.
        *(["-fopenmp"] if openmp and sys.platform != "darwin" else []),
        # no fused multiply-add contraction: the AVX-512 and AVX2 clones would use it and the baseline clone could
        # not, and a CPU's results would then depend on which clone it runs
        "-ffp-contract=off",
        "-std=c++20",  # torch 2.13's headers use C++20 features
        "-shared",
        "-fPIC",
        "-w",  # the torch headers' own warnings are not ours to fix
        f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
        *(f"-I{p}" for p in include_paths()),
        str(_SOURCE),
        "-o",
        str(out),
        f"-L{torch_lib}",
        "-lc10",
        "-ltorch_cpu",
    ]


def _library_path(cxx: str) -> Path:
    """Where the library built from this source, with this compiler, for this torch and Python, is cached."""
    key = hashlib.sha256()
    key.update(_SOURCE.read_bytes())
    for part in (torch.__version__, cxx, sys.version, sysconfig.get_platform()):
        key.update(part.encode())
    return _cache_dir() / f"hpo_native_{key.hexdigest()[:16]}.so"


def _build(cxx: str, target: Path, openmp: bool = True) -> None:
    """Compile into a temporary file beside ``target`` and rename it into place, so that processes building at
    the same moment (parallel workers, test processes) never load a half-written library."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        proc = subprocess.run(
            _compile_command(cxx, Path(tmp), openmp),
            capture_output=True,
            text=True,
            timeout=_BUILD_TIMEOUT_S,
            check=False,
        )
        if proc.returncode != 0:
            tail = " ".join(proc.stderr.strip().splitlines()[-3:])[-400:]
            raise RuntimeError(f"{cxx} exited with {proc.returncode}: {tail}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _register_fake() -> None:
    """Shapes and dtypes of the ops' outputs without running them, for tracing (``torch.compile``, meta tensors)."""

    @torch.library.register_fake("hpo_native::sum_rows_backward")
    def _(codes: torch.Tensor, grad_out: torch.Tensor, n_rows: int, replicas: int = 1) -> torch.Tensor:
        return grad_out.new_empty((n_rows, grad_out.shape[1]))

    @torch.library.register_fake("hpo_native::moe_mix")
    def _mix(z: torch.Tensor, experts: int, units: int, gates: int) -> tuple[torch.Tensor, torch.Tensor]:
        r, b, _ = z.shape
        return z.new_empty((r, gates, b, units)), z.new_empty((r, b, gates, experts))

    @torch.library.register_fake("hpo_native::moe_mix_backward")
    def _mix_backward(
        z: torch.Tensor, weights: torch.Tensor, grad_out: torch.Tensor, experts: int, units: int, gates: int
    ) -> torch.Tensor:
        return z.new_empty(z.shape)


@functools.lru_cache(maxsize=1)
def native_ops() -> Any | None:
    """``torch.ops.hpo_native`` with the kernels loaded, or ``None`` (disabled, or it could not be built)."""
    global _build_error, _loaded
    if os.environ.get("HPO_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        _build_error = "disabled by HPO_NATIVE=0"
        return None
    if sys.platform == "win32":
        _build_error = "the native kernel is built on Linux and macOS only"
        return None
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or "c++"
    try:
        target = _library_path(cxx)
        if not target.exists():
            log.info("building the native kernels into %s (once per torch version)", target)
            try:
                _build(cxx, target)
            except (
                RuntimeError
            ) as exc:  # a compiler without OpenMP: one thread is still faster than the fallback
                log.info("building with OpenMP failed (%s); building for one thread", exc)
                _build(cxx, target, openmp=False)
        torch.ops.load_library(str(target))
        _register_fake()
        _loaded = torch.ops.hpo_native
        return _loaded
    except Exception as exc:  # any failure means the fallback, never a failed run
        _build_error = f"{type(exc).__name__}: {exc}"
        log.warning(
            "the native kernels are unavailable (%s); using PyTorch's own ops (for the first layer a CSR product or "
            "a loop per column, which give the same results to rounding, more slowly; for the experts' mix the same maths "
            "to rounding)",
            _build_error,
        )
        return None


def loaded_ops() -> Any | None:
    """The kernel if :func:`native_ops` has loaded it, else ``None``; never builds, reads no files.

    For code that ``torch.compile`` traces: Dynamo cannot follow the environment and file checks of the first
    :func:`native_ops` call, so a caller that compiles resolves the kernel first and traced code reads this.
    """
    return _loaded


def native_build_error() -> str | None:
    """Why :func:`native_ops` returned ``None`` (after it has been called), else ``None``."""
    return _build_error


def kernel_provenance(device: str | torch.device) -> str:
    """Which code trains on ``device``, for a result's provenance: ``compiled`` (the kernels above), ``fallback:
    WHY`` (PyTorch's own ops on the CPU: the same maths to rounding) or ``pytorch ops on cuda``. On the CPU this builds the kernels if they are not built yet, so a
    worker that asks before its first trial keeps the build (seconds, once per torch version) out of that
    trial's timed cost."""
    kind = torch.device(device).type
    if kind != "cpu":
        return f"pytorch ops on {kind}"
    return "compiled" if native_ops() is not None else f"fallback: {native_build_error()}"
