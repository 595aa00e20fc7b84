"""Tests for nnw.io: safe save/load of model state dicts."""

from __future__ import annotations

import os
import pickle
import stat
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

import nnw.io as nio
from nnw.io import ModelFileError, check_finite, load_into, load_state, save_state


def _state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "conv.weight": torch.randn(4, 3, 3, 3, generator=g),
        "conv.bias": torch.randn(4, generator=g),
        "count": torch.arange(5, dtype=torch.int64),
        "half": torch.randn(2, 2, generator=g).to(torch.float16),
    }


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert torch.equal(a[k], b[k]), k


def test_safetensors_round_trip_with_metadata(tmp_path):
    state = _state()
    path = save_state(tmp_path / "sub" / "m.safetensors", state, metadata={"method": "uchida"})
    loaded, meta = load_state(path)
    _assert_same(state, loaded)
    assert meta == {"method": "uchida"}
    assert [p.name for p in path.parent.iterdir()] == ["m.safetensors"]


def test_save_handles_shared_noncontiguous_and_grad_tensors(tmp_path):
    base = torch.randn(4, 6, requires_grad=True)
    state = {"w": base, "tied": base, "view": base[1], "t": base.t()}
    save_state(tmp_path / "m.safetensors", state)
    loaded, _ = load_state(tmp_path / "m.safetensors")
    for k, v in state.items():
        assert torch.equal(loaded[k], v.detach()), k
        assert not loaded[k].requires_grad


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin"])
def test_torch_state_dict_round_trip(tmp_path, suffix):
    state = _state()
    torch.save(state, tmp_path / f"m{suffix}")
    loaded, meta = load_state(tmp_path / f"m{suffix}")
    _assert_same(state, loaded)
    assert meta == {}


@pytest.mark.parametrize("ckpt_key", ["state_dict", "model"])
def test_torch_checkpoint_with_nested_state_dict(tmp_path, ckpt_key):
    state = _state()
    torch.save({ckpt_key: state, "epoch": 3, "lr": 0.1}, tmp_path / "ckpt.pt")
    loaded, _ = load_state(tmp_path / "ckpt.pt")
    _assert_same(state, loaded)


def test_save_non_tensor_value_leaves_nothing(tmp_path):
    target = tmp_path / "m.safetensors"
    with pytest.raises(TypeError, match=r"'b' must be a torch.Tensor, got int"):
        save_state(target, {"a": torch.ones(2), "b": 3})  # type: ignore[dict-item]
    assert list(tmp_path.iterdir()) == []


def test_save_failing_mid_write_keeps_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "m.safetensors"
    save_state(target, {"a": torch.ones(2)})
    before = target.read_bytes()

    def broken_save(tensors, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(nio, "save_file", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_state(target, {"a": torch.zeros(2)})
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_save_rejects_non_str_metadata(tmp_path):
    with pytest.raises(TypeError, match="metadata must map str -> str"):
        save_state(tmp_path / "m.safetensors", {"a": torch.ones(1)}, metadata={"epoch": 3})  # type: ignore[dict-item]
    assert list(tmp_path.iterdir()) == []


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match=r"nope\.safetensors: model file not found"):
        load_state(tmp_path / "nope.safetensors")


def test_unsupported_suffix(tmp_path):
    p = tmp_path / "m.onnx"
    p.write_bytes(b"x")
    with pytest.raises(ModelFileError, match=r"m\.onnx.*unsupported model file type '\.onnx'"):
        load_state(p)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_safetensors(tmp_path, damage):
    p = save_state(tmp_path / "m.safetensors", _state())
    data = p.read_bytes()
    p.write_bytes({"truncate": data[: len(data) - 10], "garbage": b"\xff" * 64, "empty": b""}[damage])
    with pytest.raises(ModelFileError, match=r"m\.safetensors: corrupt or truncated safetensors file"):
        load_state(p)


@pytest.mark.parametrize("legacy", [False, True])
def test_corrupt_torch_file(tmp_path, legacy):
    p = tmp_path / "m.pt"
    torch.save(_state(), p, _use_new_zipfile_serialization=not legacy)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match=r"m\.pt"):
        load_state(p)


def test_garbage_torch_file(tmp_path):
    p = tmp_path / "m.pth"
    p.write_bytes(b"this is not a pickle at all")
    with pytest.raises(ModelFileError, match=r"m\.pth"):
        load_state(p)


class _Evil:
    marker = ""

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


