"""Tests of nnw.data: real-format loaders (NNW-TEC §6.1 datasets), embedded sets, TBW triggers (§7.4)."""

from __future__ import annotations

import os
import pickle
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from nnw.data import (
    CIFAR10_CLASSES,
    IGNORE_INDEX,
    TRAINID_PALETTE,
    DataRootError,
    ImageSet,
    UnsafeDataError,
    colorize_trainids,
    embedded_classification,
    embedded_generation,
    embedded_segmentation,
    embedded_superres,
    load_cifar10,
    load_cityscapes,
    load_div2k,
    make_trigger_set,
    restricted_unpickle,
)
from nnw.data.embedded import CLASSIFICATION_SOURCES, SCENE_CLASSES, _texture_coords, source_photo, split_region

try:
    from data_writers import py2_pickle, write_cifar10_bin, write_cifar10_py, write_cityscapes, write_div2k
except ImportError:  # tests/ imported as a package
    from tests.data_writers import py2_pickle, write_cifar10_bin, write_cifar10_py, write_cityscapes, write_div2k

# Official cityscapesScripts labelId -> trainId table, written out independently of the loader.
OFFICIAL_TRAINIDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
                     24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}  # fmt: skip


def _rows(x: torch.Tensor) -> set[bytes]:
    return {bytes(row) for row in x.reshape(len(x), -1).numpy()}


# --------------------------------------------------------------------------- ImageSet
def test_imageset_len_subset_select_to():
    data = ImageSet(torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1), torch.arange(10), {"name": "t"})
    assert len(data) == 10
    first = data.subset(3)
    assert first.y.tolist() == [0, 1, 2] and first.meta == {"name": "t"} and first.meta is not data.meta
    drawn = data.subset(4, seed=1)
    assert drawn.y.tolist() == data.subset(4, seed=1).y.tolist()
    assert len(set(drawn.y.tolist())) == 4 and drawn.y.tolist() == sorted(drawn.y.tolist())
    assert data.select([9, 0]).y.tolist() == [9, 0]
    moved = data.to("cpu")
    assert moved.device.type == "cpu" and torch.equal(moved.x, data.x)
    with pytest.raises(ValueError, match="subset size"):
        data.subset(11)


def test_imageset_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match=r"same first dimension.*\(3, 1\).*\(2,\)"):
        ImageSet(torch.zeros(3, 1), torch.zeros(2))


# --------------------------------------------------------------------------- TBW triggers
def test_trigger_set_shapes_labels_and_determinism():
    triggers = make_trigger_set(n=100, num_classes=10, shape=(3, 32, 32), seed=0)
    assert triggers.x.shape == (100, 3, 32, 32) and triggers.x.dtype == torch.uint8
    assert triggers.y.shape == (100,) and triggers.y.dtype == torch.int64
    assert int(triggers.y.min()) >= 0 and int(triggers.y.max()) < 10
    again = make_trigger_set(n=100, num_classes=10, shape=(3, 32, 32), seed=0)
    assert torch.equal(triggers.x, again.x) and torch.equal(triggers.y, again.y)
    other = make_trigger_set(n=100, num_classes=10, shape=(3, 32, 32), seed=1)
    assert not torch.equal(triggers.x, other.x) and not torch.equal(triggers.y, other.y)
    assert len(_rows(triggers.x)) == 100  # every trigger image is different
    assert float(triggers.x.float().std(dim=(1, 2, 3)).min()) > 5.0  # none is a flat image


def test_trigger_labels_are_uniform_over_classes():
    labels = make_trigger_set(n=800, num_classes=4, shape=(1, 8, 8), seed=3).y
    counts = torch.bincount(labels, minlength=4)
    assert counts.numel() == 4 and int(counts.min()) > 150 and int(counts.max()) < 250


def test_trigger_set_unrelated_to_embedded_classification():
    triggers = make_trigger_set(n=50, seed=0)
    train, _ = embedded_classification(seed=0, n_train=100, n_test=0)
    assert not (_rows(triggers.x) & _rows(train.x))


@pytest.mark.parametrize("kwargs", [{"n": 0}, {"num_classes": 1}, {"shape": (32, 32)}])
def test_trigger_set_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        make_trigger_set(**kwargs)


