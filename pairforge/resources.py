"""Errors that end a run instead of rejecting one item: a full disk, a quota, a read-only or unwritable output,
running out of memory. They say nothing about the input, so the run stops loudly (exit 1) and a re-run resumes."""

from __future__ import annotations

import errno
import os

from pairforge.errors import PairforgeError

CAUSES = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the filesystem is read-only",
    errno.ENOMEM: "out of memory",
    errno.EFBIG: "a file grew beyond the filesystem's limit",
    errno.EMFILE: "too many open files",
    errno.ENFILE: "too many open files on the system",
}


class ResourceExhausted(PairforgeError):
    """The machine, not the input, failed: the run stops (exit 1); running the same command again resumes."""

    def __init__(self, cause: str, where: str = "") -> None:
        super().__init__(f"{cause}{f' ({where})' if where else ''}")
        self.cause, self.where = cause, where

    def __reduce__(self):  # crosses the process boundary intact
        return type(self), (self.cause, self.where)

    def remedy(self) -> str:
        """What the user can do before running the command again."""
        if self.cause.startswith(("out of memory", "out of GPU memory")):
            return "use fewer --workers or smaller sizes or batches (or a machine with more memory)"
        if self.cause.startswith(("no space", "the disk quota", "a file grew")):
            return "free some space"
        return "fix that"


OUT_OF_MEMORY_TEXTS = (
    "out of memory",  # CUDA (also inside TorchScript, where it arrives as a plain RuntimeError)
    "insufficient memory",  # OpenCV
    "failed to allocate memory",  # onnxruntime's arena
    "cudnn_status_alloc_failed",
    "cublas_status_alloc_failed",
    "cuda_error_out_of_memory",
)


def is_out_of_memory(exc: BaseException) -> bool:
    """True for every way running out of host or GPU memory reaches Python: MemoryError, PyTorch's
    OutOfMemoryError, and the errors of OpenCV, TorchScript, cuDNN/cuBLAS and onnxruntime that say so only in
    their text. (Torch-free: the class is recognised by name.)"""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc).lower()
    return any(marker in text for marker in OUT_OF_MEMORY_TEXTS)


def _memory_cause(exc: BaseException) -> str:
    if isinstance(exc, MemoryError):
        return "out of memory"
    if type(exc).__module__ == "cv2":
        return "out of memory (OpenCV could not allocate an image)"
    text = str(exc).lower()
    return "out of GPU memory" if "cuda" in text or "cudnn" in text or "cublas" in text else "out of memory (PyTorch)"


def resource_cause(exc: BaseException, output: str | None = None) -> ResourceExhausted | None:
    """`exc` as a run-ending error when it is about the machine (memory, disk) or about writing into `output`
    (permission, not a folder); None when it may be about one input (to be rejected with its reason)."""
    if isinstance(exc, ResourceExhausted):
        return exc
    if is_out_of_memory(exc):
        return ResourceExhausted(_memory_cause(exc))
    if not isinstance(exc, OSError):
        return None
    where = os.fspath(exc.filename) if exc.filename is not None else ""
    if exc.errno in CAUSES:
        return ResourceExhausted(CAUSES[exc.errno], where)
    if output and where and os.path.abspath(where).startswith(os.path.abspath(output) + os.sep):
        return ResourceExhausted(f"cannot write the output: {exc.strerror or exc}", where)
    return None


def error_line(exc: Exception) -> str | None:
    """An error no command caught, as one line (the cause, the file, what to do) when it is about the machine or
    the filesystem; None for anything else (a bug: its traceback is wanted)."""
    fatal = resource_cause(exc)
    if fatal:
        return f"{fatal}; {fatal.remedy()} and run the same command again (what was finished is kept)"
    if not isinstance(exc, OSError):
        return None
    where = f"{os.fspath(exc.filename)}: " if exc.filename is not None else ""
    return f"{where}{exc.strerror or exc} (check the path and its permissions)"
