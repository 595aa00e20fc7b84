"""The Tracker's use cases (nnw/tracker.py): one rule each, shared by the ``nnw`` command and the clauses."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from nnw import tracker
from nnw.methods.base import Decoding, Detection


def _method(detects=True, decodes=False, ber=0.0, valid=None):
    tags = SimpleNamespace(detects=detects, decodes=decodes)
    return SimpleNamespace(
        name="Fake", tags=tags,
        detect=lambda model, key, prepare=None: Detection(True, 0.9, 0.5),
        decode=lambda model, key: Decoding(torch.zeros(4), ber, valid=valid),
    )


def test_detect_is_the_methods_and_a_decode_only_method_detects_through_ber():
    assert tracker.detect(_method(), None, None).score == 0.9
    det = tracker.detect(_method(detects=False, decodes=True, ber=0.25), None, None)
    assert det.present is False and det.score == 0.75 and det.threshold == 1.0
    assert tracker.detect(_method(detects=False, decodes=True, ber=0.0), None, None).present is True
    with pytest.raises(tracker.CannotAnswer, match="neither detect nor decode"):
        tracker.detect(_method(detects=False), None, None)
    with pytest.raises(tracker.CannotAnswer, match="bit error rate"):
        tracker.detect(_method(detects=False, decodes=True, ber=None), None, None)


def test_a_decoding_is_judged_by_its_crc_else_by_ber():
    assert tracker.decoded(Decoding(torch.zeros(1), 0.5, valid=True)) is True
    assert tracker.decoded(Decoding(torch.zeros(1), 0.0, valid=False)) is False
    assert tracker.decoded(Decoding(torch.zeros(1), 0.0)) is True
    assert tracker.decoded(Decoding(torch.zeros(1), 0.1)) is False
    assert tracker.decoded(Decoding(torch.zeros(1), None)) is True
    with pytest.raises(tracker.CannotAnswer):
        tracker.decode(_method(), None, None)
    assert tracker.decode(_method(decodes=True, ber=0.0), None, None)[1] is True


def test_integrity_is_bit_identical_traceability_data():
    ref = torch.tensor([1.0, 2.0, 3.0])
    same = tracker.compare_traceability_data(ref, ref.clone())
    assert (same.intact, same.values, same.changed_values, same.max_abs_change) == (True, 3, 0, 0.0)
    moved = tracker.compare_traceability_data(ref, torch.tensor([1.0, 2.5, 3.0]))
    assert (moved.intact, moved.changed_values, moved.max_abs_change) == (False, 1, 0.5)
    other = tracker.compare_traceability_data(ref, torch.zeros(2))
    assert not other.intact and other.changed_values == 3 and other.max_abs_change == float("inf")


def test_a_file_is_intact_only_with_its_stored_tensors():
    state = {"w": torch.ones(2, 2), "b": torch.zeros(2)}
    digest, per = tracker.weights_digest(state)
    ref = {"weights_sha256": digest, "tensor_sha256": per, "tensor_dtypes": tracker.stored_dtypes(state)}
    assert tracker.verify_file_integrity(ref, state).intact
    resaved = {k: v.double() for k, v in state.items()}
    f = tracker.verify_file_integrity(ref, resaved)
    assert not f.intact and f.changed_tensors == ["b", "w"] and f.dtype_changes["w"] == ["float32", "float64"]


def test_match_is_the_methods_rule_entry_by_entry():
    """Each entry is scored by ``method.match`` on a database of itself; the best one answers."""
    seen = []

    def match(fp, db):
        (name, ref), = db.items()
        seen.append(name)
        score = float(torch.dot(fp, ref))
        return (name if score > 0.5 else None), score

    method = SimpleNamespace(extract=lambda model, key: key.tensors["q"], match=match)
    entries = {n: SimpleNamespace(tensors={"q": torch.tensor([1.0]), "original": torch.tensor([s])})
               for n, s in (("a", 0.2), ("b", 0.9), ("c", 0.9))}
    best, rows = tracker.match_entries(method, None, entries)
    assert best.name == "b" and [r.name for r in rows] == ["b", "c", "a"] and sorted(seen) == ["a", "b", "c"]
    entries["b"].tensors["original"] = entries["c"].tensors["original"] = torch.tensor([0.3])
    best, rows = tracker.match_entries(method, None, entries)
    assert best is None and rows[0].name == "b" and not rows[0].matches


def test_match_passes_the_key_to_a_matcher_that_takes_it():
    got = []

    class Key:
        def copy(self):
            return "a copy"

    def match(fp, db, *, key=None):
        got.append(key)
        return None, 0.0

    tracker.match(SimpleNamespace(match=match), torch.zeros(1), {"a": torch.zeros(1)}, key=Key())
    tracker.match(SimpleNamespace(match=lambda fp, db: (None, 0.0)), torch.zeros(1), {}, key=Key())
    assert got == ["a copy"]