# --------------------------------------------------------------------------- CIFAR10
def _expect_images(data: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(data.reshape(-1, 3, 32, 32))


@pytest.mark.parametrize("style", ["py2", "py3"])
def test_cifar10_py_layout_reads_official_format(tmp_path, style):
    files = write_cifar10_py(tmp_path, n_train=11, n_test=4, seed=5, style=style)
    train = load_cifar10(tmp_path, train=True)
    test = load_cifar10(tmp_path, train=False)
    assert train.x.shape == (11, 3, 32, 32) and train.x.dtype == torch.uint8 and train.y.dtype == torch.int64
    assert torch.equal(train.x, _expect_images(files.train_data))
    assert train.y.tolist() == files.train_labels.tolist()
    assert torch.equal(test.x, _expect_images(files.test_data)) and test.y.tolist() == files.test_labels.tolist()
    # channel planes: the first 1024 bytes of a row are the red plane, row-major
    assert torch.equal(train.x[3, 0], torch.from_numpy(files.train_data[3, :1024].reshape(32, 32)))
    assert train.meta["classes"] == list(CIFAR10_CLASSES) and train.meta["format"] == "py"


def test_cifar10_bin_layout_and_folder_as_root(tmp_path):
    files = write_cifar10_bin(tmp_path, n_train=7, n_test=3, seed=2)
    train = load_cifar10(tmp_path, train=True)
    assert torch.equal(train.x, _expect_images(files.train_data)) and train.y.tolist() == files.train_labels.tolist()
    test = load_cifar10(files.folder, train=False)  # the batches folder itself
    assert torch.equal(test.x, _expect_images(files.test_data)) and test.meta["format"] == "bin"
    assert test.meta["classes"] == list(CIFAR10_CLASSES)


def test_cifar10_layout_choice_when_both_exist(tmp_path):
    py_files = write_cifar10_py(tmp_path, n_train=5, n_test=2, seed=0)
    bin_files = write_cifar10_bin(tmp_path, n_train=5, n_test=2, seed=1)
    assert torch.equal(load_cifar10(tmp_path, True).x, _expect_images(py_files.train_data))
    assert torch.equal(load_cifar10(tmp_path, True, layout="bin").x, _expect_images(bin_files.train_data))


class _RunsShellCommand:
    """A pickle payload that would run ``touch marker`` through os.system."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(self.marker)}",))


class _RunsExec:
    """A pickle payload that would write ``marker`` through builtins.exec."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


@pytest.mark.parametrize("payload, refused", [(_RunsShellCommand, "system"), (_RunsExec, "builtins.exec")])
@pytest.mark.parametrize("target", ["data_batch_1", "batches.meta"])
def test_cifar10_refuses_code_executing_pickles(tmp_path, payload, refused, target):
    # Control: an unrestricted unpickler does run the payload.
    control = tmp_path / "control-marker"
    pickle.loads(pickle.dumps(payload(str(control))))
    assert control.exists()

    files = write_cifar10_py(tmp_path / "root", n_train=5, n_test=2)
    marker = tmp_path / "marker"
    evil = {b"data": payload(str(marker)), b"labels": [0]} if target == "data_batch_1" else payload(str(marker))
    (files.folder / target).write_bytes(pickle.dumps(evil, protocol=4))
    with pytest.raises(UnsafeDataError) as info:
        load_cifar10(tmp_path / "root", train=True)
    assert not marker.exists(), "the refused pickle ran code"
    assert refused in str(info.value) and str(files.folder / target) in str(info.value)


def test_cifar10_refuses_globals_outside_the_allow_list(tmp_path):
    path = tmp_path / "protocol5"
    path.write_bytes(pickle.dumps({b"data": np.zeros((1, 3072), np.uint8)}, protocol=5))
    with pytest.raises(UnsafeDataError, match="_frombuffer"):
        restricted_unpickle(path)


def test_restricted_unpickle_reads_python2_numpy_pickles(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    path = tmp_path / "py2"
    path.write_bytes(py2_pickle({"data": array, "names": ["a", "b"], "n": 70000}))
    value = restricted_unpickle(path)
    assert np.array_equal(value[b"data"], array) and value[b"names"] == [b"a", b"b"] and value[b"n"] == 70000


@pytest.mark.parametrize("make_root", ["missing", "empty"])
def test_cifar10_missing_root_shows_expected_layout(tmp_path, make_root):
    root = tmp_path / "nowhere"
    if make_root == "empty":
        root.mkdir()
    with pytest.raises(DataRootError) as info:
        load_cifar10(root, train=True)
    message = str(info.value)
    assert str(root) in message
    for part in ("Expected layout", "cifar-10-batches-py", "cifar-10-batches-bin", "data_batch_1", "test_batch"):
        assert part in message


def test_cifar10_missing_batch_file_is_named(tmp_path):
    files = write_cifar10_py(tmp_path, n_train=5, n_test=2)
    (files.folder / "data_batch_3").unlink()
    with pytest.raises(DataRootError, match="data_batch_3"):
        load_cifar10(tmp_path, train=True)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "wrong_shape", "not_a_dict"])