@pytest.mark.parametrize("legacy", [False, True])
def test_malicious_pickle_is_refused_and_not_executed(tmp_path, legacy):
    marker = tmp_path / "MARKER"
    evil = _Evil()
    evil.marker = str(marker)
    p = tmp_path / "evil.pt"
    if legacy:
        with open(p, "wb") as fh:
            pickle.dump({"w": torch.ones(1), "x": evil}, fh, protocol=2)
    else:
        torch.save({"w": torch.ones(1), "x": evil}, p)
    assert not marker.exists()
    with pytest.raises(ModelFileError, match=r"evil\.pt: refused because loading it could execute code") as info:
        load_state(p)
    assert not marker.exists()
    assert "weights_only" not in str(info.value) and "corrupt" not in str(info.value)
    # Control: the payload is live, an unsafe load does run it.
    if legacy:
        with open(p, "rb") as fh:
            pickle.load(fh)
    else:
        torch.load(p, weights_only=False)
    assert marker.read_text() == "pwned"


def test_not_a_mapping(tmp_path):
    p = tmp_path / "m.pt"
    torch.save([torch.ones(2)], p)
    with pytest.raises(ModelFileError, match=r"m\.pt: expected a mapping of tensor name -> Tensor.*got list"):
        load_state(p)


def test_mapping_with_non_tensor_value(tmp_path):
    p = tmp_path / "m.pt"
    torch.save({"w": torch.ones(2), "epoch": 3}, p)
    with pytest.raises(ModelFileError, match=r"m\.pt: .*key 'epoch' holds int"):
        load_state(p)


@pytest.mark.parametrize("bad,kind", [(float("nan"), "1 NaN, 0 Inf"), (float("inf"), "0 NaN, 1 Inf")])
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_nonfinite_rejected_naming_tensor(tmp_path, bad, kind, suffix):
    state = _state()
    state["conv.bias"][2] = bad
    p = tmp_path / f"m{suffix}"
    if suffix == ".pt":
        torch.save(state, p)
    else:
        save_state(p, state)
    with pytest.raises(ModelFileError, match=rf"m\{suffix}: tensor 'conv.bias' has 1 non-finite value\(s\) of 4 \({kind}\)"):
        load_state(p)
    loaded, _ = load_state(p, allow_nonfinite=True)
    assert not torch.isfinite(loaded["conv.bias"]).all()


def test_check_finite_ignores_integer_and_names_first_offender():
    state = {"ok": torch.ones(3), "ints": torch.arange(3), "a": torch.tensor([float("nan"), 1.0]), "b": torch.full((2,), float("inf"))}
    with pytest.raises(ModelFileError, match=r"src: tensor 'a' has 1 non-finite"):
        check_finite(state, source="src")
    check_finite({"ok": torch.ones(2), "ints": torch.arange(2)}, source="src")


class _Net(nn.Module):
    def __init__(self, hidden: int = 4) -> None:
        super().__init__()
        self.fc1 = nn.Linear(3, hidden)
        self.fc2 = nn.Linear(hidden, 2)


def test_load_into_round_trip(tmp_path):
    src, dst = _Net(), _Net()
    p = save_state(tmp_path / "net.safetensors", src.state_dict())
    assert load_into(dst, p) is dst
    _assert_same(src.state_dict(), dst.state_dict())


def test_load_into_mismatch_message(tmp_path):
    state = _Net(hidden=5).state_dict()
    del state["fc2.bias"]
    state["extra.weight"] = torch.ones(1)
    model = _Net(hidden=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ModelFileError) as ei:
        load_into(model, state, source="net.safetensors")
    msg = str(ei.value)
    assert "net.safetensors does not match the model architecture _Net" in msg
    assert "missing keys (1): fc2.bias" in msg
    assert "unexpected keys (1): extra.weight" in msg
    assert "shape mismatches (3)" in msg and "fc1.weight: file (5, 3) vs model (4, 3)" in msg
    _assert_same(before, model.state_dict())


def test_load_into_from_path_names_file(tmp_path):
    p = save_state(tmp_path / "small.safetensors", _Net(hidden=2).state_dict())
    with pytest.raises(ModelFileError, match=r"small\.safetensors does not match the model architecture"):
        load_into(_Net(hidden=4), p)


def test_load_into_truncates_long_key_lists():
    model = nn.Sequential(*[nn.Linear(1, 1) for _ in range(8)])
    with pytest.raises(ModelFileError, match=r"missing keys \(16\): 0\.weight, 0\.bias, 1\.weight, 1\.bias, 2\.weight, \.\.\. \(11 more\)"):
        load_into(model, {})


def test_no_temp_files_leak_on_success(tmp_path):
    for i in range(3):
        save_state(tmp_path / "m.safetensors", {"a": torch.full((2,), float(i))})
    assert os.listdir(tmp_path) == ["m.safetensors"]
    assert load_state(tmp_path / "m.safetensors")[0]["a"].tolist() == [2.0, 2.0]


