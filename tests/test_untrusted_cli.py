"""The ``nnw`` command on hostile inputs (issue 15, items 2–7): key files that would choose code or
set their own threshold, sizes without bounds, outputs that would destroy inputs or stay half
written, fingerprint keys given to ``embed``, float64 re-saves, malformed key values, file modes.

Every case that could harm the process (a key naming ``os:abort``, a ``.py`` beside the key, a
memory-hungry config, a write that fails half-way) runs ``python -m nnw`` (or the ``nnw`` console
script) in a real process, started together in one fixture so that their torch imports overlap.
The path clashes, and keys naming an unknown method, are refused before torch is imported, so each
of those processes takes a fraction of a second. The other cases call :func:`nnw.cli.main` in-process (the same parsing,
commands, output and exit status, without paying torch's import per case).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from nnw.cli import main
from nnw.io import save_state
from nnw.methods.base import Key
from nnw.methods.keys import KEY_FORMAT, load_key, save_key
from nnw.methods.nct import NCT
from nnw.methods.tbw import TBW
from nnw.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

ARCH = ["--arch", "ResNet8", "--arch-kw", "width=0.25"]
EVIL_MODULE = """\
open("PWNED_BESIDE", "w").write("imported")


def run():
    open("PWNED_RUN", "w").write("called")
"""


def _model(seed: int = 0) -> torch.nn.Module:
    return build_model("ResNet8", seed=seed, width=0.25)


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **extra}
    env.pop("NNW_TRACEBACK", None)
    return env


def _start(cwd: Path, *args: str, env: dict[str, str] | None = None, preexec=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nnw", *args], cwd=cwd, env=env or _env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=preexec)


def _finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def _one_error_line(err: str, command: str) -> None:
    assert err.count("\n") == 1 and err.startswith(f"nnw {command}: error: "), err
    assert "Traceback" not in err


def _save_raw_key(path: Path, method: str, config: str, tensors: dict[str, torch.Tensor], signature: dict) -> None:
    """A key file written byte for byte as an attacker would (no checks on the way)."""
    save_file(tensors, str(path), metadata={"format": KEY_FORMAT, "method": method, "config": config,
                                           "model_signature": json.dumps(signature)})


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("untrusted")
    model = _model(0)
    save_state(d / "model.safetensors", model.state_dict())
    nct = NCT()
    save_key(d / "nct.key", nct.keygen(model, seed=1, config={"N": 256}))
    save_key(d / "fp.key", nct.keygen(model, seed=2, config={"N": 256, "mode": "fingerprint"}))
    good = load_key(d / "nct.key")
    for name, method in (("abort", "os:abort"), ("mkdtemp", "tempfile:mkdtemp"), ("beside", "evil_beside:run")):
        evil = Key(method=method, config=good.config, tensors=good.tensors, model_signature=good.model_signature)
        save_key(d / f"{name}.key", evil)
    (d / "evil_beside.py").write_text(EVIL_MODULE)
    (d / "not_a_dir").write_text("a file where a folder is expected")
    (d / "tmp_for_mkdtemp").mkdir()
    return d


@pytest.fixture(scope="module")
def procs(work: Path) -> dict[str, tuple[int, str, str]]:
    """The cases that need a real process, started together (their torch imports overlap)."""
    def small_files() -> None:  # a write beyond 60 kB fails with EFBIG (Python ignores SIGXFSZ)
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    started = {
        "abort": _start(work, "detect", "--model", "model.safetensors", *ARCH, "--key", "abort.key"),
        "mkdtemp": _start(work, "detect", "--model", "model.safetensors", *ARCH, "--key", "mkdtemp.key",
                          env=_env(TMPDIR=str(work / "tmp_for_mkdtemp"))),
        "beside": _start(work, "detect", "--model", "model.safetensors", *ARCH, "--key", "beside.key"),
        "n_triggers": _start(work, "keygen", "--method", "TBW", *ARCH, "--seed", "1",
                             "--config", "n_triggers=10000000", "--out", "huge.key"),
        "key_dir": _start(work, "embed", "--model", "model.safetensors", *ARCH, "--key", "nct.key",
                          "--out", "marked_nowhere.safetensors", "--key-out", "not_a_dir/used.key"),
        "cifar_fails": _start(work, "make-cifar10", "--root", "cifar_root/sub", "--train", "100", "--test", "50",
                              preexec=small_files),
    }
    return {name: _finish(p) for name, p in started.items()}


# --------------------------------------------------------------------- item 2: a key never selects code
@pytest.mark.parametrize("case", ["abort", "mkdtemp", "beside"])
def test_a_key_file_never_chooses_the_code(procs, work, case):
    rc, out, err = procs[case]
    assert rc == 2, (rc, err)  # os:abort run would die with SIGABRT (-6)
    assert out == ""
    _one_error_line(err, "detect")
    assert "is not a known method" in err and "pass --method" in err
    assert not (work / "PWNED_BESIDE").exists() and not (work / "PWNED_RUN").exists()
    assert list((work / "tmp_for_mkdtemp").iterdir()) == []  # tempfile.mkdtemp never ran


def test_the_loaded_key_is_checked_too(work, monkeypatch):
    """Past the early look at the key's header, the loaded key's method is resolved among the built-ins
    and the installed entry points only (nnw.methods.registry.get_known_method)."""
    import tempfile

    from nnw.cli import _BUILTIN_NAMES, CLIError, resolve_method
    from nnw.methods.registry import BUILTINS

    assert _BUILTIN_NAMES == tuple(BUILTINS)
    monkeypatch.setattr(tempfile, "tempdir", str(work / "tmp_for_mkdtemp"))
    for method in ("tempfile:mkdtemp", "os:abort", "evil_beside:run", "nnw.methods.nct:NCT"):
        key = load_key(work / "nct.key")
        key.method = method
        with pytest.raises(CLIError, match="is not a known method.*pass --method"):
            resolve_method(None, key)
    assert list((work / "tmp_for_mkdtemp").iterdir()) == []
    assert resolve_method(None, load_key(work / "nct.key")).name == "NCT"


def test_an_explicit_method_reads_the_key_and_still_checks_it(work, capsys):
    """--method chooses the code; the key must then be that method's key."""
    capsys.readouterr()
    rc = main(["detect", "--model", str(work / "model.safetensors"), *ARCH, "--key", str(work / "abort.key"),
               "--method", "nnw.methods.nct:NCT"])
    err = capsys.readouterr().err
    assert rc == 2 and "'os:abort' key; NCT cannot use it" in err and err.count("\n") == 1


