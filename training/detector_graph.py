"""The YOLOX export with a fixed batch of 1 → the same graph with a dynamic batch (`make models` time).

The export's only batch-bound nodes are three `Reshape`s with the target shape [1, 85, -1] (one per
head stride); the convolutions, the Focus slices (axes 2 and 3) and the resizes do not depend on
the batch. Setting the leading 1 to 0 ("copy this dimension from the input") and naming the batch
dimension of the graph input and output makes every batch size run. `check_same_outputs` then runs
both files on the same inputs: each row of a batched run must equal the batch-1 run of that image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

BATCH_DIM = "batch"
#: Largest allowed difference between a batched output and the batch-1 output (measured: 0.0).
TOLERANCE = 1e-4


class GraphConversionError(ValueError):
    """The file is not the YOLOX graph this conversion knows."""


def make_batch_dynamic(source: Path, target: Path) -> None:
    """Write `source`'s graph with a dynamic batch dimension to `target` (written whole, then renamed)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    reshapes = [node for node in graph.node if node.op_type == "Reshape"]
    if not reshapes:
        raise GraphConversionError(f"{source}: no Reshape nodes; not the YOLOX export this expects")
    for node in reshapes:
        shape_init = initializers.get(node.input[1])
        if shape_init is None:
            raise GraphConversionError(f"{source}: {node.name} takes a computed shape; expected a constant")
        shape = numpy_helper.to_array(shape_init).astype(np.int64)
        if shape.ndim != 1 or shape.size < 2 or shape[0] != 1:
            raise GraphConversionError(f"{source}: {node.name} reshapes to {shape.tolist()}, not [1, ...]")
        if sum(1 for n in graph.node for name in n.input if name == node.input[1]) != 1:
            raise GraphConversionError(f"{source}: the shape of {node.name} is shared with other nodes")
        shape[0] = 0  # opset < 14 (no allowzero): 0 copies the input's batch dimension
        shape_init.CopyFrom(numpy_helper.from_array(shape, node.input[1]))
    for value in (*graph.input, *graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        if dim.dim_value != 1:
            raise GraphConversionError(f"{source}: {value.name} has batch {dim.dim_value}; expected 1")
        dim.ClearField("dim_value")
        dim.dim_param = BATCH_DIM
    del graph.value_info[:]  # inferred shapes of the batch-1 graph; the runtime infers them again
    onnx.checker.check_model(model)
    tmp = target.with_name(f".{target.name}.tmp")
    onnx.save(model, str(tmp))
    tmp.replace(target)


def check_same_outputs(fixed: Path, dynamic: Path, batch: int = 3, seed: int = 0) -> float:
    """Max |difference| between `dynamic` at `batch` and `fixed` image by image; raises over TOLERANCE."""
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    cpu = ["CPUExecutionProvider"]
    sessions = [ort.InferenceSession(str(p), options, providers=cpu) for p in (fixed, dynamic)]
    name = sessions[0].get_inputs()[0].name
    _, channels, height, width = sessions[0].get_inputs()[0].shape
    # Smooth random images (upsampled noise) so that boxes and scores are not all zero.
    coarse = rng.uniform(0, 255, size=(batch, channels, height // 16, width // 16)).astype(np.float32)
    images = np.ascontiguousarray(coarse.repeat(16, axis=2).repeat(16, axis=3))
    reference = np.concatenate([sessions[0].run(None, {name: images[i : i + 1]})[0] for i in range(batch)])
    batched = sessions[1].run(None, {name: images})[0]
    if batched.shape != reference.shape:
        raise GraphConversionError(f"{dynamic}: batched output {batched.shape}, expected {reference.shape}")
    worst = float(np.abs(batched - reference).max())
    if worst > TOLERANCE:
        raise GraphConversionError(f"{dynamic}: batched outputs differ from batch 1 by {worst:g}")
    return worst
