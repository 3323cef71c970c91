"""Entropy coding of a layer's stored code stream, with constriction's ANS coder.

A quantized layer stores one small-integer symbol per weight (a centroid index, a signed exponent,
a uniform code, offset to ``0 .. A-1``). Packed at ``b`` bits each they take ``b`` bits per weight;
entropy coded under their own histogram ``p`` they take about ``H(p) = -sum p log2 p`` bits
(Shannon 1948), which is what Deep Compression's Huffman stage gains (Han et al. 2016, section 4).
Two forms, whichever is smaller for the layer (packed codes stay when both are larger):

* **dense**: every symbol, coded with the symbol histogram;
* **sparse**: the most frequent symbol (a pruned layer's zero) is the background; the positions of
  the other symbols are coded as gaps (the number of background symbols before each, as Han et
  al.'s relative sparse index), and their symbols with their own histogram. A gap ``g`` is written
  as ``floor(g / (E - 1))`` escape symbols ``E - 1`` and the remainder, with the escape alphabet
  ``E`` (16 ... 256) that gives the smallest stream.

The coder is constriction's asymmetric numeral system (Duda 2013; Bamler 2022, "Understanding
entropy coding with asymmetric numeral systems (ANS)"): a maintained, exactly invertible
implementation, near the entropy for i.i.d. symbols. The histograms are stored as ``uint16``
counts (scaled to fit, a non-zero count never rounds to zero) in front of the ``uint32`` words,
all in one ``uint8`` tensor; the JSON meta says how to split it.

Pure functions on numpy arrays (no torchslim imports): a quantized layer's stored state
(:mod:`torchslim.quantization.stored`) calls them when the ``entropy_code`` step marked it.
"""

from __future__ import annotations

import math
from typing import Any

import constriction
import numpy as np

GAP_ALPHABETS = (16, 32, 64, 128, 256)
MAX_ALPHABET = 256
COUNT_MAX = 2**16 - 1


def histogram(symbols: np.ndarray, alphabet: int) -> np.ndarray:
    """Symbol counts scaled into ``uint16`` (a symbol that occurs keeps a count of at least 1)."""
    counts = np.bincount(symbols, minlength=alphabet).astype(np.float64)
    top = counts.max() if counts.size else 0.0
    if top > COUNT_MAX:
        counts = np.where(counts > 0, np.maximum(1.0, np.round(counts * COUNT_MAX / top)), 0.0)
    return counts.astype(np.uint16)


def _model(counts: np.ndarray) -> Any:
    probabilities = counts.astype(np.float64)
    if probabilities.sum() == 0:
        probabilities = np.ones_like(probabilities)
    return constriction.stream.model.Categorical(probabilities, perfect=False)


def coded_bits(symbols: np.ndarray, counts: np.ndarray) -> float:
    """The ideal code length of `symbols` under `counts` (what ANS reaches within a few bytes)."""
    if symbols.size == 0:
        return 0.0
    p = counts.astype(np.float64) / max(float(counts.sum()), 1.0)
    used = np.bincount(symbols, minlength=counts.size).astype(np.float64)
    mask = used > 0
    return float(-(used[mask] * np.log2(p[mask])).sum())


def escape_gaps(gaps: np.ndarray, alphabet: int) -> np.ndarray:
    """Each gap ``g`` as ``g // (E-1)`` escape symbols ``E-1`` followed by ``g % (E-1)``."""
    escape = alphabet - 1
    repeats = gaps // escape + 1
    out = np.full(int(repeats.sum()), escape, dtype=np.int32)
    ends = np.cumsum(repeats) - 1
    out[ends] = gaps % escape
    return out


def unescape_gaps(symbols: np.ndarray, alphabet: int) -> np.ndarray:
    """Inverse of :func:`escape_gaps`."""
    escape = alphabet - 1
    is_end = symbols != escape
    group = np.concatenate([[0], np.cumsum(is_end)[:-1]]) if symbols.size else symbols
    escapes = np.bincount(group[~is_end], minlength=int(is_end.sum())) if symbols.size else symbols
    return (escapes[: int(is_end.sum())] * escape + symbols[is_end]).astype(np.int64)


def _sparse_parts(symbols: np.ndarray, alphabet: int) -> tuple[int, np.ndarray, np.ndarray, int, float]:
    """``(background, values, gap_symbols, gap_alphabet, estimated_bytes)`` of the sparse form."""
    background = int(np.bincount(symbols, minlength=alphabet).argmax())
    positions = np.flatnonzero(symbols != background)
    values = symbols[positions].astype(np.int32)
    gaps = np.diff(np.concatenate([[-1], positions])) - 1
    best: tuple[np.ndarray, int, float] | None = None
    for gap_alphabet in GAP_ALPHABETS:
        escaped = escape_gaps(gaps, gap_alphabet)
        size = coded_bits(escaped, histogram(escaped, gap_alphabet)) / 8 + 2 * gap_alphabet
        if best is None or size < best[2]:
            best = (escaped, gap_alphabet, size)
    assert best is not None
    estimate = coded_bits(values, histogram(values, alphabet)) / 8 + 2 * alphabet + best[2]
    return background, values, best[0], best[1], estimate


