"""One box around a structure that lies in separate pieces on a slice, against a box per piece: the
app's first-prompt Dice on every such slice of a labelled scan (issue 19; the simulated user's
corrections box per piece, evaluate.propagation.boxes_per_piece). Run on purpose, not in CI:

    .venv/bin/python bench/boxes_per_piece.py ../shared/data/labelled/ct_totalseg_abdomen_3mm

Reads image.nii.gz, labels.nii.gz and labels.json from the case folder; every labelled structure
of the evaluation (protocol.select_items), axial slices. Embeddings go through the disk cache
(ANNOTATOR_CACHE_DIR), so a second run is quick. Prints per structure and overall means.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("case", type=Path, help="folder with image.nii.gz, labels.nii.gz, labels.json")
    parser.add_argument("--runtime", default="auto")
    args = parser.parse_args()

    from annotator.cli.options import read_label_names
    from annotator.core.geometry import plane_array_axis
    from annotator.engine.embedding_cache import EmbeddingCache
    from annotator.engine.factory import create_engine
    from annotator.evaluate import protocol
    from annotator.evaluate.propagation import CORRECTION_MAX_PROMPTS, boxes_per_piece
    from annotator.evaluate.runner import EngineMeter, app_first_prompt
    from annotator.io import load_volume, read_labels_onto

    volume = load_volume(args.case / "image.nii.gz")
    labels = read_labels_onto(volume, args.case / "labels.nii.gz").array
    table = read_label_names(str(args.case / "labels.json"))  # the table `annotator evaluate --labels-table` reads
    names = {label.id: label.name for label in table} if table is not None else {}
    engine = create_engine("lite-medsam", runtime=args.runtime)
    axis = plane_array_axis(volume, "axial")
    meter = EngineMeter(engine, volume, axis, protocol.windowed_volume_u8(volume.array, volume.modality)[0],
                        EmbeddingCache.from_settings())
    items, _ = protocol.select_items(labels, names, axis, "axial")
    kind = getattr(engine, "prompt_kind", "box")
    every_one, every_piece = [], []
    print(f"{engine.model_id} on {engine.runtime}; slices where a structure lies in 2+ pieces "
          f"(each at least a tenth of the largest)")
    for item in items:
        truth_3d = labels == item.label
        one, per_piece = [], []
        for index in range(truth_3d.shape[axis]):
            truth = protocol.plane_slice(truth_3d, axis, index)
            pieces = protocol.pieces_to_box(truth, CORRECTION_MAX_PROMPTS)
            if len(pieces) < 2:
                continue
            box = protocol.tight_box_xyxy(truth).astype(np.float64)
            one.append(protocol.dice(app_first_prompt(meter, index, box, kind).mask, truth))
            per_piece.append(protocol.dice(boxes_per_piece(meter, index, pieces, kind).mask, truth))
        if one:
            print(f"  {item.name:32} {len(one):3} slices  one box {np.mean(one):.3f}  box per piece "
                  f"{np.mean(per_piece):.3f}")
            every_one += one
            every_piece += per_piece
    if every_one:
        print(f"all: {len(every_one)} slices, one box {np.mean(every_one):.3f}, box per piece "
              f"{np.mean(every_piece):.3f}")


if __name__ == "__main__":
    main()
