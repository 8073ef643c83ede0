"""Cut an exported encoder in two at the end of its first modules, so the stem can stay fp32.

Mixed precision ("bf16mix"): bf16 throughout loses just enough in the first layers, which see the
raw image, to move LiteMedSAM's box masks below the accuracy guard (mean Dice 0.989 against
torch fp32 on the shared CT); keeping only the stem and first stage in fp32 brings it to 0.994
for about 15 % more time than pure bf16 (bench/encoder_speed.py). OpenVINO's CPU plugin has no
per-layer precision switch for bf16 that survives its fusions, so the graph is cut into two models.
"""

from __future__ import annotations

from pathlib import Path


def scope_prefixes(scopes: tuple[str, ...]) -> tuple[str, ...]:
    """ONNX node-name prefixes of torch module names under the TorchScript exporter ("/layers.0/")."""
    return tuple(f"/{scope.strip('/')}/" for scope in scopes)


def split_onnx(onnx_path: Path, scopes: tuple[str, ...], head_path: Path, tail_path: Path) -> str:
    """Write the graph up to the last node of `scopes` (module names, e.g. ("patch_embed",
    "layers.0"); ONNX keeps nodes in topological order) as the head model and the rest as the
    tail; return the name of the one tensor passed between them.

    Raises ValueError when the cut is not clean (no node of the scopes, or more than one tensor
    crossing it), naming the file and the scopes.
    """
    import onnx
    from onnx.utils import Extractor

    model = onnx.shape_inference.infer_shapes(onnx.load(str(onnx_path)))
    graph = model.graph
    prefixes = scope_prefixes(scopes)
    last = max((i for i, n in enumerate(graph.node) if n.name.startswith(prefixes) and n.op_type != "Constant"),
               default=None)
    if last is None:
        raise ValueError(f"{onnx_path}: no node belongs to {', '.join(scopes)}; cannot keep them in fp32")
    head, tail = graph.node[: last + 1], graph.node[last + 1:]
    # Only tensors computed from the image cross; constants and weights (and Identity/Constant
    # nodes over them) are copied into whichever half reads them.
    initializers = {t.name for t in graph.initializer}
    varying = {i.name for i in graph.input if i.name not in initializers}
    for node in graph.node:
        if any(name in varying for name in node.input):
            varying.update(node.output)
    produced = {out for node in head for out in node.output if out in varying}
    crossing = []
    for node in tail:
        for name in node.input:
            if name in produced and name not in crossing:
                crossing.append(name)
    outputs = [o.name for o in graph.output]
    crossing += [o for o in outputs if o in produced and o not in crossing]
    if len(crossing) != 1:
        raise ValueError(f"{onnx_path}: {len(crossing)} tensors cross the end of {', '.join(scopes)} "
                         f"({', '.join(crossing[:4])}); a clean cut needs exactly one")
    cut = crossing[0]
    inputs = [i.name for i in graph.input if i.name not in initializers]
    extractor = Extractor(model)
    head_model = extractor.extract_model(inputs, [cut])
    tail_model = extractor.extract_model([cut], outputs)
    tail_needs = {name for node in tail_model.graph.node for name in node.input}
    if tail_needs & set(inputs):
        raise ValueError(f"{onnx_path}: the graph after {', '.join(scopes)} reads the model input again")
    onnx.save(head_model, str(head_path))
    onnx.save(tail_model, str(tail_path))
    return cut