# --------------------------------------------------------------------- items 3 and 6: thresholds, sizes
def test_a_size_from_a_config_is_bounded(procs, work):
    rc, out, err = procs["n_triggers"]
    assert rc == 2 and out == ""
    _one_error_line(err, "keygen")
    assert "'n_triggers': 10000000 exceeds its bound 10000" in err
    assert not (work / "huge.key").exists()


@pytest.mark.parametrize("config, expected", [
    (["threshold=0"], "does not set its decision threshold"),
    (["threshold=-1"], "does not set its decision threshold"),
    (["n_triggers=100", "shape=[3,1024,1024]"], "trigger values exceeds the bound"),
    (["num_classes=1"], "'num_classes': 1 is below its minimum 2"),
    (["rho=2.5"], "'rho': 2.5 is not an integer"),
], ids=["threshold0", "threshold-1", "trigger-values", "classes", "rho"])
def test_keygen_refuses_out_of_range_configs(work, capsys, config, expected):
    args = ["keygen", "--method", "TBW", *ARCH, "--seed", "1", "--out", str(work / "bad_tbw.key")]
    for c in config:
        args += ["--config", c]
    capsys.readouterr()
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and expected in err, err
    assert not (work / "bad_tbw.key").exists()


@pytest.mark.parametrize("method, config, expected", [
    ("NCT", "N=1000000000", "'N': 1000000000 exceeds its bound"),
    ("NCT", "N=100000", "exceeds the number of weights"),
    ("RTW", "T=100000", "'T': 100000 exceeds its bound 4096"),
    ("RTW", "lam=0", "'lam': 0 must be above 0"),
])
def test_keygen_bounds_of_nct_and_rtw(work, capsys, method, config, expected):
    capsys.readouterr()
    rc = main(["keygen", "--method", method, *ARCH, "--seed", "1", "--config", config, "--out", str(work / "b.key")])
    err = capsys.readouterr().err
    assert rc == 2 and expected in err and err.count("\n") == 1, err
    assert not (work / "b.key").exists()


def test_an_architecture_is_bounded_before_it_is_allocated(work, capsys):
    capsys.readouterr()
    rc = main(["keygen", "--method", "NCT", *ARCH, "--arch-kw", "num_classes=1000000000", "--seed", "1",
               "--out", str(work / "huge_arch.key")])  # 17e9 parameters: counted on the meta device, never allocated
    err = capsys.readouterr().err
    assert rc == 2 and "has 17000005080 parameters, above the bound" in err and err.count("\n") == 1
    assert not (work / "huge_arch.key").exists()


