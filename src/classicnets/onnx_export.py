"""A trained network as ONNX (dynamic batch axis), checked against PyTorch with onnxruntime."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

INPUT_NAME, OUTPUT_NAME = "images", "logits"


def export_onnx(net: nn.Module, path: Path, input_shape: tuple[int, int, int]) -> Path:
    """Write ``net`` (eval mode) to ``path``, its batch axis dynamic.

    TorchScript's exporter, not the dynamo one: the dynamo exporter has no ONNX function for
    ``aten._cdist_forward`` (LeNet-5's RBF layer) and took ~3× longer per network here."""
    example = torch.zeros(2, *input_shape)
    dynamic = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
    net = net.eval()
    # The exporter prints its graph and deprecation notes; the command says what matters.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes=dynamic,
            dynamo=False,
        )
    return path


def onnx_difference(path: Path, net: nn.Module, images: torch.Tensor) -> tuple[float, float]:
    """The largest absolute logit difference between onnxruntime and PyTorch on ``images``, and
    the largest PyTorch logit (to judge the first against)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_logits,) = session.run([OUTPUT_NAME], {INPUT_NAME: images.numpy()})
    with torch.no_grad():
        torch_logits = net.eval()(images).numpy()
    return float(np.abs(onnx_logits - torch_logits).max()), float(np.abs(torch_logits).max())
