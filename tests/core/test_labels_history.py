import numpy as np
import pytest

from annotator.core.history import History
from annotator.core.labels import LabelMap, LabelTable, bounding_region
from annotator.core.prompts import BoxPrompt, PointPrompt, PromptSet


def _labels():
    table = LabelTable()
    table.add("liver")
    table.add("spleen")
    return LabelMap((4, 8, 8), table)


def test_paint_and_undo_redo_restore_exact_voxels():
    labels = _labels()
    history = History(labels)
    region = (slice(1, 2), slice(0, 8), slice(0, 8))
    mask = np.zeros((1, 8, 8), bool)
    mask[0, 2:5, 2:6] = True
    history.push(labels.paint(region, mask, 1, description="accept"))
    assert labels.voxel_counts() == {1: 12}
    snapshot = labels.array.copy()
    history.push(labels.paint(region, np.ones((1, 8, 8), bool), 2, overwrite=False))
    assert labels.voxel_counts() == {1: 12, 2: 52}
    history.undo()
    np.testing.assert_array_equal(labels.array, snapshot)
    history.undo()
    assert not labels.array.any()
    history.redo()
    np.testing.assert_array_equal(labels.array, snapshot)
    assert history.descriptions() == ["accept"]


def test_locked_label_is_never_overwritten():
    labels = _labels()
    region = (slice(0, 4), slice(0, 8), slice(0, 8))
    labels.paint(region, np.ones((4, 8, 8), bool), 1)
    labels.table.update(1, locked=True)
    labels.paint(region, np.ones((4, 8, 8), bool), 2)
    assert labels.voxel_counts() == {1: 256}


def test_replace_label_and_signal():
    labels = _labels()
    seen = []
    labels.changed.connect(seen.append)
    region = (slice(0, 1), slice(0, 8), slice(0, 8))
    first = np.zeros((1, 8, 8), bool)
    first[0, :4] = True
    labels.paint(region, first, 1)
    second = np.zeros((1, 8, 8), bool)
    second[0, 4:] = True
    edit = labels.replace_label(region, second, 1)
    assert labels.voxel_counts() == {1: 32}
    assert edit.changed_voxels == 64
    assert len(seen) == 2
    assert labels.apply(region, labels.array[region].copy()) is None  # no-op edits are not recorded


def test_table_json_round_trip_and_name_maps():
    table = LabelTable()
    table.add("liver", (1, 2, 3))
    again = LabelTable.from_json(table.to_json())
    assert again[1].name == "liver"
    assert again[1].color == (1, 2, 3)
    assert LabelTable.from_json({"1": "spleen", "0": "background"}).ids() == [1]
    assert LabelTable.from_json({"spleen": 5})[5].name == "spleen"
    with pytest.raises(ValueError, match="already exists"):
        table.add("dup", label_id=1)


def test_labelmap_refuses_bad_values():
    with pytest.raises(ValueError, match="label values"):
        LabelMap((1, 1, 2), array=np.array([[[-1, 2]]]))


def test_bounding_region_and_box_of_mask():
    mask = np.zeros((3, 6, 7), bool)
    mask[1, 2:4, 3:6] = True
    assert bounding_region(mask) == (slice(1, 2), slice(2, 4), slice(3, 6))
    assert bounding_region(np.zeros((2, 2, 2), bool)) is None
    box = BoxPrompt.of_mask(mask[1])
    np.testing.assert_array_equal(box.xyxy(), [3, 2, 5, 3])


def test_prompt_set_is_immutable_and_ordered():
    prompts = PromptSet().with_point(PointPrompt(1, 2)).with_point(PointPrompt(3, 4, positive=False))
    prompts = prompts.with_box(BoxPrompt.from_corners(5, 6, 1, 2))
    np.testing.assert_array_equal(prompts.points_xy(), [[1, 2], [3, 4]])
    np.testing.assert_array_equal(prompts.point_labels(), [1, 0])
    np.testing.assert_array_equal(prompts.box.xyxy(), [1, 2, 5, 6])
    assert not PromptSet()