def test_a_key_never_sets_its_own_threshold(work, capsys):
    """A TBW key with threshold 0 would call every model marked: refused, naming the file and the field.
    An older key that only repeats the spec's 0.40 is read, and decided by the spec's rule."""
    model = _model(0)
    key = TBW().keygen(model, seed=3)
    for name, threshold in (("tbw0.key", 0), ("tbw_neg.key", -1), ("tbw_legacy.key", 0.4)):
        save_key(work / name, Key("TBW", {**key.config, "threshold": threshold}, key.tensors, key.model_signature))
    for name in ("tbw0.key", "tbw_neg.key"):
        capsys.readouterr()
        rc = main(["detect", "--model", str(work / "model.safetensors"), *ARCH, "--key", str(work / name)])
        out, err = capsys.readouterr()
        assert rc == 2 and out == "" and err.count("\n") == 1
        assert name in err and "'threshold'" in err and "does not set its decision threshold" in err
        assert "share > 0.4" in err
    rc = main(["detect", "--model", str(work / "model.safetensors"), *ARCH, "--key", str(work / "tbw_legacy.key"),
               "--json"])
    result = json.loads(capsys.readouterr().out)
    assert rc == 1 and result["status"] == "not found" and result["threshold"] == 0.4


# --------------------------------------------------------------------- item 4: clashing paths, all or none
def test_outputs_never_overwrite_inputs(work):
    """Refused before anything is imported or written (each process is quick): same name, another
    spelling, a symbolic link, a hard link."""
    (work / "link.safetensors").symlink_to(work / "model.safetensors")
    os.link(work / "nct.key", work / "hard.key")
    before = {p.name: p.read_bytes() for p in work.iterdir() if p.is_file()}
    cases = [
        (["embed", "--model", "model.safetensors", *ARCH, "--key", "nct.key", "--out", "nct.key"],
         "--out 'nct.key' is the same file as --key"),
        (["embed", "--model", "model.safetensors", *ARCH, "--key", "nct.key", "--out", "hard.key"],
         "--out 'hard.key' is the same file as --key"),
        (["embed", "--model", "model.safetensors", *ARCH, "--key", "nct.key", "--out", "m2.safetensors",
          "--key-out", "m2.safetensors"], "--key-out and --out are the same file"),
        (["embed", "--model", "model.safetensors", *ARCH, "--key", "nct.key", "--out", "m2.safetensors",
          "--key-out", "./model.safetensors"], "--key-out './model.safetensors' is the same file as --model"),
        (["embed", "--model", "model.safetensors", *ARCH, "--key", "nct.key", "--out", "link.safetensors"],
         "--out 'link.safetensors' is the same file as --model"),
        (["fingerprint", "--model", "model.safetensors", *ARCH, "--seed", "1", "--out", "model.safetensors"],
         "--out 'model.safetensors' is the same file as --model"),
        (["keygen", "--method", "NCT", *ARCH, "--seed", "1", "--model", "link.safetensors",
          "--out", "model.safetensors"], "--out 'model.safetensors' is the same file as --model"),
        (["keygen", "--method", "NCT", *ARCH, "--seed", "1", "--config", "overlap_with=nct.key",
          "--out", "nct.key"], "same file as --config overlap_with"),
    ]
    nnw_script = Path(sys.executable).with_name("nnw")
    for i, (args, expected) in enumerate(cases):
        cmd = [str(nnw_script), *args] if i % 2 and nnw_script.exists() else [sys.executable, "-m", "nnw", *args]
        proc = subprocess.run(cmd, cwd=work, env=_env(), capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and proc.stdout == "", (args, proc.stderr)
        _one_error_line(proc.stderr, args[0])
        assert expected in proc.stderr and "nothing was written" in proc.stderr
    after = {p.name: p.read_bytes() for p in work.iterdir() if p.is_file()}
    assert after == before  # not a byte written, no new file


def test_embed_with_an_unwritable_key_folder_leaves_no_marked_model(procs, work):
    rc, out, err = procs["key_dir"]
    assert rc == 2 and out == ""
    _one_error_line(err, "embed")
    assert "cannot write 'not_a_dir/used.key'" in err
    assert not (work / "marked_nowhere.safetensors").exists()
    assert not [p for p in work.iterdir() if p.name.endswith(".part")]
    assert "original" not in load_key(work / "nct.key").tensors  # the input key is untouched


def test_a_failed_make_cifar10_leaves_nothing_behind(procs, work):
    rc, out, err = procs["cifar_fails"]
    assert rc == 2 and out == ""
    _one_error_line(err, "make-cifar10")
    assert "File too large" in err and "nothing was left behind" in err
    assert not (work / "cifar_root").exists()  # not even the folders it created


def test_make_cifar10_refuses_to_replace_an_existing_stand_in(tmp_path, capsys):
    root = tmp_path / "data"
    (root / "other-dataset").mkdir(parents=True)  # a data root may hold other datasets
    args = ["make-cifar10", "--root", str(root), "--train", "10", "--test", "5"]
    assert main(args) == 0
    first = (root / "cifar-10-batches-bin" / "test_batch.bin").read_bytes()
    capsys.readouterr()
    assert main([*args, "--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert "already exists; pass --force" in err and err.count("\n") == 1
    assert (root / "cifar-10-batches-bin" / "test_batch.bin").read_bytes() == first
    assert main([*args, "--seed", "1", "--force"]) == 0
    assert (root / "cifar-10-batches-bin" / "test_batch.bin").read_bytes() != first
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-batches-bin", "other-dataset"]  # no temporaries
    (tmp_path / "real" / "cifar-10-batches-py").mkdir(parents=True)
    capsys.readouterr()
    assert main(["make-cifar10", "--root", str(tmp_path / "real"), "--train", "10", "--test", "5", "--force"]) == 2
    assert "python batches" in capsys.readouterr().err
    assert main(["make-cifar10", "--root", str(tmp_path / "big"), "--train", "50001"]) == 2
    assert "bounded by CIFAR-10's sizes" in capsys.readouterr().err and not (tmp_path / "big").exists()


# --------------------------------------------------------------------- item 5: fingerprint keys are not marks
def test_embed_refuses_an_nct_fingerprint_key(work, capsys):
    capsys.readouterr()
    rc = main(["embed", "--model", str(work / "model.safetensors"), *ARCH, "--key", str(work / "fp.key"),
               "--out", str(work / "fp_marked.safetensors")])
    out, err = capsys.readouterr()
    assert rc == 2 and out == "" and err.count("\n") == 1
    assert "fingerprint mode" in err and "nothing to embed" in err
    assert not (work / "fp_marked.safetensors").exists()
    assert "original" not in load_key(work / "fp.key").tensors


# --------------------------------------------------------------------- item 7: integrity, malformed keys, modes
def test_verify_integrity_is_not_fooled_by_a_float64_resave(tmp_path, capsys):
    base = _model(0).state_dict()
    save_state(tmp_path / "model.safetensors", base)
    assert main(["fingerprint", "--model", str(tmp_path / "model.safetensors"), *ARCH, "--seed", "1",
                 "--out", str(tmp_path / "model.ref")]) == 0
    # an exact float64 copy, and a modification finer than float32 can hold: both read back as the
    # same float32 weights once loaded into the architecture
    exact = {k: v.double() if v.is_floating_point() else v for k, v in base.items()}
    finer = {k: v.double() * (1 + 1e-12) if v.is_floating_point() else v for k, v in base.items()}
    assert all(torch.equal(finer[k].float(), base[k]) for k in base)
    for name, state in (("exact64", exact), ("finer64", finer)):
        save_state(tmp_path / f"{name}.safetensors", state)
        capsys.readouterr()
        rc = main(["verify-integrity", "--model", str(tmp_path / f"{name}.safetensors"), *ARCH,
                   "--reference", str(tmp_path / "model.ref"), "--json"])
        result = json.loads(capsys.readouterr().out)
        assert rc == 1 and result["status"] == "modified" and result["intact"] is False, name
        assert result["dtype_changes"]["conv1.weight"] == ["float32", "float64"]
    capsys.readouterr()
    assert main(["verify-integrity", "--model", str(tmp_path / "model.safetensors"), *ARCH,
                 "--reference", str(tmp_path / "model.ref")]) == 0


def _malformed_keys(d: Path) -> list[tuple[str, str]]:
    """(key file, what the error must name) for keys with one bad value each."""
    model = _model(0)
    nct = NCT().keygen(model, seed=1, config={"N": 64})
    tbw = TBW().keygen(model, seed=1, config={"n_triggers": 8})
    sig = nct.model_signature
    cases = []

    def raw(name, method, config, tensors, signature=sig, field=""):
        _save_raw_key(d / name, method, config, tensors, signature)
        cases.append((name, field))

    raw("classes.key", "TBW", json.dumps({**tbw.config, "num_classes": "abc"}), tbw.tensors,
        field="'num_classes': 'abc' is not an integer")
    raw("seed.key", "NCT", json.dumps({**nct.config, "key_seed": -1}), nct.tensors,
        field="'key_seed': -1 is below its minimum 0")
    raw("nan.key", "NCT", json.dumps(nct.config).replace('"N": 64', '"N": NaN'), nct.tensors,
        field="'config' is not valid JSON")
    raw("deep.key", "NCT", "[" * 100_000 + "]" * 100_000, nct.tensors, field="'config' is not valid JSON")
    raw("dtype.key", "NCT", json.dumps(nct.config), {"K": nct.tensors["K"].float()},
        field="tensor 'K' has dtype float32, expected int64")
    raw("shape.key", "NCT", json.dumps({**nct.config, "N": 65}), nct.tensors, field="tensor 'K' has shape [64]")
    raw("labels.key", "TBW", json.dumps(tbw.config), {**tbw.tensors, "labels": tbw.tensors["labels"] + 100},
        field="'labels' holds values outside")
    raw("layers.key", "NCT", json.dumps(nct.config), nct.tensors, signature={**sig, "weight_layers": "conv1"},
        field="model_signature field 'weight_layers'")
    raw("method.key", "NCT\nrm -rf /", json.dumps(nct.config), nct.tensors, field="field 'method'")
    raw("nomethod.key", "", json.dumps(nct.config), nct.tensors, field="field 'method'")
    return cases


def test_malformed_key_values_name_the_file_and_the_field(tmp_path, capsys):
    save_state(tmp_path / "model.safetensors", _model(0).state_dict())
    for name, field in _malformed_keys(tmp_path):
        capsys.readouterr()
        method = ["--method", "NCT"] if name in ("method.key", "nomethod.key") else []  # past the early check
        rc = main(["detect", "--model", str(tmp_path / "model.safetensors"), *ARCH, "--key", str(tmp_path / name),
                   *method])
        out, err = capsys.readouterr()
        assert rc == 2 and out == "", (name, err)
        assert err.count("\n") == 1 and err.startswith("nnw detect: error: key file "), err
        assert name in err and field in err, (name, err)


def test_outputs_get_the_usual_file_mode(tmp_path, capsys):
    old = os.umask(0o022)
    try:
        save_state(tmp_path / "model.safetensors", _model(0).state_dict())
        m = str(tmp_path / "model.safetensors")
        assert main(["keygen", "--method", "NCT", *ARCH, "--seed", "1", "--out", str(tmp_path / "k.key")]) == 0
        assert main(["embed", "--model", m, *ARCH, "--key", str(tmp_path / "k.key"),
                     "--out", str(tmp_path / "sub" / "marked.safetensors"), "--key-out", str(tmp_path / "used.key")]) == 0
        assert main(["fingerprint", "--model", m, *ARCH, "--seed", "1", "--out", str(tmp_path / "m.ref")]) == 0
        os.umask(0o077)
        assert main(["keygen", "--method", "NCT", *ARCH, "--seed", "2", "--out", str(tmp_path / "private.key")]) == 0
    finally:
        os.umask(old)
    for name in ("k.key", "sub/marked.safetensors", "used.key", "m.ref"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name
    assert stat.S_IMODE((tmp_path / "private.key").stat().st_mode) == 0o600
    capsys.readouterr()


# --------------------------------------------------------------------- exit statuses
def test_usage_errors_are_one_line_and_internal_errors_are_not_a_verdict(tmp_path, capsys, monkeypatch):
    capsys.readouterr()
    assert main(["keygen", "--method", "NCT"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("nnw keygen: error: the following arguments are required")
    assert main(["keygen", "--json", "--seed", "x"]) == 2
    out, err = capsys.readouterr()
    assert json.loads(out)["status"] == "error" and "--seed" in err and err.count("\n") == 1
    # a method that crashes: exit 3 (internal error), never 1 ("not found")
    (tmp_path / "crashing_method.py").write_text(
        "from nnw.methods.nct import NCT\n"
        "class Crash(NCT):\n"
        "    name = 'NCT'\n"
        "    def detect(self, model, key, *, prepare=None):\n"
        "        raise KeyError('boom')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    save_state(tmp_path / "model.safetensors", _model(0).state_dict())
    model = _model(0)
    key = NCT().keygen(model, seed=1, config={"N": 64})
    NCT().embed(model, key)
    save_key(tmp_path / "k.key", key)
    rc = main(["detect", "--model", str(tmp_path / "model.safetensors"), *ARCH, "--key", str(tmp_path / "k.key"),
               "--method", "crashing_method:Crash"])
    err = capsys.readouterr().err
    assert rc == 3 and err.count("\n") == 1 and "internal error (KeyError" in err and "NNW_TRACEBACK=1" in err
