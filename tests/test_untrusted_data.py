"""Hostile CIFAR-10 python batches (issue 15, item 1): never a crash, never code run, one clear error.

The pickled CIFAR-10 batches are read without unpickling (:func:`nnw.data.restricted_unpickle`
walks the opcodes symbolically). These tests feed it files a hostile user could write: the
object-dtype array that made numpy dereference the file's bytes as pointers (SIGSEGV), code-running
globals, object-building opcodes, absurd shapes, and a hypothesis fuzz over mutated genuine files.
"""

from __future__ import annotations

import os
import pickle
import pickletools
import signal
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnw.data import DataRootError, UnsafeDataError, load_cifar10, restricted_unpickle

try:
    from data_writers import Opcodes, py2_dtype, py2_pickle, py2_raw_ndarray, write_cifar10_py
except ImportError:  # tests/ imported as a package
    from tests.data_writers import Opcodes, py2_dtype, py2_pickle, py2_raw_ndarray, write_cifar10_py

PIXELS = 3072
MARKER = "PWNED"  # what the code-running payloads below would create in the working directory
DATA = np.arange(2 * PIXELS, dtype=np.uint8).reshape(2, PIXELS) * 7
LABELS = [3, 9]


def _batch(**entries: object) -> dict:
    batch = {b"batch_label": b"testing batch 1 of 1", b"labels": list(LABELS), b"data": DATA,
             b"filenames": [b"a.png", b"b.png"]}
    for key, value in entries.items():
        if value is None:
            batch.pop(key.encode())
        else:
            batch[key.encode()] = value
    return batch


def _os_system(command: str) -> Opcodes:
    arg = command.encode()
    return Opcodes(b"cos\nsystem\n" + pickle.SHORT_BINSTRING + bytes([len(arg)]) + arg + pickle.TUPLE1 + pickle.REDUCE)