# ------------------------------------------------------------------------- refused pickles: never "corrupt"
class _CallsGetcwd:
    def __reduce__(self):
        return (os.getcwd, ())


class _Plain:
    """An innocent class: still refused, since unpickling it would run its module's code."""


def _torch_with_data_pkl(path: Path, data_pkl: bytes) -> None:
    """A genuine torch zip file whose data.pkl is replaced by ``data_pkl``."""
    source = path.with_suffix(".src")
    torch.save({"w": torch.ones(3)}, source)
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            dst.writestr(info, data_pkl if info.filename.endswith("/data.pkl") else src.read(info.filename))
    source.unlink()


@pytest.mark.parametrize("case", ["blocked_module", "legacy_os_system", "plain_class", "numpy_array", "bad_opcode"])
def test_refused_pickle_says_code_never_corrupt_nor_weights_only(tmp_path, case):
    p = tmp_path / "m.pt"
    if case == "blocked_module":
        torch.save({"w": torch.ones(1), "x": _CallsGetcwd()}, p)
    elif case == "legacy_os_system":
        _torch_with_data_pkl(p, b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00trueq\x00\x85R.")
    elif case == "plain_class":
        torch.save({"w": torch.ones(1), "x": _Plain()}, p)
    elif case == "numpy_array":
        import numpy as np

        torch.save({"w": np.zeros(2)}, p)
    else:
        _torch_with_data_pkl(p, b"\x80\x02}\x95.")  # an opcode the tensor-only reader does not know
    with pytest.raises(ModelFileError) as info:
        load_state(p)
    message = str(info.value)
    assert message.startswith(f"{p}: refused because loading it could execute code"), message
    assert "weights_only" not in message and "corrupt" not in message.lower()
    assert "\n" not in message and "safetensors" in message
    if case in ("legacy_os_system", "blocked_module"):
        assert ("'os.system'" if case == "legacy_os_system" else "getcwd") in message


# ------------------------------------------------------------------------- dtypes are never silently cast
@pytest.mark.parametrize("dtype", [torch.int8, torch.bool, torch.int64, torch.uint8])
def test_load_into_refuses_integer_or_bool_weights_for_a_float_model(tmp_path, dtype):
    model = _Net()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["fc1.weight"] = (torch.arange(12).reshape(4, 3) % 2).to(dtype)
    p = save_state(tmp_path / "q.safetensors", state)
    assert load_state(p)[0]["fc1.weight"].dtype == dtype  # loading the file keeps its dtype
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ModelFileError, match=rf"q\.safetensors .*dtype mismatches \(1, not cast.*"
                                             rf"fc1\.weight: file {str(dtype).removeprefix('torch.')} vs model float32"):
        load_into(model, p)
    _assert_same(before, model.state_dict())  # nothing was loaded


def test_load_into_refuses_float_for_an_integer_buffer_and_accepts_other_float_precisions():
    model = nn.BatchNorm1d(3)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["num_batches_tracked"] = torch.tensor(2.5)
    with pytest.raises(ModelFileError, match=r"num_batches_tracked: file float32 vs model int64"):
        load_into(model, state, source="bn")
    state = {k: (v.to(torch.float16) if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    state["weight"] = torch.tensor([0.5, 1.5, 2.0], dtype=torch.float16)
    load_into(model, state)  # a float16 checkpoint for a float32 model: same kind, loaded
    assert model.weight.dtype == torch.float32 and model.weight.tolist() == [0.5, 1.5, 2.0]


# ------------------------------------------------------------------------- permissions and atomic writes
@pytest.fixture
def umask():
    old = os.umask(0o022)
    os.umask(old)

    def set_umask(mask: int) -> None:
        os.umask(mask)

    yield set_umask
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_get_normal_permissions_under_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    written = [
        save_state(tmp_path / "m.safetensors", {"a": torch.ones(2)}),
        nio.atomic_write_bytes(tmp_path / "k.bin", b"key"),
        nio.atomic_write_text(tmp_path / "sub" / "r.json", "{}"),
    ]
    for p in written:
        assert stat.S_IMODE(p.stat().st_mode) == mode, p
    save_state(tmp_path / "m.safetensors", {"a": torch.zeros(2)})  # a replaced output too
    assert stat.S_IMODE((tmp_path / "m.safetensors").stat().st_mode) == mode


def test_atomic_output_failure_keeps_old_content_and_leaves_no_temp(tmp_path):
    target = nio.atomic_write_text(tmp_path / "out.json", "old")
    with pytest.raises(RuntimeError, match="half way"):
        with nio.atomic_output(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("half way")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
