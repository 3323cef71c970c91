"""Bit packing of integer codes: ``b``-bit codes take ``ceil(n * b / 8)`` bytes.

Codes in ``[qmin, qmax]`` (signed ``b``-bit, or ``{-1, +1}`` for 1 bit) are offset to unsigned
``u = q - qmin`` (1 bit: ``u = (q + 1) / 2``), written as ``b`` bits each, least significant bit
first, into a little-endian bit stream (``numpy.packbits(bitorder="little")``). So two 4-bit codes
share a byte, four 2-bit codes, eight 1-bit codes; 8-bit codes are stored as they are.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from torchslim.quantization.functional import check_bits, qrange


def packed_nbytes(numel: int, bits: int) -> int:
    """Bytes that `numel` codes of `bits` bits take when packed."""
    return -(-numel * check_bits(bits) // 8)


def unsigned_codes(codes: Tensor, bits: int) -> np.ndarray:
    """Codes as unsigned symbols ``0 .. 2**bits - 1`` (``q - qmin``; 1 bit: ``(q + 1) / 2``), checked."""
    bits = check_bits(bits)
    qmin, qmax = qrange(bits)
    flat = codes.detach().reshape(-1).to(torch.int16)
    if flat.numel() and (int(flat.min()) < qmin or int(flat.max()) > qmax):
        raise ValueError(f"codes outside the {bits}-bit range [{qmin}, {qmax}].")
    unsigned = ((flat + 1) // 2) if bits == 1 else (flat - qmin)
    return unsigned.cpu().numpy().astype(np.int32)


def signed_codes(unsigned: np.ndarray, bits: int) -> Tensor:
    """Inverse of :func:`unsigned_codes`: a flat int8 tensor."""
    qmin, _ = qrange(check_bits(bits))
    values = unsigned.astype(np.int16)
    codes = (values * 2 - 1) if bits == 1 else (values + qmin)
    return torch.from_numpy(codes.astype(np.int8))


def pack_codes(codes: Tensor, bits: int) -> Tensor:
    """Pack int codes (any shape) into a flat uint8 tensor of :func:`packed_nbytes` bytes."""
    bits = check_bits(bits)
    qmin, qmax = qrange(bits)
    flat = codes.detach().reshape(-1).to(torch.int16)
    if flat.numel() and (int(flat.min()) < qmin or int(flat.max()) > qmax):
        raise ValueError(f"pack_codes: codes outside the {bits}-bit range [{qmin}, {qmax}].")
    if bits == 8:
        return flat.to(torch.int8).view(torch.uint8).clone()
    unsigned = ((flat + 1) // 2) if bits == 1 else (flat - qmin)
    values = unsigned.cpu().numpy().astype(np.uint8)
    bit_planes = ((values[:, None] >> np.arange(bits, dtype=np.uint8)) & 1).astype(np.uint8)
    packed = np.packbits(bit_planes.reshape(-1), bitorder="little")
    return torch.from_numpy(packed.copy())


def unpack_codes(packed: Tensor, bits: int, numel: int) -> Tensor:
    """Inverse of :func:`pack_codes`: a flat int8 tensor of `numel` codes."""
    bits = check_bits(bits)
    if packed.dtype != torch.uint8 or packed.dim() != 1:
        raise ValueError(f"unpack_codes: expected a flat uint8 tensor, got {packed.dtype} {list(packed.shape)}.")
    if packed.numel() != packed_nbytes(numel, bits):
        raise ValueError(
            f"unpack_codes: {packed.numel()} bytes cannot hold exactly {numel} codes of {bits} bits "
            f"(expected {packed_nbytes(numel, bits)})."
        )
    if bits == 8:
        return packed.view(torch.int8).clone()
    qmin, _ = qrange(bits)
    stream = np.unpackbits(packed.numpy(), bitorder="little")[: numel * bits].reshape(numel, bits)
    unsigned = (stream.astype(np.int16) << np.arange(bits, dtype=np.int16)).sum(axis=1)
    codes = (unsigned * 2 - 1) if bits == 1 else (unsigned + qmin)
    return torch.from_numpy(codes.astype(np.int8))