OBJECT_DTYPE = py2_dtype(b"O")  # state flags 0: numpy then takes the raw data bytes for PyObject pointers
OBJECT_LABELS = py2_raw_ndarray((2,), b"\x41" * 16, dtype=OBJECT_DTYPE)
STRUCTURED_DTYPE = py2_dtype(b"V16", state=(3, b"|", None, (b"a", b"b"),
                                            {b"a": (OBJECT_DTYPE, 0), b"b": (py2_dtype(), 8)}, 16, 1, 27))


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A valid cifar-10-batches-py root (cwd = tmp_path, where a payload would leave MARKER)."""
    monkeypatch.chdir(tmp_path)
    write_cifar10_py(tmp_path / "root", n_train=5, n_test=2)
    return tmp_path / "root"


def _load_test_split(root: Path):
    return load_cifar10(root, train=False, layout="py")


# --------------------------------------------------------------------------- the crash of issue 15
def test_object_dtype_labels_cannot_crash_the_process(root: Path) -> None:
    """The attack of issue 15 run in real processes: plain pickle segfaults (-11); the loader refuses it."""
    path = root / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(py2_pickle(_batch(labels=OBJECT_LABELS)))

    def start(code: str) -> subprocess.Popen:
        def no_core_dump() -> None:
            import resource

            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

        return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                preexec_fn=no_core_dump if os.name == "posix" else None)

    control = start(f"""
        import pickle, numpy as np
        batch = pickle.loads(open({str(path)!r}, "rb").read(), encoding="bytes")
        np.asarray(batch[b"labels"], np.int64)
    """)
    loader = start(f"""
        import sys
        from nnw.data import DataError, load_cifar10
        try:
            load_cifar10({str(root)!r}, train=False)
        except DataError as error:
            print(type(error).__name__, error, file=sys.stderr)
            sys.exit(3)
    """)
    _, control_err = control.communicate(timeout=120)
    _, loader_err = loader.communicate(timeout=120)
    if os.name == "posix":  # the file is live: an ordinary unpickler hands numpy 0x4141... as pointers
        assert control.returncode == -signal.SIGSEGV, (control.returncode, control_err[-500:])
    assert loader.returncode == 3, (loader.returncode, loader_err[-2000:])
    assert loader_err.startswith(f"UnsafeDataError refused to unpickle {path}: numpy.dtype(bytes b'O')")
    assert "Traceback" not in loader_err and "cifar-10-batches-bin" in loader_err


# --------------------------------------------------------------------------- hostile files, one by one
def _deep_tuple(depth: int) -> Opcodes:
    return Opcodes(pickle.NONE + pickle.TUPLE1 * depth)


HOSTILE = {
    # what the file asks for -> (file contents, error type, words the message must hold)
    "object_dtype_labels": (py2_pickle(_batch(labels=OBJECT_LABELS)), UnsafeDataError, "numpy.dtype(bytes b'O')"),
    "object_dtype_data": (py2_pickle(_batch(data=py2_raw_ndarray((2, PIXELS), b"\0" * 8 * 2 * PIXELS,
                                                                 dtype=OBJECT_DTYPE))), UnsafeDataError, "'O'"),
    "structured_dtype_with_object_field": (
        py2_pickle(_batch(labels=py2_raw_ndarray((1,), b"\x41" * 16, dtype=STRUCTURED_DTYPE))), UnsafeDataError,
        "numpy.dtype(bytes b'V16')"),
    "int64_dtype": (py2_pickle(_batch(labels=py2_raw_ndarray((2,), b"\0" * 16, dtype=py2_dtype(b"i8")))),
                    UnsafeDataError, "only uint8"),
    "uint8_dtype_with_other_state": (
        py2_pickle(_batch(data=py2_raw_ndarray((2, PIXELS), DATA.tobytes(),
                                               dtype=py2_dtype(state=(3, b"<", None, None, None, -1, -1, 63))))),
        UnsafeDataError, "dtype state"),
    "labels_as_uint8_array": (py2_pickle(_batch(labels=np.array([[3, 9]], np.uint8))), DataRootError,
                              "expected 'labels' as a list of 2 ints in 0-9, found a uint8 array of shape (1, 2)"),
    "os_system": (py2_pickle(_batch(labels=_os_system(f"touch {MARKER}"))), UnsafeDataError, "'os.system'"),
    "os_system_at_top": (py2_pickle(_os_system(f"touch {MARKER}")), UnsafeDataError, "'os.system'"),
    "builtins_eval_stack_global": (
        pickle.dumps({b"labels": eval, b"data": DATA}, protocol=4), UnsafeDataError, "'builtins.eval'"),
    "inst_opcode": (b"\x80\x02(iposix\nsystem\n.", UnsafeDataError, "INST"),
    "newobj_opcode": (py2_pickle(Opcodes(b"cnumpy\nndarray\n)\x81")), UnsafeDataError, "NEWOBJ"),
    "ext1_opcode": (b"\x80\x02\x82\x01.", UnsafeDataError, "EXT1"),
    "persistent_id": (b"\x80\x02N\x51.", UnsafeDataError, "BINPERSID"),
    "ndarray_called_directly": (py2_pickle(Opcodes(b"cnumpy\nndarray\nK\x02\x85R")), UnsafeDataError,
                                "a call of numpy.ndarray"),
    "reconstruct_other_args": (py2_pickle(Opcodes(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\ndtype\nK\x00"
                                                  b"\x85U\x01b\x87R")), UnsafeDataError, "_reconstruct"),
    "build_on_a_dict": (py2_pickle(Opcodes(b"}}b")), UnsafeDataError, "BUILD"),
    "huge_shape": (py2_pickle(_batch(data=py2_raw_ndarray((10**9, PIXELS), b"\0" * 10))), DataRootError,
                   "larger than 1000000 rows"),
    "negative_shape": (py2_pickle(_batch(data=py2_raw_ndarray((-1, PIXELS), b""))), DataRootError, "shape"),
    "payload_short": (py2_pickle(_batch(data=py2_raw_ndarray((2, PIXELS), b"\0" * 100))), DataRootError,
                      "100 data bytes, expected 6144"),
    "three_dimensional": (py2_pickle(_batch(data=py2_raw_ndarray((2, 3, 1024), DATA.tobytes()))), DataRootError,
                          "expected 1 or 2 non-negative sizes"),
    "labels_out_of_range": (py2_pickle(_batch(labels=[3, 10])), DataRootError, "found int 10 at index 1"),
    "labels_negative": (py2_pickle(_batch(labels=[-1, 0])), DataRootError, "found int -1 at index 0"),
    "labels_count": (py2_pickle(_batch(labels=[1, 2, 3])), DataRootError, "expected 2 labels"),
    "labels_bool": (pickle.dumps(_batch(labels=[True, False]), protocol=4), DataRootError, "found bool True"),
    "labels_recursive": (py2_pickle(_batch(labels=Opcodes(b"]q\x07(h\x07h\x07e"))), DataRootError,
                         "found a list of length 2 at index 0"),
    "labels_deeply_nested": (py2_pickle(_batch(labels=_deep_tuple(50_000))), DataRootError,
                             "found a tuple of length 1"),
    "unexpected_key": (py2_pickle(_batch(fine_labels=[1, 2])), DataRootError, "unexpected key 'fine_labels'"),
    "duplicate_key": (pickle.dumps({**_batch(), "data": DATA}, protocol=4), DataRootError, "the key 'data' twice"),
    "missing_labels": (py2_pickle(_batch(labels=None)), DataRootError, "no 'labels' entry"),
    "filenames_not_strings": (py2_pickle(_batch(filenames=[1, 2])), DataRootError, "'filenames' as a list"),
    "filenames_count": (py2_pickle(_batch(filenames=[b"a.png"])), DataRootError,
                        "list of 2 strings, found a list of length 1"),
    "no_proto": (py2_pickle(_batch())[2:], DataRootError, "begins with PROTO"),
    "unhashable_key": (py2_pickle(Opcodes(b"}(]K\x01u")), DataRootError, "a dict key that is a list"),
    "get_before_put": (py2_pickle(Opcodes(b"h\x05")), DataRootError, "memo index 5 read before"),
    "trailing_bytes": (py2_pickle(_batch()) + b"\x00junk", DataRootError, "5 bytes follow its STOP"),
    "no_stop": (py2_pickle(_batch())[:-1], DataRootError, "truncated"),
    "two_values": (b"\x80\x02NN.", DataRootError, "stops with 2 values"),
    "protocol_0": (pickle.dumps({"labels": [1]}, protocol=0), DataRootError, "begins with PROTO"),
    "opcode_a_batch_does_not_use": (b"\x80\x02G" + struct.pack(">d", 1.5) + b".", DataRootError,
                                    "the opcode BINFLOAT, which a CIFAR-10 batch does not use"),
    "protocol_5_buffer": (pickle.dumps(_batch(), protocol=5), UnsafeDataError, "_frombuffer"),
    "not_a_pickle": (b"GIF89a" + b"\0" * 50, DataRootError, "not a CIFAR-10 pickle"),
    "empty_file": (b"", DataRootError, "truncated"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_batch_is_one_clear_error(root: Path, case: str) -> None:
    content, error_type, words = HOSTILE[case]
    path = root / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(content)
    with pytest.raises(error_type) as info:
        _load_test_split(root)
    message = str(info.value)
    assert str(path) in message.splitlines()[0] and words in message, message
    assert "cifar-10-batches-bin" in message  # the pickle-free alternative is named
    assert not Path(MARKER).exists(), "a refused pickle ran code"


@pytest.mark.parametrize("meta, error_type, words", [
    ({b"label_names": [b"a", b"b"]}, DataRootError, "'label_names' as a list of 10 strings, found a list of length 2"),
    ({b"label_names": OBJECT_LABELS}, UnsafeDataError, "numpy.dtype(bytes b'O')"),
    ({b"label_names": _os_system(f"touch {MARKER}")}, UnsafeDataError, "'os.system'"),
    ({b"num_vis": 3072}, DataRootError, "no 'label_names' entry"),
    ({b"label_names": [b"x"] * 10, b"num_vis": b"3072"}, DataRootError, "'num_vis' as an int"),
])
def test_hostile_batches_meta_is_one_clear_error(root: Path, meta: dict, error_type: type, words: str) -> None:
    path = root / "cifar-10-batches-py" / "batches.meta"
    path.write_bytes(py2_pickle(meta))
    with pytest.raises(error_type) as info:
        _load_test_split(root)
    assert str(path) in str(info.value).splitlines()[0] and words in str(info.value), str(info.value)
    assert not Path(MARKER).exists()


def test_oversized_file_is_refused_before_it_is_read(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nnw.data.cifar10 as cifar10

    monkeypatch.setattr(cifar10, "MAX_FILE_BYTES", 1000)
    with pytest.raises(DataRootError, match=r"larger than 1000 \(1000000 images\): .*test_batch"):
        _load_test_split(root)


# --------------------------------------------------------------------------- genuine variants still load
@pytest.mark.parametrize("variant", ["py2", "protocol3", "protocol4", "str_keys", "fortran_order", "no_optional_keys"])
def test_genuine_batch_variants_load_exactly(root: Path, variant: str) -> None:
    batch = _batch()
    content = {
        "py2": lambda: py2_pickle(batch),
        "protocol3": lambda: pickle.dumps(batch, protocol=3),
        "protocol4": lambda: pickle.dumps(batch, protocol=4),
        "str_keys": lambda: pickle.dumps({k.decode(): v for k, v in batch.items()}, protocol=4),
        "fortran_order": lambda: pickle.dumps({**batch, b"data": np.asfortranarray(DATA)}, protocol=4),
        "no_optional_keys": lambda: py2_pickle(_batch(batch_label=None, filenames=None)),
    }[variant]()
    if variant == "fortran_order":
        ops = [op.name for op, _, _ in pickletools.genops(content)]
        assert "NEWTRUE" in ops[ops.index("BUILD"):]  # the file does carry numpy's Fortran flag
    (root / "cifar-10-batches-py" / "test_batch").write_bytes(content)
    test = _load_test_split(root)
    assert torch.equal(test.x, torch.from_numpy(DATA.reshape(2, 3, 32, 32)))
    assert test.y.tolist() == LABELS and test.y.dtype == torch.int64


def test_restricted_unpickle_builds_only_plain_values(tmp_path: Path) -> None:
    path = tmp_path / "plain"
    path.write_bytes(pickle.dumps({"t": (1, None, True), "l": [b"x", "y", -2**70], "a": DATA[:1]}, protocol=4))
    value = restricted_unpickle(path)
    assert value["t"] == (1, None, True) and value["l"] == [b"x", "y", -2**70]
    assert type(value["a"]) is np.ndarray and value["a"].dtype == np.uint8 and np.array_equal(value["a"], DATA[:1])


# --------------------------------------------------------------------------- fuzz: mutated genuine files
def _valid_files() -> list[tuple[str, bytes]]:
    batch = _batch()
    meta = {b"num_cases_per_batch": 2, b"label_names": [f"c{i}".encode() for i in range(10)], b"num_vis": PIXELS}
    # small data keeps the fuzz on the structure: 2 x 3072 bytes of payload would draw most byte positions
    return [("test_batch", py2_pickle(batch)), ("test_batch", pickle.dumps(batch, protocol=4)),
            ("batches.meta", py2_pickle(meta)), ("batches.meta", pickle.dumps(meta, protocol=4))]


VALID = _valid_files()
SPLICES = [
    bytes(_os_system(f"touch {MARKER}")),
    b"cbuiltins\nexec\nX\x1b\x00\x00\x00open('" + MARKER.encode() + b"', 'w').close()\x85R",
    bytes(OBJECT_LABELS),
    bytes(py2_raw_ndarray((1,), b"\x41" * 16, dtype=STRUCTURED_DTYPE)),
    bytes(py2_raw_ndarray((10**9, PIXELS), b"\0" * 8)),
    bytes(py2_raw_ndarray((2, PIXELS), b"\0" * 8)),
    b"\x8c\x05posix\x8c\x06system\x93", b"cnumpy\ndtype\n", b"cnumpy\nndarray\n", b"R", b"b", b"(", b"t", b")",
    b"0", b"2", b"1", b"\x81", b"\x92", b"\x82\x01", b"P0\n", b"Q", b"\x97", b"\x98", b"i__main__\nx\n", b"o",
    b"h\x00", b"q\x00", b"\x94", b"e", b"u", b"s", b"a", b"N" + b"\x85" * 5000,
    b"J\xff\xff\xff\x7f", b"\x8a\x09" + b"\xff" * 9, b"T\xff\xff\xff\x7f", b"\x8e" + b"\xff" * 8,
]
OPCODE_BYTES = sorted({op.code.encode("latin-1") for op in pickletools.opcodes})


def _opcode_positions(content: bytes) -> list[int]:
    return [pos for _, _, pos in pickletools.genops(content)]


POSITIONS = [_opcode_positions(content) for _, content in VALID]


@st.composite
def mutated_files(draw: st.DrawFn) -> tuple[str, bytes, bool]:
    index = draw(st.integers(0, len(VALID) - 1))
    target, content = VALID[index]
    data = bytearray(content)
    n_mutations = draw(st.integers(1, 3))
    for _ in range(n_mutations):
        size = len(data)
        where = draw(st.one_of(st.sampled_from(POSITIONS[index]), st.integers(0, max(size - 1, 0))))
        where = min(where + draw(st.integers(0, 3)), size)
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "opcode", "splice"]))
        if kind == "flip" and size:
            data[min(where, size - 1)] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            del data[where:]
        elif kind == "insert":
            data[where:where] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[where:where + draw(st.integers(1, 16))]
        elif kind == "opcode" and size:
            data[min(where, size - 1):min(where, size - 1) + 1] = draw(st.sampled_from(OPCODE_BYTES))
        elif kind == "splice":
            data[where:where] = draw(st.sampled_from(SPLICES))
    return target, bytes(data), bytes(data) == content


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=mutated_files())
def test_fuzzed_batches_never_crash_never_run_code_always_one_clear_error(root: Path, case) -> None:
    target, content, unchanged = case
    folder = root / "cifar-10-batches-py"
    for name, original in {"test_batch": VALID[0][1], "batches.meta": VALID[2][1]}.items():
        (folder / name).write_bytes(content if name == target else original)
    try:
        test = _load_test_split(root)
    except (DataRootError, UnsafeDataError) as error:
        message = str(error)
        assert not unchanged, f"the genuine file was refused: {message}"
        assert str(folder / target) in message.splitlines()[0], message
        assert "Traceback" not in message and "cifar-10-batches-bin" in message
    else:  # a mutation may leave a valid batch (a flipped pixel): then it must be a correct one
        assert test.x.dtype == torch.uint8 and tuple(test.x.shape[1:]) == (3, 32, 32)
        assert test.y.dtype == torch.int64 and test.y.shape == (test.x.shape[0],)
        assert test.y.numel() == 0 or (int(test.y.min()) >= 0 and int(test.y.max()) < 10)
        if unchanged:
            assert torch.equal(test.x, torch.from_numpy(DATA.reshape(2, 3, 32, 32))) and test.y.tolist() == LABELS
    assert not Path(MARKER).exists(), "a mutated pickle ran code"


def test_every_truncation_and_opcode_deletion_of_a_genuine_batch_is_refused(root: Path) -> None:
    """Deterministic companion of the fuzz: cut the genuine file before each opcode, or drop that opcode."""
    path = root / "cifar-10-batches-py" / "test_batch"
    content = VALID[0][1]
    positions = _opcode_positions(content)
    ends = positions[1:] + [len(content)]
    for start, end in zip(positions, ends):
        for damaged in (content[:start], content[:start] + content[end:]):
            path.write_bytes(damaged)
            try:
                _load_test_split(root)
            except (DataRootError, UnsafeDataError) as error:
                assert str(path) in str(error).splitlines()[0]
            else:  # dropping an optional memo opcode leaves the batch intact
                assert content[start:start + 1] in (b"q", b"r", b"\x94"), (start, content[start:end])
