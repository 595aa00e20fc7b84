"""Watermark Payloads that name an Actor (MPAI-NNW functional requirement: the payload should
let one identify the sender; NNW-TEC §1 Actors, §3 Decoding).

Layout of a ``bits``-long Payload (most significant bit first)::

    [ actor identifier : bits - 16 ][ CRC-16/CCITT-FALSE of the identifier bytes : 16 ]

e.g. 64 bits = 48-bit actor id + CRC-16; 32 bits = 16-bit actor id + CRC-16. ``bits`` must be a
multiple of 8 and at least 24, so the identifier is a whole number of bytes. The CRC is
``binascii.crc_hqx(id_bytes, 0xFFFF)`` (poly 0x1021, init 0xFFFF, no reflection, no xor-out =
CRC-16/CCITT-FALSE; check value 0x29B1 for b"123456789") over the identifier's big-endian bytes.
A CRC of this kind detects every single-bit and every double-bit error in these lengths, so
Decoding reports corruption (``valid=False``) instead of naming a wrong Actor.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass

import numpy as np
import torch

CRC_BITS = 16
CRC_INIT = 0xFFFF

__all__ = ["CRC_BITS", "PayloadDecoding", "actor_id_bits", "crc16", "decode_payload", "encode_payload", "to_symbols"]


@dataclass(frozen=True)
class PayloadDecoding:
    """Result of Decoding a Payload: the Actor id when the CRC checks, else ``None``."""

    actor_id: int | None
    valid: bool
    bits: torch.Tensor


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (stdlib ``binascii.crc_hqx`` with init 0xFFFF)."""
    return binascii.crc_hqx(data, CRC_INIT)


def actor_id_bits(bits: int) -> int:
    """Width of the actor-identifier field of a ``bits``-long Payload (= bits - 16)."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or bits < 24 or bits % 8:
        raise ValueError(f"payload length must be a multiple of 8 and >= 24 (identifier bytes + 16 CRC bits); received {bits!r}")
    return int(bits) - CRC_BITS


def _int_to_bits(value: int, width: int) -> list[int]:
    return [(value >> (width - 1 - i)) & 1 for i in range(width)]


def encode_payload(actor_id: int, bits: int = 64) -> torch.Tensor:
    """Payload bits (float32 0/1, length ``bits``) naming ``actor_id``; layout in the module doc.

    ``actor_id`` must be an int in [0, 2**(bits - 16)); otherwise ValueError.
    """
    id_width = actor_id_bits(bits)
    if isinstance(actor_id, bool) or not isinstance(actor_id, (int, np.integer)):
        raise ValueError(f"actor_id must be an int; received {type(actor_id).__name__}")
    actor_id = int(actor_id)
    if not 0 <= actor_id < (1 << id_width):
        raise ValueError(f"actor_id must lie in [0, 2**{id_width}) for a {bits}-bit payload; received {actor_id}")
    crc = crc16(actor_id.to_bytes(id_width // 8, "big"))
    return torch.tensor(_int_to_bits(actor_id, id_width) + _int_to_bits(crc, CRC_BITS), dtype=torch.float32)


def decode_payload(bits: torch.Tensor | np.ndarray) -> PayloadDecoding:
    """Decode a Payload: check the CRC and return the Actor id, or ``None`` with ``valid=False``.

    ``bits`` is a 1-D sequence of 0/1 values (float, int or bool) whose length satisfies the layout;
    other lengths or non-binary values raise ValueError.
    """
    t = torch.as_tensor(bits).detach().cpu()
    if t.dim() != 1:
        raise ValueError(f"payload must be 1-D; received shape {tuple(t.shape)}")
    id_width = actor_id_bits(t.numel())
    if t.dtype != torch.bool and not bool(((t == 0) | (t == 1)).all()):
        raise ValueError("payload must hold bits (0/1 or bool); received other values")
    b = [int(v) for v in (t != 0).tolist()]
    actor_id = 0
    for v in b[:id_width]:
        actor_id = (actor_id << 1) | v
    crc = 0
    for v in b[id_width:]:
        crc = (crc << 1) | v
    valid = crc16(actor_id.to_bytes(id_width // 8, "big")) == crc
    return PayloadDecoding(actor_id=actor_id if valid else None, valid=valid, bits=(t != 0).to(torch.float32))


def to_symbols(bits: torch.Tensor | np.ndarray, bits_per_symbol: int = 8) -> torch.Tensor:
    """Group bits (last dimension, MSB first) into integer symbols for the Symbol Error Rate (IEEE 3304).

    Shape ``(..., L)`` -> ``(..., L // bits_per_symbol)`` int64; L must be a multiple of
    ``bits_per_symbol`` (1..62).
    """
    if isinstance(bits_per_symbol, bool) or not isinstance(bits_per_symbol, int) or not 1 <= bits_per_symbol <= 62:
        raise ValueError(f"bits_per_symbol must be an int in [1, 62]; received {bits_per_symbol!r}")
    t = torch.as_tensor(bits).detach()
    if t.dim() == 0:
        raise ValueError("to_symbols needs at least one dimension of bits; received a scalar")
    length = t.shape[-1]
    if length % bits_per_symbol:
        raise ValueError(f"bit length {length} is not a multiple of bits_per_symbol={bits_per_symbol}")
    if t.dtype != torch.bool and not bool(((t == 0) | (t == 1)).all()):
        raise ValueError("to_symbols needs bits (0/1 or bool); received other values")
    grouped = (t != 0).to(torch.int64).reshape(*t.shape[:-1], length // bits_per_symbol, bits_per_symbol)
    weights = 2 ** torch.arange(bits_per_symbol - 1, -1, -1, dtype=torch.int64, device=t.device)
    return (grouped * weights).sum(-1)
