"""Tests of the embedded tasks as the embedded profile shapes them: classification classes, scale range
and jitter, "clear" street scenes, segmentation class weights, and the profile's task entries."""
from __future__ import annotations

import pytest
import torch

from nnw.data.embedded import (
    CLASSIFICATION_SOURCES,
    SCENE_CLASSES,
    embedded_classification,
    embedded_generation,
    embedded_segmentation,
    source_photo,
    split_region,
)
from nnw.profile import load_profile
from nnw.tasks import build_task, class_weights


def test_classification_with_named_classes_and_scales():
    classes = ["rocket", "brick", "text"]
    train, test = embedded_classification(seed=0, n_train=60, n_test=30, classes=classes, scale_range=(1.0, 2.0),
                                          jitter=0.5)
    assert train.meta["classes"] == classes and train.meta["num_classes"] == 3
    assert torch.bincount(train.y).tolist() == [20, 20, 20]
    for data, split in ((train, "train"), (test, "test")):
        sides = data.meta["boxes"][:, 2] - data.meta["boxes"][:, 0]
        assert bool(((sides >= 32 - 1e-6) & (sides <= 64 + 1e-6)).all())
        for box, name in zip(data.meta["boxes"].tolist(), data.meta["sources"]):
            lo, hi = split_region(source_photo(name).shape[2], split)
            assert lo <= box[0] < box[2] <= hi  # the leakage rule holds for any choice of classes
    again, _ = embedded_classification(seed=0, n_train=60, n_test=5, classes=classes, scale_range=(1.0, 2.0),
                                       jitter=0.5)
    assert torch.equal(train.x, again.x)
    with pytest.raises(ValueError, match="classes"):
        embedded_classification(classes=["rocket", "rocket"])
    with pytest.raises(ValueError, match="classes"):
        embedded_classification(classes=["rocket", "no such photo"])
    with pytest.raises(ValueError, match="scale_range"):
        embedded_classification(classes=classes, scale_range=(2.0, 1.0))


def test_defaults_are_unchanged_by_the_new_options():
    a, _ = embedded_classification(seed=0, n_train=40, n_test=0)
    b, _ = embedded_classification(seed=0, n_train=40, n_test=0, classes=CLASSIFICATION_SOURCES[:10],
                                   scale_range=(0.75, 3.0), jitter=1.0)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    s, _ = embedded_segmentation(seed=0, n_train=6, n_test=0, size=32)
    v, _ = embedded_segmentation(seed=0, n_train=6, n_test=0, size=32, style="varied")
    assert torch.equal(s.x, v.x) and torch.equal(s.y, v.y)


def test_clear_scenes_give_each_class_one_colour():
    varied, _ = embedded_segmentation(seed=0, n_train=40, n_test=0, size=32, style="varied")
    clear, _ = embedded_segmentation(seed=0, n_train=40, n_test=0, size=32, style="clear")
    assert set(clear.y.unique().tolist()) <= set(SCENE_CLASSES)

    def sky_colour_spread(data):  # spread over images of the mean sky colour
        means = [data.x[i].float()[:, data.y[i] == 10].mean(1) for i in range(len(data)) if (data.y[i] == 10).any()]
        return float(torch.stack(means).std(0).mean())

    assert sky_colour_spread(clear) < 0.5 * sky_colour_spread(varied)
    gen, _ = embedded_generation(seed=0, n_train=40, n_test=0, size=32, style="clear")
    assert torch.equal(gen.y, clear.x)  # generation and segmentation share the scenes
    with pytest.raises(ValueError, match="style"):
        embedded_segmentation(n_train=1, n_test=0, size=32, style="loud")


def test_class_weights_favour_rare_classes():
    y = torch.zeros(1, 10, 10, dtype=torch.int64)
    y[0, :, :1] = 5          # 10 pixels of class 5
    y[0, 0, 1] = 7           # 1 pixel of class 7
    y[0, 9, 9] = 255         # ignored
    w = class_weights(y, 19, "sqrt_inverse_frequency")
    assert w.shape == (19,) and w.dtype == torch.float32
    assert w[7] > w[5] > w[0] and w[3] == 1.0  # absent classes keep weight 1
    assert torch.isclose(w[5], torch.tensor(1.0))  # the median frequency class
    with pytest.raises(ValueError, match="class_weights"):
        class_weights(y, 19, "inverse")


def test_embedded_profile_tasks_build_with_their_shapes():
    profile = load_profile("embedded")
    for name in profile.data["classification_tasks"]:
        entry = profile.tasks[name]
        assert entry["data"]["n_test"] >= 5000  # reference models are judged on >= 5,000 test images
        assert len(entry["data"]["classes"]) == 10 and set(entry["data"]["classes"]) <= set(CLASSIFICATION_SOURCES)
    task = build_task("DeepLabV3", {**profile.tasks["DeepLabV3"],
                                    "data": {**profile.tasks["DeepLabV3"]["data"], "n_train": 4, "n_test": 2}})
    assert task.data_spec["style"] == "clear" and task.recipe.class_weights == "sqrt_inverse_frequency"
    loss = task.make_loss(torch.device("cpu"))
    assert loss.weight is not None and loss.weight.shape == (19,)


def test_tiles_layout_keeps_train_and_test_apart_over_the_whole_photo():
    from nnw.data.embedded import tile_test_cells

    classes = ["rocket", "text", "coins"]  # text and coins are the smallest photos (172 x 448, 303 x 384)
    train, test = embedded_classification(seed=1, n_train=150, n_test=90, classes=classes, layout="tiles")
    cell, gap = train.meta["test_cell"], 16
    assert train.meta["layout"] == "tiles" and cell == 96 + 2 * gap
    spans = {}
    for data, split in ((train, "train"), (test, "test")):
        for box, name in zip(data.meta["boxes"].tolist(), data.meta["sources"]):
            photo = source_photo(name)
            cells = tile_test_cells(photo.shape[1], photo.shape[2], cell).tolist()
            assert 0 <= box[0] < box[2] <= photo.shape[2] and 0 <= box[1] < box[3] <= photo.shape[1]
            if split == "test":  # inside one test cell, gap pixels clear of its border
                assert any(c[0] + gap <= box[0] and box[2] <= c[2] - gap and c[1] + gap <= box[1]
                           and box[3] <= c[3] - gap for c in cells)
            else:  # clear of every test cell by gap pixels
                assert all(box[2] <= c[0] - gap or c[2] + gap <= box[0] or box[3] <= c[1] - gap
                           or c[3] + gap <= box[1] for c in cells)
            spans.setdefault((split, name), []).append(box[0] / photo.shape[2])
    for name in classes:  # unlike the columns layout, test crops come from the left of the photo too
        assert min(spans[("test", name)]) < 0.5
    again, _ = embedded_classification(seed=1, n_train=150, n_test=0, classes=classes, layout="tiles")
    assert torch.equal(train.x, again.x)
    with pytest.raises(ValueError, match="layout"):
        embedded_classification(n_train=2, n_test=0, layout="stripes")
