"""An fp16 copy of an ONNX graph for TensorRT's strongly typed builds: the convolutional trunk in fp16,
the rest (reductions, softmax, matmuls: the GP/SA/LA heads) in fp32, inputs and outputs kept fp32.

TensorRT 11 has no `BuilderFlag.FP16`: a network runs in the precision its graph states, so the
precision goes into the ONNX before the build (notes/deploy.md). The policy is deliberately narrow:
SA's eq. (3) sums |F_c|^2 over 512 channels, which passes fp16's 65504 on ordinary activations, and
its softmax over such scores is ruined by fp16's resolution there; the trunk is where the time goes.
Only the `onnx` package is used (no onnxconverter-common / ModelOpt).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engines.errors import EngineNotImplemented

FLOAT = 1  # onnx.TensorProto.FLOAT, spelled out so the policy below needs no onnx import
FLOAT16 = 10
FP16_MAX = 65504.0

# Ops that always run in fp16: the convolutional trunk.
HEAVY_OPS = frozenset({"Conv", "ConvTranspose", "MaxPool", "AveragePool", "BatchNormalization"})
# Ops that run in fp16 when every dynamic float input already is fp16: what rides along the trunk.
FOLLOWER_OPS = frozenset(
    {"Relu", "LeakyRelu", "Clip", "Add", "Sub", "Mul", "Sigmoid", "HardSigmoid", "HardSwish", "Identity"}
)
_CONTROL_FLOW = frozenset({"If", "Loop", "Scan", "SequenceMap"})


@dataclass(frozen=True)
class NodeFloats:
    """What the precision policy needs to know of one node, in graph (topological) order."""

    op_type: str
    float_inputs: tuple[str, ...]  # dynamic float inputs; constants (weights) are not listed
    float_outputs: tuple[str, ...]


def half_nodes(nodes: Sequence[NodeFloats]) -> set[int]:
    """Indices of the nodes that run in fp16: every heavy op, and each follower fed only by fp16."""
    chosen: set[int] = set()
    half: set[str] = set()
    for i, node in enumerate(nodes):
        if not node.float_outputs:
            continue
        heavy = node.op_type in HEAVY_OPS
        follows = (
            node.op_type in FOLLOWER_OPS
            and bool(node.float_inputs)
            and all(name in half for name in node.float_inputs)
        )
        if heavy or follows:
            chosen.add(i)
            half.update(node.float_outputs)
    return chosen


def _load(src: str | os.PathLike[str]):
    import onnx

    model = onnx.load(os.fspath(src))  # external weights (`.onnx.data`) load from beside the file
    for node in model.graph.node:
        if node.op_type in _CONTROL_FLOW:
            raise EngineNotImplemented(
                f"{src}: node {node.name or node.op_type} is control flow ({node.op_type}); "
                "fp16_onnx converts flat graphs only"
            )
    return model


def _float_types(model) -> dict[str, int]:
    """Element type of every named tensor, from shape inference over the fp32 graph."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    types: dict[str, int] = {}
    for value in (*graph.input, *graph.output, *graph.value_info):
        if value.type.HasField("tensor_type"):
            types[value.name] = value.type.tensor_type.elem_type
    for init in graph.initializer:
        types[init.name] = init.data_type
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    types[node.output[0]] = attr.t.data_type
    return types


def _constants(model) -> dict[str, np.ndarray]:
    """Values of constant tensors: initializers, Constant nodes, and Identity/Cast chains of them."""
    from onnx import numpy_helper

    values = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
        elif node.op_type == "Identity" and node.input[0] in values:
            values[node.output[0]] = values[node.input[0]]
    return values


def _node_floats(model, types: dict[str, int], constants: dict[str, np.ndarray]) -> list[NodeFloats]:
    def is_float(name: str) -> bool:
        return bool(name) and types.get(name) == FLOAT

    return [
        NodeFloats(
            node.op_type,
            tuple(n for n in node.input if is_float(n) and n not in constants),
            tuple(n for n in node.output if is_float(n)),
        )
        for node in model.graph.node
    ]


