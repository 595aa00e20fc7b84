"""Tests for nnw.cache: content-addressed keys, hits and misses, corruption recovery, concurrent builders."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import torch

import nnw
import nnw.cache as nc
from nnw.cache import ModelCache, cache_key

SPEC = {
    "name": "mlp-mnist-uchida",
    "profile": "robustness",
    "model": {"arch": "mlp", "hidden": [32, 16]},
    "data": {"name": "synthetic", "n": 512},
    "seed": 7,
    "method": {"name": "uchida", "strength": 0.01, "bits": 64},
}


class Builder:
    """Counting build function returning seeded tensors and a record."""

    def __init__(self, seed: int = 0, record: dict | None = None) -> None:
        self.calls = 0
        self.seed = seed
        self.record = {"accuracy": 0.91, "key": [1, 0, 1]} if record is None else record

    def __call__(self):
        self.calls += 1
        g = torch.Generator().manual_seed(self.seed + self.calls)
        return {"w": torch.randn(8, 4, generator=g), "b": torch.zeros(4)}, dict(self.record)


def _equal_states(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- keys -----------------------------------------------------------------------------------------
def test_key_is_sha256_hex_and_stable_under_dict_order():
    reordered = {k: SPEC[k] for k in reversed(list(SPEC))}
    reordered["model"] = {"hidden": [32, 16], "arch": "mlp"}
    key = cache_key(SPEC)
    assert len(key) == 64 and int(key, 16) >= 0
    assert cache_key(reordered) == key
    assert cache_key(json.loads(json.dumps(SPEC))) == key


def _variants():
    yield "name", {**SPEC, "name": "other"}
    yield "profile", {**SPEC, "profile": "integrity"}
    yield "model.hidden", {**SPEC, "model": {"arch": "mlp", "hidden": [32, 17]}}
    yield "model.arch", {**SPEC, "model": {"arch": "cnn", "hidden": [32, 16]}}
    yield "data", {**SPEC, "data": {"name": "synthetic", "n": 513}}
    yield "seed", {**SPEC, "seed": 8}
    yield "seed int->float", {**SPEC, "seed": 7.0}
    yield "method.strength", {**SPEC, "method": {**SPEC["method"], "strength": 0.010000000000000002}}
    yield "method.bits bool", {**SPEC, "method": {**SPEC["method"], "bits": True}}
    yield "extra field", {**SPEC, "epochs": 1}
    yield "none field", {**SPEC, "epochs": None}
    yield "list order", {**SPEC, "model": {"arch": "mlp", "hidden": [16, 32]}}


@pytest.mark.parametrize("label,variant", list(_variants()), ids=[v[0] for v in _variants()])
def test_key_changes_with_any_field(label, variant):
    assert cache_key(variant) != cache_key(SPEC)


def test_all_variant_keys_distinct():
    keys = [cache_key(v) for _, v in _variants()] + [cache_key(SPEC)]
    assert len(set(keys)) == len(keys)


def test_key_depends_on_code_version(monkeypatch):
    before = cache_key(SPEC)
    monkeypatch.setattr(nc, "CODE_VERSION", nc.CODE_VERSION + "-bumped")
    assert cache_key(SPEC) != before
    monkeypatch.undo()
    monkeypatch.setattr(nnw, "__version__", nnw.__version__ + ".post1")
    assert cache_key(SPEC) != before


def test_floats_use_canonical_repr_and_tuples_equal_lists():
    assert cache_key({"lr": 1 / 10}) == cache_key({"lr": 0.1})
    assert cache_key({"lr": 0.1 + 0.2}) != cache_key({"lr": 0.3})
    assert cache_key({"shape": (3, 4)}) == cache_key({"shape": [3, 4]})
    assert nc.canonical_json({"b": 1e-7, "a": [1.5, 2]}) == '{"a":[1.5,2],"b":1e-07}'


@pytest.mark.parametrize(
    "spec,where",
    [
        ({"model": {"arch": object()}}, r"spec\['model'\]\['arch'\] is not JSON-able: got object"),
        ({"data": [1, {1, 2}]}, r"spec\['data'\]\[1\] is not JSON-able: got set"),
        ({"p": Path("x")}, r"spec\['p'\] is not JSON-able"),
        ({"t": torch.tensor(1.0)}, r"spec\['t'\] is not JSON-able: got Tensor"),
        ({"lr": float("nan")}, r"spec\['lr'\] is a non-finite float"),
        ({"m": {3: "x"}}, r"spec\['m'\] has a non-str key 3"),
    ],
)
def test_key_rejects_non_json_values_naming_the_key(spec, where):
    with pytest.raises(TypeError, match=where):
        cache_key(spec)


# -- hits and misses ------------------------------------------------------------------------------
def test_miss_then_hit_builds_once(tmp_path, caplog):
    cache = ModelCache(tmp_path)
    build = Builder()
    assert cache.get(SPEC) is None and not cache.contains(SPEC)
    with caplog.at_level(logging.INFO, logger="nnw.cache"):
        state1, rec1 = cache.get_or_build(SPEC, build)
    assert "nnw cache: building mlp-mnist-uchida ..." in caplog.text
    assert "nnw cache: mlp-mnist-uchida done in" in caplog.text
    state2, rec2 = cache.get_or_build(SPEC, build)
    state3, rec3 = ModelCache(tmp_path).get_or_build(SPEC, build)  # fresh instance, same root
    assert build.calls == 1
    assert rec1 == rec2 == rec3 == {"accuracy": 0.91, "key": [1, 0, 1]}
    assert _equal_states(state1, state2) and _equal_states(state1, state3)
    assert cache.contains(SPEC)
    got = cache.get(SPEC)
    assert got is not None and _equal_states(got[0], state1) and got[1] == rec1


def test_different_spec_is_a_miss(tmp_path):
    cache = ModelCache(tmp_path)
    build = Builder()
    cache.get_or_build(SPEC, build)
    cache.get_or_build({**SPEC, "seed": 8}, build)
    assert build.calls == 2


def test_entry_layout_and_record_json(tmp_path):
    cache = ModelCache(tmp_path)
    cache.get_or_build(SPEC, Builder(record={"accuracy": 0.5, "key": (1, 2)}))
    key = cache_key(SPEC)
    entry = cache.path_for(SPEC)
    assert entry == tmp_path.absolute() / key[:2] / key
    assert sorted(p.name for p in entry.iterdir()) == ["record.json", "state.safetensors"]
    meta = json.loads((entry / "record.json").read_text())
    data = (entry / "state.safetensors").read_bytes()
    assert meta["key"] == key
    assert meta["spec"] == json.loads(json.dumps(SPEC))
    assert meta["record"] == {"accuracy": 0.5, "key": [1, 2]}
    assert meta["state_sha256"] == hashlib.sha256(data).hexdigest()
    assert meta["state_size"] == len(data)
    assert meta["code_version"] == nc.code_version()
    assert isinstance(meta["created"], str) and meta["created_unix"] > 0
    assert list((tmp_path / "tmp").iterdir()) == []


def test_record_only_entry(tmp_path):
    cache = ModelCache(tmp_path)
    spec = {"name": "metrics", "what": "accuracy"}
    state, rec = cache.get_or_build(spec, lambda: ({}, {"accuracy": [0.9, 0.8]}))
    assert state == {} and rec == {"accuracy": [0.9, 0.8]}
    assert cache.get(spec) == ({}, {"accuracy": [0.9, 0.8]})


def test_returned_state_is_detached_cpu_copy(tmp_path):
    cache = ModelCache(tmp_path)
    w = torch.randn(3, requires_grad=True)
    state, _ = cache.get_or_build(SPEC, lambda: ({"w": w, "tied": w}, {}))
    assert not state["w"].requires_grad and torch.equal(state["w"], w.detach())
    assert torch.equal(state["tied"], state["w"])


def test_default_root_from_env_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("NNW_CACHE_DIR", str(tmp_path / "envcache"))
    assert ModelCache().root == (tmp_path / "envcache").absolute()
    monkeypatch.delenv("NNW_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert ModelCache().root == tmp_path / "home" / ".cache" / "nnw"
    assert ModelCache(tmp_path / "explicit").root == tmp_path / "explicit"


def test_build_failure_publishes_nothing_and_releases_lock(tmp_path):
    cache = ModelCache(tmp_path)

    def boom():
        raise RuntimeError("training diverged")

    with pytest.raises(RuntimeError, match="training diverged"):
        cache.get_or_build(SPEC, boom)
    assert not cache.path_for(SPEC).exists()
    build = Builder()
    cache.get_or_build(SPEC, build)
    assert build.calls == 1


@pytest.mark.parametrize(
    "result,match",
    [
        ("not a tuple", r"must return \(state dict, record dict\), got str"),
        (({"w": torch.ones(1)}, [1, 2]), r"must return a dict record, got list"),
        (({"w": torch.ones(1)}, {"acc": torch.tensor(0.5)}), r"record\['acc'\] is not JSON-able"),
        (({"w": 3}, {}), r"'w' must be a torch.Tensor"),
    ],
)
def test_bad_build_result_rejected(tmp_path, result, match):
    cache = ModelCache(tmp_path)
    with pytest.raises(TypeError, match=match):
        cache.get_or_build(SPEC, lambda: result)
    assert not cache.path_for(SPEC).exists()
    tmp = tmp_path / "tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == []


def test_clear(tmp_path):
    cache = ModelCache(tmp_path)
    build = Builder()
    cache.get_or_build(SPEC, build)
    cache.clear()
    assert not cache.contains(SPEC)
    cache.get_or_build(SPEC, build)
    assert build.calls == 2
    ModelCache(tmp_path / "never-created").clear()


# -- corruption -----------------------------------------------------------------------------------
def _truncate(entry: Path) -> None:
    p = entry / "state.safetensors"
    p.write_bytes(p.read_bytes()[:-7])


def _flip(entry: Path) -> None:
    p = entry / "state.safetensors"
    data = bytearray(p.read_bytes())
    data[-5] ^= 0xFF  # inside tensor data: still parses as safetensors, only the checksum can tell
    p.write_bytes(bytes(data))


def _delete_record(entry: Path) -> None:
    (entry / "record.json").unlink()


def _garble_record(entry: Path) -> None:
    p = entry / "record.json"
    p.write_text(p.read_text()[:20])


def _delete_state(entry: Path) -> None:
    (entry / "state.safetensors").unlink()


def _wrong_checksum(entry: Path) -> None:
    p = entry / "record.json"
    meta = json.loads(p.read_text())
    meta["state_sha256"] = "0" * 64
    p.write_text(json.dumps(meta))


def _deeply_nested_record(entry: Path) -> None:
    (entry / "record.json").write_text("[" * 100_000 + "]" * 100_000)  # RecursionError in json.loads


def _deeply_nested_field(entry: Path) -> None:
    p = entry / "record.json"
    text = p.read_text()
    p.write_text('{"key": ' + "[" * 100_000 + "]" * 100_000 + ", " + text.lstrip()[1:])


def _wrong_field_types(entry: Path) -> None:
    p = entry / "record.json"
    meta = json.loads(p.read_text())
    meta["state_sha256"] = 12345  # right size, so the checksum comparison is reached
    p.write_text(json.dumps(meta))


def _record_not_a_dict(entry: Path) -> None:
    p = entry / "record.json"
    meta = json.loads(p.read_text())
    meta["record"] = [[[1]]]
    p.write_text(json.dumps(meta))


DAMAGE = [_truncate, _flip, _delete_record, _garble_record, _delete_state, _wrong_checksum, _deeply_nested_record,
          _deeply_nested_field, _wrong_field_types, _record_not_a_dict]


@pytest.mark.parametrize("damage", DAMAGE, ids=[d.__name__.strip("_") for d in DAMAGE])
def test_corrupt_entry_detected_and_rebuilt(tmp_path, caplog, damage):
    cache = ModelCache(tmp_path)
    build = Builder()
    good_state, _ = cache.get_or_build(SPEC, build)
    damage(cache.path_for(SPEC))
    assert not cache.contains(SPEC)
    with caplog.at_level(logging.WARNING, logger="nnw.cache"):
        state, rec = cache.get_or_build(SPEC, build)
    assert build.calls == 2
    assert "is corrupt" in caplog.text and cache_key(SPEC) in caplog.text
    assert not _equal_states(state, good_state)  # the rebuilt weights, not the damaged ones
    assert rec == {"accuracy": 0.91, "key": [1, 0, 1]}
    assert cache.contains(SPEC)
    again, _ = cache.get_or_build(SPEC, build)
    assert build.calls == 2 and _equal_states(again, state)


@pytest.mark.parametrize("damage", [_flip, _delete_record], ids=["flip", "delete_record"])
def test_get_on_corrupt_entry_returns_none_and_removes_it(tmp_path, caplog, damage):
    cache = ModelCache(tmp_path)
    cache.get_or_build(SPEC, Builder())
    damage(cache.path_for(SPEC))
    with caplog.at_level(logging.WARNING, logger="nnw.cache"):
        assert cache.get(SPEC) is None
    assert "is corrupt" in caplog.text
    assert not cache.path_for(SPEC).exists()


def test_entries_get_normal_permissions_under_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        cache = ModelCache(tmp_path)
        cache.get_or_build(SPEC, Builder())
    finally:
        os.umask(old)
    entry = cache.path_for(SPEC)
    assert entry.stat().st_mode & 0o777 == 0o755
    assert {p.name: p.stat().st_mode & 0o777 for p in entry.iterdir()} == {"record.json": 0o644,
                                                                         "state.safetensors": 0o644}


# -- concurrency ----------------------------------------------------------------------------------
def test_threads_race_build_once(tmp_path):
    cache_dir = tmp_path / "cache"
    build = Builder()
    lock = threading.Lock()
    results: list = []
    barrier = threading.Barrier(4)

    def slow_build():
        with lock:
            out = build()
        threading.Event().wait(0.2)
        return out

    def worker():
        barrier.wait()
        results.append(ModelCache(cache_dir).get_or_build(SPEC, slow_build))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert build.calls == 1 and len(results) == 4
    assert all(_equal_states(r[0], results[0][0]) and r[1] == results[0][1] for r in results)


def test_publish_keeps_entry_that_appeared_meanwhile(tmp_path):
    cache = ModelCache(tmp_path)
    key = cache_key(SPEC)
    first = {"w": torch.ones(3)}
    cache._publish(key, SPEC, first, {"who": "first"})
    cache._publish(key, SPEC, {"w": torch.zeros(3)}, {"who": "second"})  # lost the race: discarded
    got = cache.get(SPEC)
    assert got is not None and _equal_states(got[0], first) and got[1] == {"who": "first"}
    assert list((tmp_path / "tmp").iterdir()) == []


RACE_SCRIPT = textwrap.dedent(
    """
    import hashlib, os, sys, time
    from pathlib import Path
    import torch
    from nnw.cache import ModelCache

    cache_dir, counter, ready_dir, me = sys.argv[1:5]
    spec = {"name": "race", "seed": 3, "model": {"arch": "mlp"}}

    def build():
        time.sleep(0.5)
        with open(counter, "a") as fh:
            fh.write(f"{me}\\n")
        g = torch.Generator().manual_seed(int.from_bytes(os.urandom(4), "little"))  # differs per builder
        return {"w": torch.randn(64, 32, generator=g), "b": torch.randn(32, generator=g)}, {"who": me}

    Path(ready_dir, me).touch()
    deadline = time.monotonic() + 60
    while len(os.listdir(ready_dir)) < 2:  # start both get_or_build calls together
        if time.monotonic() > deadline:
            sys.exit("the other process never became ready")
        time.sleep(0.01)
    state, record = ModelCache(cache_dir).get_or_build(spec, build)
    digest = hashlib.sha256(b"".join(state[k].numpy().tobytes() for k in sorted(state))).hexdigest()
    print(f"CHECKSUM {digest} {record['who']}")
    """
)


def test_two_processes_race_exactly_one_builds(tmp_path):
    cache_dir, counter, ready = tmp_path / "cache", tmp_path / "counter.txt", tmp_path / "ready"
    ready.mkdir()
    env = {**os.environ, "PYTHONPATH": str(Path(nnw.__file__).parent.parent)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACE_SCRIPT, str(cache_dir), str(counter), str(ready), name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for name in ("p1", "p2")
    ]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, f"race subprocess failed:\n{err}"
        outs.append([line for line in out.splitlines() if line.startswith("CHECKSUM")])
    assert counter.read_text().splitlines() in (["p1"], ["p2"])
    assert len(outs[0]) == len(outs[1]) == 1
    assert outs[0] == outs[1]
    assert outs[0][0].split()[2] == counter.read_text().strip()


def test_get_or_build_without_waiting_returns_none_while_another_builds(tmp_path):
    cache = ModelCache(tmp_path)
    lock = cache._lock(cache_key(SPEC))
    with lock:  # as if another process held it (filelock is re-entrant per object, so use a new cache object)
        other = ModelCache(tmp_path)
        other_lock = other._lock(cache_key(SPEC))
        assert other_lock.lock_file == lock.lock_file
        build = Builder()
        got: list = []
        t = threading.Thread(target=lambda: got.append(other.get_or_build(SPEC, build, wait=False)))
        t.start()
        t.join(timeout=30)
        assert got == [None] and build.calls == 0
    state, record = cache.get_or_build(SPEC, Builder(), wait=False)  # free now: builds
    assert record == Builder()()[1]
