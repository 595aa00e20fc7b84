"""Watermark Payloads that name an Actor: layout, round trip, corruption detection, symbols."""

from __future__ import annotations

import binascii

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as hs

from nnw.metrics import bit_error_rate, symbol_error_rate
from nnw.payload import PayloadDecoding, actor_id_bits, crc16, decode_payload, encode_payload, to_symbols


def test_crc_is_ccitt_false() -> None:
    # catalogue check value of CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) for b"123456789"
    assert crc16(b"123456789") == 0x29B1


def test_layout_64_bits_by_hand() -> None:
    actor = 0xA1B2C3D4E5F6
    bits = encode_payload(actor, 64)
    assert bits.dtype == torch.float32 and bits.shape == (64,)
    assert set(bits.tolist()) <= {0.0, 1.0}
    as_int = int("".join(str(int(b)) for b in bits.tolist()), 2)
    crc = binascii.crc_hqx(bytes.fromhex("A1B2C3D4E5F6"), 0xFFFF)
    assert as_int == (actor << 16) | crc


def test_layout_32_bits() -> None:
    assert actor_id_bits(32) == 16
    bits = encode_payload(0x1234, 32)
    assert to_symbols(bits, 8).tolist() == [0x12, 0x34, *divmod(crc16(b"\x12\x34"), 256)]


@settings(deadline=None, max_examples=100)
@given(hs.sampled_from([24, 32, 48, 64, 128]).flatmap(lambda n: hs.tuples(hs.just(n), hs.integers(0, 2 ** (n - 16) - 1))))
def test_round_trip(case: tuple[int, int]) -> None:
    width, actor = case
    decoded = decode_payload(encode_payload(actor, width))
    assert decoded == PayloadDecoding(actor_id=actor, valid=True, bits=decoded.bits)
    assert torch.equal(decoded.bits, encode_payload(actor, width))


@pytest.mark.parametrize("width", [32, 64])
@pytest.mark.parametrize("actor", [0, 1, 0x5A5A, 12345])
def test_every_single_bit_flip_is_detected(width: int, actor: int) -> None:
    clean = encode_payload(actor, width)
    for i in range(width):
        corrupted = clean.clone()
        corrupted[i] = 1.0 - corrupted[i]
        d = decode_payload(corrupted)
        assert not d.valid and d.actor_id is None, f"flip of bit {i} went undetected"
        assert bit_error_rate(d.bits, clean) == 1 / width


def test_every_double_bit_flip_is_detected_32() -> None:
    clean = encode_payload(0xBEEF, 32)
    for i in range(32):
        for j in range(i + 1, 32):
            corrupted = clean.clone()
            corrupted[[i, j]] = 1.0 - corrupted[[i, j]]
            assert not decode_payload(corrupted).valid, f"flips of bits {i}, {j} went undetected"


def test_decode_accepts_bool_and_numpy() -> None:
    bits = encode_payload(77, 64)
    assert decode_payload(bits.bool()).actor_id == 77
    assert decode_payload(bits.numpy().astype(np.int64)).actor_id == 77


@pytest.mark.parametrize(("actor", "width"), [(-1, 64), (2**48, 64), (2**16, 32), (3, 20), (3, 33), (1.5, 64), (True, 64)])
def test_encode_rejects(actor: object, width: int) -> None:
    with pytest.raises(ValueError):
        encode_payload(actor, width)  # type: ignore[arg-type]


def test_decode_rejects() -> None:
    with pytest.raises(ValueError):
        decode_payload(torch.zeros(30))
    with pytest.raises(ValueError):
        decode_payload(torch.full((64,), 0.5))
    with pytest.raises(ValueError):
        decode_payload(torch.zeros(2, 32))


def test_to_symbols_and_ser() -> None:
    bits = torch.tensor([[1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1], [0] * 16])
    assert to_symbols(bits).tolist() == [[129, 255], [0, 0]]
    assert to_symbols(bits[0], 4).tolist() == [8, 1, 15, 15]
    clean = encode_payload(4242, 64)
    corrupted = clean.clone()
    corrupted[[0, 3, 63]] = 1.0 - corrupted[[0, 3, 63]]  # two bits in symbol 0, one in symbol 7
    assert symbol_error_rate(to_symbols(corrupted), to_symbols(clean)) == 2 / 8
    with pytest.raises(ValueError):
        to_symbols(torch.zeros(10), 8)
    with pytest.raises(ValueError):
        to_symbols(torch.zeros(8), 0)
