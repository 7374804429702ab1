"""A tiny ONNX stand-in for a rembg U2-Net model, so tests run rembg's real session code without weights.

Like U2-Net it takes a normalised 1x3xSxS image and returns 1x1xSxS saliency; here the saliency is simply
"mean normalised channel value above a threshold", so bright subjects on dark backgrounds are the foreground.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper


def threshold_model(path: Path, side: int = 320, threshold: float = 0.0) -> Path:
    """Write the model to `path` (e.g. `.../u2net.onnx`) and return the path."""
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["input.1"], ["mean"], axes=[1], keepdims=1),
            helper.make_node("Greater", ["mean", "threshold"], ["bright"]),
            helper.make_node("Cast", ["bright"], ["saliency"], to=TensorProto.FLOAT),
        ],
        "threshold_saliency",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, side, side])],
        [helper.make_tensor_value_info("saliency", TensorProto.FLOAT, [1, 1, side, side])],
        [helper.make_tensor("threshold", TensorProto.FLOAT, [], [threshold])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path
