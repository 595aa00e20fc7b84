"""End-to-end tests of the ``nnw`` command (nnw/cli.py) on model and key files.

The key chain (keygen -> embed -> detect) and the malicious pickle run ``python -m nnw`` in a real
subprocess (exit status, stdout/stderr, no traceback, the pickle's payload not run). Every
subprocess pays the torch + scipy import (3-12 s on a loaded 2-core machine), so the other cases
call :func:`nnw.cli.main` in-process: the same argument parsing, commands, output and exit
statuses, without the process start-up.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nnw.cli import main
from nnw.io import save_state
from nnw.methods.keys import load_key, save_key
from nnw.models import build_model
from nnw.modifications import make_modification

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

ARCH = ["--arch", "ResNet8", "--arch-kw", "width=0.5"]
VGG = ["--arch", "VGG16", "--arch-kw", "width=0.0625"]


class _Evil:
    """Unpickling this runs code: it creates ``marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def _resnet(seed: int) -> torch.nn.Module:
    return build_model("ResNet8", seed=seed, width=0.5)




@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """Model files: three unrelated ResNet8s, modified copies of the first, and bad inputs."""
    d = tmp_path_factory.mktemp("cli")
    base = _resnet(0)
    save_state(d / "model.safetensors", base.state_dict())
    save_state(d / "other.safetensors", _resnet(1).state_dict())
    save_state(d / "third.safetensors", _resnet(2).state_dict())
    save_state(d / "stranger.safetensors", _resnet(3).state_dict())
    for name, mod in {
        "noise": make_modification("noise", S=0.001),
        "quant": make_modification("quantization", B=16),
        "prune": make_modification("pruning", P=1),
    }.items():
        save_state(d / f"{name}.safetensors", mod.apply(base).state_dict())
    torch.save(base.state_dict(), d / "plain.pt")  # a weights-only state dict pickle is accepted
    save_state(d / "vgg.safetensors", build_model("VGG16", seed=0, width=0.0625).state_dict())
    nan_state = base.state_dict()
    nan_state["conv1.weight"] = nan_state["conv1.weight"].clone()
    nan_state["conv1.weight"][0, 0, 0, 0] = float("nan")
    save_state(d / "nan.safetensors", nan_state)
    (d / "corrupt.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\":" + b"\x00" * 40)
    torch.save({"conv1.weight": torch.ones(1), "x": _Evil(str(d / "PWNED"))}, d / "evil.pt")
    return d