def encode_symbols(symbols: np.ndarray, alphabet: int) -> tuple[np.ndarray, dict[str, Any]]:
    """``(blob uint8, meta)`` of `symbols` (ints in ``[0, alphabet)``) in the smaller form."""
    if not 2 <= alphabet <= MAX_ALPHABET:
        raise ValueError(f"entropy coding needs an alphabet of 2..{MAX_ALPHABET} symbols, got {alphabet}.")
    symbols = np.ascontiguousarray(symbols, dtype=np.int32).reshape(-1)
    if symbols.size and (symbols.min() < 0 or symbols.max() >= alphabet):
        raise ValueError(f"entropy coding: a symbol is outside [0, {alphabet}).")
    dense_counts = histogram(symbols, alphabet)
    dense_estimate = coded_bits(symbols, dense_counts) / 8 + 2 * alphabet
    background, values, gap_symbols, gap_alphabet, sparse_estimate = _sparse_parts(symbols, alphabet)
    coder = constriction.stream.stack.AnsCoder()
    if sparse_estimate < dense_estimate:
        counts, gap_counts = histogram(values, alphabet), histogram(gap_symbols, gap_alphabet)
        coder.encode_reverse(values, _model(counts))
        coder.encode_reverse(gap_symbols, _model(gap_counts))  # decoded first
        header = np.concatenate([counts, gap_counts])
        meta = {
            "form": "sparse",
            "alphabet": alphabet,
            "gap_alphabet": gap_alphabet,
            "background": background,
            "symbols": int(values.size),
            "gap_symbols": int(gap_symbols.size),
        }
    else:
        coder.encode_reverse(symbols, _model(dense_counts))
        header = dense_counts
        meta = {"form": "dense", "alphabet": alphabet, "symbols": int(symbols.size)}
    words = coder.get_compressed().astype("<u4")
    blob = np.concatenate([header.astype("<u2").view(np.uint8), words.view(np.uint8)])
    return blob, meta


def _int_field(meta: dict[str, Any], key: str, low: int, high: int) -> int:
    value = meta.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"entropy meta {key!r}={str(value)[:40]!r} is not an integer in [{low}, {high}].")
    return value


def decode_symbols(blob: np.ndarray, meta: dict[str, Any], numel: int) -> np.ndarray:
    """Inverse of :func:`encode_symbols`: `numel` symbols (int64); ValueError on a malformed stream."""
    form = meta.get("form")
    alphabet = _int_field(meta, "alphabet", 2, MAX_ALPHABET)
    count = _int_field(meta, "symbols", 0, numel)
    gap_alphabet = _int_field(meta, "gap_alphabet", 2, MAX_ALPHABET) if form == "sparse" else 0
    if form not in ("dense", "sparse") or (form == "dense" and count != numel):
        raise ValueError(f"entropy meta form={str(form)[:20]!r} with {count} symbols does not describe {numel}.")
    header_bytes = 2 * (alphabet + gap_alphabet)
    if blob.dtype != np.uint8 or blob.ndim != 1 or blob.size < header_bytes or (blob.size - header_bytes) % 4:
        raise ValueError(f"entropy stream of {blob.size} bytes does not fit its header of {header_bytes} bytes.")
    counts = blob[: 2 * alphabet].view("<u2").astype(np.uint16)
    words = np.ascontiguousarray(blob[header_bytes:]).view("<u4").astype(np.uint32)
    decoder = constriction.stream.stack.AnsCoder(words)
    if form == "dense":
        return decoder.decode(_model(counts), count).astype(np.int64)
    gap_counts = blob[2 * alphabet : header_bytes].view("<u2").astype(np.uint16)
    gap_symbols = _int_field(meta, "gap_symbols", count, max(count, 1) * max(1, math.ceil(numel / (gap_alphabet - 1))))
    gaps = unescape_gaps(decoder.decode(_model(gap_counts), gap_symbols).astype(np.int64), gap_alphabet)
    values = decoder.decode(_model(counts), count).astype(np.int64)
    positions = np.cumsum(gaps + 1) - 1
    if gaps.size != count or (positions.size and (positions[-1] >= numel or gaps.min() < 0)):
        raise ValueError("entropy stream: the sparse positions do not fit the tensor.")
    out = np.full(numel, _int_field(meta, "background", 0, alphabet - 1), dtype=np.int64)
    out[positions] = values
    return out


__all__ = ["coded_bits", "decode_symbols", "encode_symbols", "escape_gaps", "histogram", "unescape_gaps"]