def test_cifar10_corrupt_pickles_are_named(tmp_path, damage):
    files = write_cifar10_py(tmp_path, n_train=5, n_test=2)
    path = files.folder / "data_batch_2"
    raw = path.read_bytes()
    content = {
        "truncate": raw[: len(raw) // 2],
        "garbage": b"\x00not a pickle at all" * 10,
        "wrong_shape": py2_pickle({"data": np.zeros((1, 100), np.uint8), "labels": [1]}),
        "not_a_dict": py2_pickle([1, 2, 3]),
    }[damage]
    path.write_bytes(content)
    with pytest.raises(DataRootError) as info:
        load_cifar10(tmp_path, train=True)
    assert str(path) in str(info.value) and "Expected layout" in str(info.value)


@pytest.mark.parametrize("damage", ["truncate", "bad_label"])
def test_cifar10_corrupt_binary_batches_are_named(tmp_path, damage):
    files = write_cifar10_bin(tmp_path, n_train=5, n_test=2)
    path = files.folder / "test_batch.bin"
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[:-10]
    else:
        raw[0] = 12
    path.write_bytes(bytes(raw))
    with pytest.raises(DataRootError, match="test_batch.bin"):
        load_cifar10(tmp_path, train=False)


# --------------------------------------------------------------------------- Cityscapes
def test_cityscapes_reads_pairs_and_maps_train_ids(tmp_path):
    files = write_cityscapes(tmp_path, split="train", cities=("aachen", "bremen"), per_city=1, size=(16, 32))
    data = load_cityscapes(tmp_path, "train")
    assert len(data) == 2  # the decoy *_gtFine_color.png files are not read
    assert data.x.shape == (2, 3, 16, 32) and data.x.dtype == torch.uint8
    assert data.y.shape == (2, 16, 32) and data.y.dtype == torch.int64
    assert torch.equal(data.x.permute(0, 2, 3, 1), torch.from_numpy(np.stack(files.photo_arrays)))
    label_ids = np.stack(files.label_arrays)
    expected = np.vectorize(lambda i: OFFICIAL_TRAINIDS.get(int(i), IGNORE_INDEX))(label_ids)
    assert np.array_equal(data.y.numpy(), expected)
    assert data.meta["num_classes"] == 19 and data.meta["files"][0].startswith("aachen_")


def test_cityscapes_every_label_id(tmp_path):
    files = write_cityscapes(tmp_path, split="val", cities=("lindau",), per_city=1, size=(1, 256))
    ids = np.arange(256, dtype=np.uint8)[None]
    Image.fromarray(ids).save(files.labels[0])
    y = load_cityscapes(tmp_path, "val").y[0, 0].tolist()
    assert y == [OFFICIAL_TRAINIDS.get(i, IGNORE_INDEX) for i in range(256)]


def test_cityscapes_resize_and_limit(tmp_path):
    write_cityscapes(tmp_path, split="train", cities=("aachen", "bremen", "erfurt"), size=(16, 32))
    full = load_cityscapes(tmp_path, "train")
    small = load_cityscapes(tmp_path, "train", size=(8, 12), limit=2)
    assert small.x.shape == (2, 3, 8, 12) and small.y.shape == (2, 8, 12)
    for i in range(2):  # nearest-neighbour resizing never invents a label
        assert set(small.y[i].unique().tolist()) <= set(full.y[i].unique().tolist())
    assert load_cityscapes(tmp_path, "train", size=10).x.shape == (3, 3, 10, 10)


def test_cityscapes_mixed_sizes_need_resize(tmp_path):
    write_cityscapes(tmp_path, cities=("aachen",), size=(16, 32), seed=0)
    write_cityscapes(tmp_path, cities=("bremen",), size=(8, 16), seed=1)
    with pytest.raises(ValueError, match="size=\\(H, W\\)"):
        load_cityscapes(tmp_path, "train")
    assert load_cityscapes(tmp_path, "train", size=(8, 16)).x.shape == (2, 3, 8, 16)


def test_cityscapes_missing_root_and_files(tmp_path):
    with pytest.raises(DataRootError) as info:
        load_cityscapes(tmp_path / "none", "train")
    assert str(tmp_path / "none") in str(info.value)
    assert "leftImg8bit" in str(info.value) and "gtFine_labelIds.png" in str(info.value)
    files = write_cityscapes(tmp_path / "root", cities=("aachen",), per_city=2)
    files.labels[1].unlink()
    with pytest.raises(DataRootError, match=files.labels[1].name):
        load_cityscapes(tmp_path / "root", "train")
    with pytest.raises(DataRootError, match="leftImg8bit/val"):
        load_cityscapes(tmp_path / "root", "val")


def test_cityscapes_corrupt_png_is_named(tmp_path):
    files = write_cityscapes(tmp_path, cities=("aachen",), per_city=1, size=(32, 64))
    raw = files.photos[0].read_bytes()
    files.photos[0].write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataRootError, match="truncated or corrupt") as info:
        load_cityscapes(tmp_path, "train")
    assert str(files.photos[0]) in str(info.value)