def nnw_subprocess(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("NNW_TRACEBACK", None)
    return subprocess.run(
        [sys.executable, "-m", "nnw", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def nnw(capsys, cwd: Path, *args: str) -> tuple[int, str, str]:
    """Run ``nnw args`` in-process in ``cwd``: (exit status, stdout, stderr)."""
    capsys.readouterr()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        rc = main(list(args))
    finally:
        os.chdir(old)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def nct_chain(work: Path) -> dict[str, subprocess.CompletedProcess]:
    """keygen -> embed -> detect --json through ``python -m nnw`` (3 subprocesses)."""
    runs = {
        "keygen": nnw_subprocess(work, "keygen", "--method", "NCT", *ARCH, "--seed", "11",
                                 "--config", "N=1024", "--out", "alice.key"),
    }
    runs["embed"] = nnw_subprocess(work, "embed", "--model", "model.safetensors", *ARCH,
                                   "--key", "alice.key", "--out", "marked.safetensors")
    runs["detect"] = nnw_subprocess(work, "detect", "--model", "marked.safetensors", *ARCH,
                                    "--key", "alice.key", "--json")
    return runs


# ------------------------------------------------------------------------- NCT watermark
def test_keygen_embed_detect_end_to_end(nct_chain, work):
    kg, em, det = nct_chain["keygen"], nct_chain["embed"], nct_chain["detect"]
    assert kg.returncode == 0, kg.stderr
    assert "NCT key" in kg.stdout and "alice.key" in kg.stdout
    assert em.returncode == 0, em.stderr
    assert "marked.safetensors" in em.stdout and "rewrote the key file alice.key with its Original Traceability Data" in em.stdout
    key = load_key(work / "alice.key")
    assert key.method == "NCT" and key.config["N"] == 1024 and "original" in key.tensors  # embed filled it
    assert det.returncode == 0, det.stderr
    result = json.loads(det.stdout)
    assert result["status"] == "found" and result["present"] is True and result["exit_code"] == 0
    assert result["score"] > result["threshold"] and result["p_value"] < 0.05
    assert result["details"]["n"] == 1024


def test_detect_unmarked_and_human_output(nct_chain, work, capsys):
    rc, out, err = nnw(capsys, work, "detect", "--model", "model.safetensors", *ARCH, "--key", "alice.key")
    assert rc == 1, err
    assert out.startswith("not found: NCT mark of alice.key in model.safetensors")
    assert "score" in out and "threshold" in out and "p-value" in out
    # the same model as a weights-only .pt state dict is accepted, and the marked copy is found
    rc, out, _ = nnw(capsys, work, "detect", "--model", "plain.pt", *ARCH, "--key", "alice.key")
    assert rc == 1 and out.startswith("not found")
    rc, out, _ = nnw(capsys, work, "detect", "--model", "marked.safetensors", *ARCH, "--key", "alice.key")
    assert rc == 0 and out.startswith("found")


def test_embed_refuses_a_used_key_and_in_training_methods(nct_chain, work, capsys):
    rc, _, err = nnw(capsys, work, "embed", "--model", "model.safetensors", *ARCH,
                     "--key", "alice.key", "--out", "again.safetensors")
    assert rc == 2 and "already holds Original Traceability Data" in err and len(err.strip().splitlines()) == 1
    assert not (work / "again.safetensors").exists()
    rc, _, _ = nnw(capsys, work, "keygen", "--method", "RTW", *ARCH, "--seed", "1", "--out", "rtw0.key")
    assert rc == 0
    rc, _, err = nnw(capsys, work, "embed", "--model", "model.safetensors", *ARCH,
                     "--key", "rtw0.key", "--out", "rtw.safetensors")
    assert rc == 2 and "inserted in training" in err and err.count("\n") == 1
    assert not (work / "rtw.safetensors").exists()


def test_embed_key_out_keeps_the_fresh_key(work, capsys):
    """--key-out writes the filled key elsewhere; a method may be named by import path."""
    rc, _, err = nnw(capsys, work, "keygen", "--method", "nnw.methods.nct:NCT", *ARCH, "--seed", "5",
                     "--config", "N=256", "--config", "actor=9", "--out", "bob.key")
    assert rc == 0, err
    rc, out, err = nnw(capsys, work, "embed", "--model", "other.safetensors", *ARCH, "--key", "bob.key",
                       "--out", "bob_marked.safetensors", "--key-out", "bob_used.key", "--json")
    assert rc == 0, err
    assert json.loads(out)["key_file"] == "bob_used.key"
    assert "original" not in load_key(work / "bob.key").tensors
    used = load_key(work / "bob_used.key")
    assert "original" in used.tensors and used.config["actor"] == 9
    rc, out, _ = nnw(capsys, work, "detect", "--model", "bob_marked.safetensors", *ARCH, "--key", "bob_used.key")
    assert rc == 0 and out.startswith("found")


# ------------------------------------------------------------------------- RTW decoding
def test_rtw_decode_identifies_the_actor(work, capsys):
    from nnw.hooks import TrainContext
    from nnw.methods.rtw import RTW

    model = _resnet(5)
    rtw = RTW()
    key = rtw.keygen(model, seed=3, config={"actor": 4242, "T": 32, "lam": 1.0})
    save_key(work / "rtw.key", key)
    save_state(work / "rtw_unmarked.safetensors", model.state_dict())
    hook = rtw.training_hook(key)
    ctx = TrainContext(device=torch.device("cpu"), epochs=1, steps_per_epoch=100)
    hook.on_train_start(model, ctx)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(100):  # the Regularization Term alone: enough to write the 32 bits
        opt.zero_grad()
        hook.extra_loss(model, ctx).backward()
        opt.step()
    save_state(work / "rtw_marked.safetensors", model.state_dict())

    rc, out, err = nnw(capsys, work, "decode", "--model", "rtw_marked.safetensors", *ARCH, "--key", "rtw.key")
    assert rc == 0, err
    assert out.startswith("decoded: RTW payload") and "actor id 4242" in out
    rc, out, _ = nnw(capsys, work, "decode", "--model", "rtw_marked.safetensors", *ARCH, "--key", "rtw.key", "--json")
    result = json.loads(out)
    assert (result["actor_id"], result["valid"], result["ber"], result["key_actor"]) == (4242, True, 0.0, 4242)
    assert len(result["payload"]) == 32 and set(result["payload"]) <= {"0", "1"}
    rc, out, _ = nnw(capsys, work, "detect", "--model", "rtw_marked.safetensors", *ARCH, "--key", "rtw.key")
    assert rc == 0 and out.startswith("found: RTW")
    rc, out, _ = nnw(capsys, work, "decode", "--model", "rtw_unmarked.safetensors", *ARCH, "--key", "rtw.key", "--json")
    result = json.loads(out)
    assert rc == 1 and result["status"] == "corrupt" and result["valid"] is False and result["actor_id"] is None


# ------------------------------------------------------------------------- integrity, fingerprints
@pytest.fixture(scope="module")
def database(work: Path) -> Path:
    db = work / "db"
    for name in ("model", "other", "third"):
        rc = main(["fingerprint", "--model", str(work / f"{name}.safetensors"), *ARCH,
                   "--seed", "7", "--out", str(db / f"{name}.ref")])
        assert rc == 0
    (db / "README.txt").write_text("not a fingerprint")  # a directory may hold other files
    return db


def test_verify_integrity_intact(database, work, capsys):
    rc, out, err = nnw(capsys, work, "verify-integrity", "--model", "model.safetensors", *ARCH,
                       "--reference", "db/model.ref", "--json")
    assert rc == 0, err
    result = json.loads(out)
    assert result["status"] == "intact" and result["intact"] is True
    assert result["changed_tensors"] == [] and result["changed_positions"] == 0
    assert result["max_abs_deviation"] == 0.0 and result["spearman_rho"] == pytest.approx(1.0)
    assert result["N"] == 4096


@pytest.mark.parametrize("modified", ["noise", "quant", "prune"])
def test_verify_integrity_detects_slight_modifications(database, work, capsys, modified):
    """Noise S=0.001, quantization B=16, pruning P=1%: each is judged modified (exit 1)."""
    rc, out, err = nnw(capsys, work, "verify-integrity", "--model", f"{modified}.safetensors", *ARCH,
                       "--reference", "db/model.ref")
    assert rc == 1, err
    assert out.startswith(f"modified: {modified}.safetensors differs from the reference 'model'")
    assert "changed tensors:" in out and "Spearman rho" in out and "max |deviation|" in out


def test_match_identifies_the_model(database, work, capsys):
    rc, out, err = nnw(capsys, work, "match", "--model", "noise.safetensors", *ARCH, "--database", "db", "--json")
    assert rc == 0, err
    result = json.loads(out)
    assert result["status"] == "matched" and result["best"]["name"] == "model"
    assert result["best"]["identical"] is False
    assert [e["name"] for e in result["entries"]][0] == "model" and len(result["entries"]) == 3
    assert result["skipped"] == [{"file": str(Path("db") / "README.txt"), "reason": "not an nnw key file"}]
    rc, out, _ = nnw(capsys, work, "match", "--model", "other.safetensors", *ARCH,
                     "--key", "db/other.ref", "--database", "db/model.ref", "db/other.ref", "db/third.ref")
    assert rc == 0 and out.startswith("matched: other.safetensors is 'other' (db/other.ref)")
    assert "bit-identical" in out
    rc, out, _ = nnw(capsys, work, "match", "--model", "stranger.safetensors", *ARCH, "--database", "db")
    assert rc == 1 and out.startswith("no match:")


# ------------------------------------------------------------------------- bad input: exit 2, one line
def test_malicious_pickle_is_refused_in_a_subprocess(nct_chain, work):
    proc = nnw_subprocess(work, "detect", "--model", "evil.pt", *ARCH, "--key", "alice.key")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("nnw detect: error:") and "would execute code" in proc.stderr
    assert not (work / "PWNED").exists()


@pytest.mark.parametrize(
    "args, expected",
    [
        (["detect", "--model", "missing.safetensors", *ARCH, "--key", "alice.key"], "missing.safetensors: model file not found"),
        (["detect", "--model", "corrupt.safetensors", *ARCH, "--key", "alice.key"], "corrupt or truncated safetensors"),
        (["detect", "--model", "evil.pt", *ARCH, "--key", "alice.key"], "would execute code"),
        (["detect", "--model", "nan.safetensors", *ARCH, "--key", "alice.key"], "'conv1.weight' has 1 non-finite"),
        (["detect", "--model", "vgg.safetensors", *VGG, "--key", "alice.key"], "NCT key does not fit this model"),
        (["detect", "--model", "model.safetensors", "--arch", "ResNet8", "--key", "alice.key"], "check --arch/--arch-kw"),
        (["detect", "--model", "model.safetensors", *ARCH, "--key", "missing.key"], "key file 'missing.key' does not exist"),
        (["detect", "--model", "model.safetensors", *ARCH, "--key", "model.safetensors"], "is not an nnw key file"),
        (["keygen", "--method", "NOPE", *ARCH, "--seed", "1", "--out", "x.key"], "unknown traceability method 'NOPE'"),
        (["keygen", "--method", "NCT", "--arch", "ResNet9", "--seed", "1", "--out", "x.key"], "unknown architecture 'ResNet9'"),
        (["keygen", "--method", "NCT", *ARCH, "--seed", "1", "--config", "M=3", "--out", "x.key"], "unknown NCT config key"),
        (["decode", "--model", "model.safetensors", *ARCH, "--key", "alice.key"], "NCT carries no payload bits"),
        (["verify-integrity", "--model", "model.safetensors", *ARCH, "--reference", "alice.key"], "not an integrity reference"),
    ],
    ids=["missing", "corrupt", "pickle", "nan", "other-arch", "wrong-width", "no-key", "not-a-key",
         "method", "arch", "config", "no-decode", "no-reference"],
)
def test_bad_input_exits_2_with_one_line(nct_chain, work, capsys, args, expected):
    rc, out, err = nnw(capsys, work, *args)
    assert rc == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith(f"nnw {args[0]}: error:"), err
    assert expected in err
    assert not (work / "x.key").exists() and not (work / "PWNED").exists()
    rc, out, err = nnw(capsys, work, *args, "--json")
    assert rc == 2 and json.loads(out)["status"] == "error" and expected in json.loads(out)["error"]


# ------------------------------------------------------------------------- the same, as real processes
@pytest.mark.parametrize("args, code, expected", [
    (["match", "--model", "noise.safetensors", *ARCH, "--database", "db"], 0, "matched: noise.safetensors is 'model'"),
    (["verify-integrity", "--model", "model.safetensors", *ARCH, "--reference", "db/model.ref"], 0, "intact:"),
    (["verify-integrity", "--model", "quant.safetensors", *ARCH, "--reference", "db/model.ref"], 1, "modified:"),
    (["detect", "--model", "missing.safetensors", *ARCH, "--key", "alice.key"], 2, "model file not found"),
    (["detect", "--model", "corrupt.safetensors", *ARCH, "--key", "alice.key"], 2, "corrupt or truncated"),
    (["detect", "--model", "vgg.safetensors", *VGG, "--key", "alice.key"], 2, "NCT key does not fit this model"),
    (["detect", "--model", "nan.safetensors", *ARCH, "--key", "alice.key"], 2, "non-finite"),
], ids=["identify", "intact", "modified", "missing", "corrupt", "other-arch", "nan"])
def test_use_cases_and_bad_input_in_subprocesses(nct_chain, database, work, args, code, expected):
    """Identify the NN, verify its integrity, and the bad inputs, through ``python -m nnw`` itself."""
    proc = nnw_subprocess(work, *args)
    assert proc.returncode == code, proc.stderr
    if code == 2:
        assert proc.stdout == "" and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
        assert expected in proc.stderr
    else:
        assert proc.stdout.startswith(expected), proc.stdout


def test_make_cifar10_writes_a_loadable_stand_in(tmp_path, capsys):
    from nnw.data.cifar10 import load_cifar10

    assert main(["make-cifar10", "--root", str(tmp_path), "--train", "20", "--test", "5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "ok" and out["folder"].endswith("cifar-10-batches-bin")
    assert load_cifar10(tmp_path, train=True).x.shape == (20, 3, 32, 32)
    assert load_cifar10(tmp_path, train=False).y.shape == (5,)
    assert main(["make-cifar10", "--root", str(tmp_path / "x"), "--train", "0"]) == 2
    assert "--train and --test must be >= 1" in capsys.readouterr().err