def fp32_tensor_names(src: str | os.PathLike[str]) -> set[str]:
    """Float tensors of the fp32 graph that the policy keeps in fp32 (for TensorRT 10's layer pinning)."""
    model = _load(src)
    types, constants = _float_types(model), _constants(model)
    nodes = _node_floats(model, types, constants)
    half = half_nodes(nodes)
    return {name for i, node in enumerate(nodes) if i not in half for name in node.float_outputs}


def _fp16_array(value: np.ndarray) -> np.ndarray:
    # Out-of-range weights saturate instead of becoming inf (a scale of 1e5 would poison the layer).
    return np.clip(value, -FP16_MAX, FP16_MAX).astype(np.float16)


def fp16_onnx(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Write an fp16 copy of the ONNX graph `src` to `dst` (weights inline) and return `dst`.

    Heavy ops (conv, pooling, BN) and their elementwise followers run in fp16 with fp16 weights;
    every other node stays fp32. A Cast goes wherever a tensor crosses between the two, so the graph's
    inputs and outputs keep their fp32 types and names.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = _load(src)
    graph = model.graph
    types, constants = _float_types(model), _constants(model)
    nodes = _node_floats(model, types, constants)
    half = half_nodes(nodes)
    produced_half = {name for i in half for name in nodes[i].float_outputs}
    graph_outputs = {o.name for o in graph.output}

    def h(name: str) -> str:  # the fp16 version of tensor `name`
        return f"{name}__fp16"

    new_inits: list = []
    made: set[str] = set()  # fp16 versions already made (initializer copies or casts)
    casts_in: dict[str, list] = {}  # tensor -> Cast nodes to place once it exists
    needs_fp32: set[str] = set()  # fp16-produced tensors that an fp32 node or the graph reads

    def want_half(name: str) -> str:
        if name in produced_half or name in made:
            return h(name)
        made.add(name)
        if name in constants:
            new_inits.append(numpy_helper.from_array(_fp16_array(constants[name]), h(name)))
        else:  # an fp32 activation entering the trunk
            casts_in.setdefault(name, []).append(
                helper.make_node("Cast", [name], [h(name)], to=FLOAT16, name=f"{name}__cast_fp16")
            )
        return h(name)

    rewritten = []
    for i, node in enumerate(graph.node):
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        if i in half:
            for k, name in enumerate(node.input):
                if name and types.get(name) == FLOAT:
                    copy.input[k] = want_half(name)
            for k, name in enumerate(node.output):
                if name in produced_half:
                    copy.output[k] = h(name)
        else:
            needs_fp32.update(n for n in node.input if n in produced_half)
        rewritten.append(copy)
    needs_fp32.update(graph_outputs & produced_half)

    ordered = [cast for i in graph.input for cast in casts_in.pop(i.name, [])]
    for i, (node, copy) in enumerate(zip(graph.node, rewritten, strict=True)):
        ordered.append(copy)
        for name in node.output:
            if i in half and name in needs_fp32:
                ordered.append(
                    helper.make_node("Cast", [h(name)], [name], to=FLOAT, name=f"{name}__cast_fp32")
                )
            ordered.extend(casts_in.pop(name, []))
    if casts_in:  # a cast of a tensor no node or input produces: the graph was not what we read
        raise ValueError(f"{src}: no producer for {sorted(casts_in)}")

    del graph.node[:]
    graph.node.extend(ordered)
    graph.initializer.extend(new_inits)
    _drop_unused_initializers(graph, ordered)
    del graph.value_info[:]  # intermediate types changed; TensorRT and checkers re-infer them
    onnx.checker.check_model(model)
    out_path = Path(dst)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".partial")
    onnx.save_model(model, os.fspath(tmp))
    os.replace(tmp, out_path)
    return out_path


def _drop_unused_initializers(graph, nodes: Iterable) -> None:
    used = {name for node in nodes for name in node.input}
    used.update(o.name for o in graph.output)
    keep = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