@pytest.mark.parametrize("limit", [100, 300], ids=["pil_error", "pil_warning"])  # 512 pixels: > 2 x 100, > 300
@pytest.mark.parametrize("loader", ["cityscapes", "div2k"])
def test_decompression_bomb_names_the_image(tmp_path, monkeypatch, loader, limit):
    if loader == "cityscapes":
        first = write_cityscapes(tmp_path, cities=("aachen",), per_city=1, size=(16, 32)).photos[0]
    else:
        first = write_div2k(tmp_path, n=1, size=(16, 32), with_lr=False).hr[0]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with pytest.raises(DataRootError, match="decompression bomb") as info:
        load_cityscapes(tmp_path, "train") if loader == "cityscapes" else load_div2k(tmp_path, "train", patch=8)
    assert str(first) in str(info.value).splitlines()[0] and f"MAX_IMAGE_PIXELS = {limit}" in str(info.value)


def test_colorize_trainids_uses_official_palette():
    y = torch.tensor([[[0, 10, 13], [18, 255, 5]]])
    colour = colorize_trainids(y)
    assert colour.shape == (1, 3, 2, 3) and colour.dtype == torch.uint8
    assert colour[0, :, 0, 0].tolist() == [128, 64, 128]  # road
    assert colour[0, :, 0, 1].tolist() == [70, 130, 180]  # sky
    assert colour[0, :, 0, 2].tolist() == [0, 0, 142]  # car
    assert colour[0, :, 1, 0].tolist() == [119, 11, 32]  # bicycle
    assert colour[0, :, 1, 1].tolist() == [0, 0, 0]  # ignore
    assert len(set(TRAINID_PALETTE)) == 19
    assert colorize_trainids(y[0]).shape == (1, 3, 2, 3)


