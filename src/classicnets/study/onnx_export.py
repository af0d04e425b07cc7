"""A trained network for today's runtimes, its batch axis dynamic, each file checked against the
eager network: ``torch.export`` (``model.pt2``, for PyTorch, AOTInductor and ExecuTorch) and ONNX
(``model.onnx``, for onnxruntime, TensorRT and the like).

ONNX comes from PyTorch's dynamo exporter, which translates the ``torch.export`` program. The
TorchScript exporter (deprecated) writes only the networks the dynamo one cannot translate:
:data:`TORCHSCRIPT_ONLY` names them and says why.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

INPUT_NAME, OUTPUT_NAME = "images", "logits"
FILES = {"pt2": "model.pt2", "onnx": "model.onnx"}  # format: the file written into the run dir

# Networks whose ONNX file the TorchScript exporter writes, and why the dynamo exporter cannot.
TORCHSCRIPT_ONLY = {
    "lenet5": "its RBF output layer measures distances with torch.cdist, and the dynamo exporter "
    "has no ONNX function for aten._cdist_forward",
}


@contextlib.contextmanager
def _quiet():
    """The exporters print their graphs, progress and deprecation notes; the command says what
    matters."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def export_program(
    net: nn.Module, input_shape: tuple[int, int, int]
) -> torch.export.ExportedProgram:
    """``net`` (eval mode) through ``torch.export``, any batch size."""
    example = torch.zeros(2, *input_shape)  # 2: a batch of 1 would be specialised
    batch = torch.export.Dim("batch")
    with _quiet():
        return torch.export.export(net.eval(), (example,), dynamic_shapes=({0: batch},))


def save_program(net: nn.Module, path: Path, input_shape: tuple[int, int, int]) -> Path:
    """Write ``net`` to ``path`` (``model.pt2``): ``torch.export.load(path).module()`` runs it."""
    torch.export.save(export_program(net, input_shape), path)
    return path


def program_difference(path: Path, net: nn.Module, images: torch.Tensor) -> tuple[float, float]:
    """The largest absolute logit difference between the saved program and the eager network on
    ``images``, and the largest eager logit (to judge the first against)."""
    program = torch.export.load(path).module()
    with torch.no_grad():
        return _difference(program(images).numpy(), net.eval()(images).numpy())


def export_onnx(
    net: nn.Module, path: Path, input_shape: tuple[int, int, int], *, dynamo: bool = True
) -> Path:
    """Write ``net`` (eval mode) to ``path`` as one ONNX file, its batch axis dynamic: with the
    dynamo exporter, or TorchScript's where ``dynamo`` is False (:data:`TORCHSCRIPT_ONLY`)."""
    net = net.eval()
    names = {"input_names": [INPUT_NAME], "output_names": [OUTPUT_NAME]}
    if dynamo:
        program = export_program(net, input_shape)
        with _quiet():
            torch.onnx.export(program, f=str(path), external_data=False, dynamo=True, **names)
        return path
    dynamic = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
    with _quiet():
        torch.onnx.export(
            net,
            (torch.zeros(2, *input_shape),),
            str(path),
            dynamic_axes=dynamic,
            dynamo=False,
            **names,
        )
    return path


def onnx_exporter(name: str) -> str:
    """Which exporter writes network ``name``'s ONNX file: "dynamo" or "torchscript"."""
    return "torchscript" if name in TORCHSCRIPT_ONLY else "dynamo"


def onnx_difference(path: Path, net: nn.Module, images: torch.Tensor) -> tuple[float, float]:
    """The largest absolute logit difference between onnxruntime and PyTorch on ``images``, and
    the largest PyTorch logit (to judge the first against)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_logits,) = session.run([OUTPUT_NAME], {INPUT_NAME: images.numpy()})
    with torch.no_grad():
        return _difference(onnx_logits, net.eval()(images).numpy())


def _difference(got: np.ndarray, want: np.ndarray) -> tuple[float, float]:
    return float(np.abs(got - want).max()), float(np.abs(want).max())


@dataclass(frozen=True)
class Exported:
    """A file written and its check: the largest logit difference from the eager network, and
    the largest eager logit (to judge the first against)."""

    path: Path
    checked_with: str  # what ran the file
    difference: float
    largest: float


def export_checked(
    kind: str,
    net: nn.Module,
    name: str,
    folder: Path,
    input_shape: tuple[int, int, int],
    images: torch.Tensor,
) -> Exported:
    """Write network ``name`` in format ``kind`` (:data:`FILES`) into ``folder`` and run the
    file on ``images`` against the eager network."""
    path = folder / FILES[kind]
    if kind == "pt2":
        save_program(net, path, input_shape)
        return Exported(path, "torch.export", *program_difference(path, net, images))
    exporter = onnx_exporter(name)
    export_onnx(net, path, input_shape, dynamo=exporter == "dynamo")
    return Exported(path, f"onnxruntime ({exporter} exporter)", *onnx_difference(path, net, images))
