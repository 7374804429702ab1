"""The ways running out of memory reaches Python (GPU, TorchScript, onnxruntime, cuDNN, host), for the tests."""

from __future__ import annotations

import torch

OUT_OF_MEMORY = {
    "torch": lambda: torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    "torchscript": lambda: RuntimeError(
        "The following operation failed in the TorchScript interpreter.\nTraceback of TorchScript (most recent call"
        " last):\nRuntimeError: CUDA out of memory. Tried to allocate 1.50 GiB"
    ),
    "onnxruntime": lambda: RuntimeError(
        "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while running Conv node."
        " Status Message: Failed to allocate memory for requested buffer of size 8589934592"
    ),
    "cudnn": lambda: RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"),
    "host": lambda: MemoryError(),
}