# --------------------------------------------------------------------------- DIV2K
def test_div2k_patches_from_lr_files(tmp_path):
    files = write_div2k(tmp_path, split="train", n=2, size=(24, 36), scale=2, with_lr=True)
    data = load_div2k(tmp_path, "train", scale=2, patch=12, patches_per_image=3, seed=4)
    assert data.x.shape == (6, 3, 6, 6) and data.y.shape == (6, 3, 12, 12) and data.x.dtype == torch.uint8
    assert data.meta["lr_source"] == "files"
    lr_images = [np.asarray(Image.open(p)) for p in files.lr]
    for i, (top, left) in enumerate(data.meta["positions"].tolist()):
        hr, lr = files.hr_arrays[i // 3], lr_images[i // 3]
        assert top % 2 == 0 and left % 2 == 0
        assert np.array_equal(data.y[i].permute(1, 2, 0).numpy(), hr[top : top + 12, left : left + 12])
        lr_patch = lr[top // 2 : top // 2 + 6, left // 2 : left // 2 + 6]
        assert np.array_equal(data.x[i].permute(1, 2, 0).numpy(), lr_patch)


def test_div2k_bicubic_on_the_fly_matches_official_lr(tmp_path):
    write_div2k(tmp_path / "with", split="valid", n=2, scale=3, with_lr=True, seed=9)
    write_div2k(tmp_path / "without", split="valid", n=2, scale=3, with_lr=False, seed=9)
    a = load_div2k(tmp_path / "with", "valid", scale=3, patch=12, patches_per_image=2)
    b = load_div2k(tmp_path / "without", "valid", scale=3, patch=12, patches_per_image=2)
    assert b.meta["lr_source"] == "bicubic" and b.meta["files"] == ["0801.png", "0802.png"]
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)


def test_div2k_positions_follow_the_seed(tmp_path):
    write_div2k(tmp_path, n=2, size=(48, 60), with_lr=False)
    first = load_div2k(tmp_path, "train", patch=8, patches_per_image=5, seed=0)
    again = load_div2k(tmp_path, "train", patch=8, patches_per_image=5, seed=0)
    other = load_div2k(tmp_path, "train", patch=8, patches_per_image=5, seed=1)
    assert torch.equal(first.y, again.y) and torch.equal(first.meta["positions"], again.meta["positions"])
    assert not torch.equal(first.meta["positions"], other.meta["positions"])


def test_div2k_errors(tmp_path):
    with pytest.raises(DataRootError) as info:
        load_div2k(tmp_path / "none", "train")
    assert str(tmp_path / "none") in str(info.value) and "DIV2K_{train,valid}_HR" in str(info.value)
    files = write_div2k(tmp_path / "root", n=2, with_lr=True)
    with pytest.raises(ValueError, match="multiple of scale"):
        load_div2k(tmp_path / "root", "train", scale=2, patch=7)
    with pytest.raises(ValueError, match="smaller than"):
        load_div2k(tmp_path / "root", "train", scale=2, patch=96)
    files.lr[1].unlink()
    with pytest.raises(DataRootError, match=files.lr[1].name):
        load_div2k(tmp_path / "root", "train", patch=8)
    files.hr[0].write_bytes(b"\x89PNG broken")
    with pytest.raises(DataRootError, match="0001.png"):
        load_div2k(tmp_path / "root", "train", patch=8)


# --------------------------------------------------------------------------- embedded sets
def test_embedded_photos_load_offline():
    for name in CLASSIFICATION_SOURCES:
        photo = source_photo(name)
        assert photo.dtype == torch.float32 and photo.shape[0] == 3 and min(photo.shape[1:]) >= 128


@pytest.fixture(scope="module")
def classification_sets() -> tuple[ImageSet, ImageSet]:
    return embedded_classification(seed=0, n_train=500, n_test=200)


def test_embedded_classification_shapes_and_balance(classification_sets):
    train, test = classification_sets
    assert train.x.shape == (500, 3, 32, 32) and train.x.dtype == torch.uint8 and train.y.dtype == torch.int64
    assert test.x.shape == (200, 3, 32, 32) and test.y.dtype == torch.int64
    assert torch.bincount(train.y, minlength=10).tolist() == [50] * 10
    assert train.meta["num_classes"] == 10 and train.meta["classes"] == list(CLASSIFICATION_SOURCES[:10])
    small, _ = embedded_classification(seed=0, n_train=40, n_test=0, size=16, num_classes=4)
    assert small.x.shape == (40, 3, 16, 16) and int(small.y.max()) == 3
    with pytest.raises(ValueError, match="num_classes"):
        embedded_classification(num_classes=len(CLASSIFICATION_SOURCES) + 1)


def test_embedded_classification_determinism():
    train, _ = embedded_classification(seed=0, n_train=100, n_test=30)
    again, _ = embedded_classification(seed=0, n_train=100, n_test=5)
    assert torch.equal(train.x, again.x) and torch.equal(train.y, again.y)  # n_test does not shift train
    other, _ = embedded_classification(seed=1, n_train=100, n_test=30)
    assert not torch.equal(train.x, other.x)


def test_embedded_classification_train_test_disjoint(classification_sets):
    train, test = classification_sets
    assert not (_rows(train.x) & _rows(test.x))
    for data, split in ((train, "train"), (test, "test")):
        for box, name in zip(data.meta["boxes"].tolist(), data.meta["sources"]):
            lo, hi = split_region(source_photo(name).shape[2], split)
            assert lo <= box[0] < box[2] <= hi


def test_embedded_classification_is_learnable_but_not_trivial(classification_sets):
    train, test = classification_sets

    def features(x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)

    centroids = torch.stack([features(train.x)[train.y == c].mean(0) for c in range(10)])
    accuracy = float((torch.cdist(features(test.x), centroids).argmin(1) == test.y).float().mean())
    assert 0.2 < accuracy < 0.9  # chance is 0.1


def test_embedded_superres_pairs():
    train, test = embedded_superres(seed=0, n_train=64, n_test=16, hr_size=32, scale=2)
    assert train.x.shape == (64, 3, 16, 16) and train.y.shape == (64, 3, 32, 32)
    assert train.x.dtype == torch.uint8 and train.y.dtype == torch.uint8
    lr = F.interpolate(train.y.float(), scale_factor=0.5, mode="bicubic", antialias=True, align_corners=False)
    assert torch.equal(train.x, lr.round().clamp(0, 255).to(torch.uint8))
    again, _ = embedded_superres(seed=0, n_train=64, n_test=16)
    assert torch.equal(train.y, again.y)
    assert not torch.equal(train.y, embedded_superres(seed=1, n_train=64, n_test=16)[0].y)
    assert not (_rows(train.y) & _rows(test.y))
    for box, name in zip(test.meta["boxes"].tolist(), test.meta["sources"]):
        lo, hi = split_region(source_photo(name).shape[2], "test")
        assert lo <= box[0] < box[2] <= hi
    assert embedded_superres(n_train=4, n_test=4, hr_size=24, scale=3)[0].x.shape == (4, 3, 8, 8)
    with pytest.raises(ValueError, match="multiple of scale"):
        embedded_superres(hr_size=32, scale=3)


@pytest.fixture(scope="module")
def segmentation_sets() -> tuple[ImageSet, ImageSet]:
    return embedded_segmentation(seed=0, n_train=100, n_test=50, size=64)


def test_embedded_segmentation_scenes(segmentation_sets):
    train, test = segmentation_sets
    assert train.x.shape == (100, 3, 64, 64) and train.x.dtype == torch.uint8
    assert train.y.shape == (100, 64, 64) and train.y.dtype == torch.int64 and len(test) == 50
    assert set(train.y.unique().tolist()) <= set(SCENE_CLASSES)
    assert train.meta["num_classes"] == 19
    assert train.meta["classes_present"] == sorted(set(train.y.unique().tolist()))
    assert {0, 1, 2, 5, 8, 10, 11, 13} <= set(train.meta["classes_present"])
    assert not (_rows(train.x) & _rows(test.x))


@pytest.mark.parametrize("shape", [(512, 512), (300, 451), (64, 100)])
def test_street_textures_train_test_columns_disjoint(shape):
    rng = np.random.default_rng(0)
    train_cols = np.concatenate([_texture_coords(shape, "train", 64, rng)[1] for _ in range(200)])
    test_cols = np.concatenate([_texture_coords(shape, "test", 64, rng)[1] for _ in range(200)])
    assert train_cols.max() < 0.75 * shape[1] - 1 < 0.75 * shape[1] + 1 < test_cols.min()
    assert test_cols.max() < shape[1] and train_cols.min() >= 0


def test_embedded_segmentation_determinism():
    train, _ = embedded_segmentation(seed=0, n_train=20, n_test=10, size=32)
    again, _ = embedded_segmentation(seed=0, n_train=20, n_test=2, size=32)
    assert torch.equal(train.x, again.x) and torch.equal(train.y, again.y)
    other, _ = embedded_segmentation(seed=1, n_train=20, n_test=10, size=32)
    assert not torch.equal(train.y, other.y)


def test_embedded_segmentation_is_learnable_but_not_trivial(segmentation_sets):
    train, test = segmentation_sets
    xs, ys = train.x.permute(0, 2, 3, 1).reshape(-1, 3).float(), train.y.reshape(-1)
    xt, yt = test.x.permute(0, 2, 3, 1).reshape(-1, 3).float(), test.y.reshape(-1)
    classes = torch.tensor(train.meta["classes_present"])
    centroids = torch.stack([xs[ys == c].mean(0) for c in classes.tolist()])
    accuracy = float((classes[torch.cdist(xt, centroids).argmin(1)] == yt).float().mean())
    majority = float(torch.bincount(yt).max()) / yt.numel()
    assert majority + 0.05 < accuracy < 0.95  # per-pixel colour alone helps but does not solve it


def test_embedded_generation_matches_segmentation():
    seg_train, seg_test = embedded_segmentation(seed=2, n_train=20, n_test=10, size=32)
    gen_train, gen_test = embedded_generation(seed=2, n_train=20, n_test=10, size=32)
    assert torch.equal(gen_train.x, colorize_trainids(seg_train.y)) and torch.equal(gen_train.y, seg_train.x)
    assert torch.equal(gen_test.y, seg_test.x)
    assert gen_train.x.dtype == torch.uint8 and gen_train.x.shape == (20, 3, 32, 32)
    assert gen_train.meta["name"] == "embedded_generation" and gen_train.meta["num_classes"] == 19


def test_cifar10_stand_in_round_trips_through_the_binary_layout(tmp_path: Path) -> None:
    """``nnw make-cifar10``'s writer: what it writes, the CIFAR-10 loader reads back exactly."""
    from nnw.data.cifar10 import make_cifar10_stand_in, write_cifar10_bin
    from nnw.data.embedded import embedded_classification

    folder = make_cifar10_stand_in(tmp_path, n_train=53, n_test=7, seed=3)
    assert sorted(p.name for p in folder.iterdir()) == [
        "batches.meta.txt", "data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin",
        "data_batch_5.bin", "test_batch.bin"]
    train, test = embedded_classification(seed=3, n_train=53, n_test=7)
    for split, want in ((True, train), (False, test)):
        got = load_cifar10(tmp_path, train=split, layout="bin")
        assert torch.equal(got.x, want.x) and torch.equal(got.y, want.y)
    assert (folder / "data_batch_1.bin").stat().st_size == 11 * 3073
    with pytest.raises(ValueError, match="uint8 N x 3 x 32 x 32"):
        write_cifar10_bin(tmp_path / "bad", ImageSet(train.x.float(), train.y, {}), test)
    with pytest.raises(ValueError, match="labels must lie"):
        write_cifar10_bin(tmp_path / "bad", ImageSet(train.x, train.y + 10, {}), test)


def test_cifar10_bin_writer_never_overwrites_and_writes_all_or_nothing(tmp_path: Path, monkeypatch) -> None:
    """``nnw make-cifar10``'s writer: an existing root is refused; a failed write leaves no batches."""
    from nnw.data.cifar10 import make_cifar10_stand_in, write_cifar10_bin

    train = ImageSet(torch.zeros(5, 3, 32, 32, dtype=torch.uint8), torch.arange(5), {})
    test = ImageSet(torch.ones(2, 3, 32, 32, dtype=torch.uint8), torch.arange(2), {})
    folder = write_cifar10_bin(tmp_path, train, test)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(FileExistsError, match="cifar-10-batches-bin already exists; refusing to overwrite"):
        write_cifar10_bin(tmp_path, ImageSet(train.x + 1, train.y, {}), test)
    with pytest.raises(FileExistsError, match="already exists"):
        make_cifar10_stand_in(tmp_path, n_train=5, n_test=2)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before

    calls = []
    real_write = Path.write_bytes

    def failing_write(self, data):
        calls.append(self.name)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", failing_write)
    with pytest.raises(OSError, match="No space left"):
        write_cifar10_bin(tmp_path / "new", train, test)
    assert len(calls) == 3 and list((tmp_path / "new").iterdir()) == []  # no batches, no temporary folder
