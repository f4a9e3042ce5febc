"""Build an ONNX graph of a BERT sentence encoder from safetensors weights, without torch.

The graph takes `input_ids` and `attention_mask` ([batch, tokens], int64) and returns
`embedding` ([batch, hidden], float32): the mask-weighted mean of the last hidden states,
L2-normalized -- what sentence-transformers computes for all-MiniLM-L6-v2. Token type ids
are always 0 for single sentences, so their embedding row is folded into the position table.

Attention uses onnxruntime's fused `com.microsoft.Attention` operator (several times faster
on one CPU thread, and dynamic int8 quantization turns it into QAttention).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

OPSET = 18
MS = "com.microsoft"  # onnxruntime's contrib operators
_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Tensors of a .safetensors file: 8-byte header length, JSON header, raw data."""
    data = path.read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    base = 8 + header_len
    tensors: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(info["dtype"])
        if dtype is None:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
        start, end = info["data_offsets"]
        array = np.frombuffer(data[base + start : base + end], dtype=dtype)
        tensors[name] = array.reshape(info["shape"]).astype(
            np.float32 if dtype == np.float16 else dtype
        )
    return tensors


@dataclass(frozen=True)
class BertShape:
    """The parts of a Hugging Face BERT config.json the graph depends on."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    max_positions: int
    eps: float

    @classmethod
    def from_config(cls, path: Path) -> BertShape:
        cfg = json.loads(path.read_text(encoding="utf-8"))
        if cfg.get("model_type") != "bert" or cfg.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"{path}: not a BERT model with gelu activations")
        return cls(
            hidden=int(cfg["hidden_size"]),
            layers=int(cfg["num_hidden_layers"]),
            heads=int(cfg["num_attention_heads"]),
            intermediate=int(cfg["intermediate_size"]),
            max_positions=int(cfg["max_position_embeddings"]),
            eps=float(cfg.get("layer_norm_eps", 1e-12)),
        )


def _i64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


class _Graph:
    """Accumulates nodes and initializers with unique names."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, hint: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], domain: str = "", **attrs: Any) -> str:
        from onnx import helper

        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], domain=domain, **attrs))
        return out


def build_graph(weights: Mapping[str, np.ndarray], shape: BertShape) -> Any:
    """The encoder as an onnx.ModelProto (see the module docstring for inputs and output)."""
    from onnx import TensorProto, helper

    g = _Graph()
    w = {k.removeprefix("bert."): v.astype(np.float32) for k, v in weights.items()}

    def matmul(x: str, prefix: str) -> str:
        return g.op("MatMul", [x, g.const(f"{prefix}.wT", w[f"{prefix}.weight"].T)])

    def bias(prefix: str) -> str:
        return g.const(f"{prefix}.b", w[f"{prefix}.bias"])

    def norm_params(prefix: str) -> list[str]:
        return [
            g.const(f"{prefix}.g", w[f"{prefix}.weight"]),
            g.const(f"{prefix}.b", w[f"{prefix}.bias"]),
        ]

    def dense_add_norm(x: str, residual: str, dense: str, norm: str) -> str:
        """LayerNorm(x @ W + b + residual), one fused operator."""
        inputs = [matmul(x, dense), residual, *norm_params(norm), bias(dense)]
        return g.op("SkipLayerNormalization", inputs, domain=MS, epsilon=shape.eps)

    # Embeddings: word + (position + token type 0), sliced to the sequence length.
    seq_len = g.op("Gather", [g.op("Shape", ["input_ids"]), g.const("one", _i64(1))], axis=0)
    table = (
        w["embeddings.position_embeddings.weight"] + w["embeddings.token_type_embeddings.weight"][0]
    )
    positions = g.op("Slice", [g.const("positions", table), g.const("zero", _i64(0)), seq_len])
    words = g.op("Gather", [g.const("words", w["embeddings.word_embeddings.weight"]), "input_ids"])
    x = g.op(
        "LayerNormalization",
        [g.op("Add", [words, positions]), *norm_params("embeddings.LayerNorm")],
        axis=-1,
        epsilon=shape.eps,
    )

    mask = g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    mask_index = g.op("Cast", ["attention_mask"], to=TensorProto.INT32)
    for i in range(shape.layers):
        p = f"encoder.layer.{i}.attention"
        qkv = ("query", "key", "value")
        qkv_w = np.concatenate([w[f"{p}.self.{n}.weight"].T for n in qkv], axis=1)
        qkv_b = np.concatenate([w[f"{p}.self.{n}.bias"] for n in qkv])
        context = g.op(
            "Attention",
            [x, g.const(f"{p}.qkv_w", qkv_w), g.const(f"{p}.qkv_b", qkv_b), mask_index],
            domain=MS,
            num_heads=shape.heads,
        )
        x = dense_add_norm(context, x, f"{p}.output.dense", f"{p}.output.LayerNorm")
        p = f"encoder.layer.{i}"
        dense = f"{p}.intermediate.dense"
        inner = g.op("BiasGelu", [matmul(x, dense), bias(dense)], domain=MS)
        x = dense_add_norm(inner, x, f"{p}.output.dense", f"{p}.output.LayerNorm")

    # Mean pooling over attended tokens, then L2 normalization.
    weighted = g.op("Mul", [x, g.op("Unsqueeze", [mask, g.const("axis2", _i64(2))])])
    summed = g.op("ReduceSum", [weighted, g.const("axis1", _i64(1))], keepdims=0)
    counts = g.op("ReduceSum", [mask, g.const("axis1", _i64(1))], keepdims=1)
    tiny = g.const("tiny", np.array(1e-9, np.float32))
    mean = g.op("Div", [summed, g.op("Max", [counts, tiny])])
    norm = g.op("ReduceL2", [mean, g.const("axis1", _i64(1))], keepdims=1)
    g.nodes.append(helper.make_node("Div", [mean, g.op("Max", [norm, tiny])], ["embedding"]))

    graph = helper.make_graph(
        g.nodes,
        "sentence_encoder",
        inputs=[
            helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "tokens"])
            for name in ("input_ids", "attention_mask")
        ],
        outputs=[
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", shape.hidden])
        ],
        initializer=g.initializers,
    )
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid(MS, 1)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="tierwise")
    model.ir_version = 8  # readable by every onnxruntime the project supports
    return model
