"""Entropy coding and sparse storage, with every bit counted.

Shannon (1948): a source whose symbols s occur n_s times out of N (p_s = n_s / N) cannot be
coded, one symbol at a time, in fewer than

    N · H = −Σ_s n_s · log2(n_s / N)     bits                         (`entropy_bits`)

Huffman (1952) builds an optimal prefix code by repeatedly merging the two least frequent
subtrees; its total length L satisfies N·H ≤ L < N·H + N (less than one extra bit per symbol),
with L = N·H exactly when every p_s is a power of 1/2 (a dyadic source). `huffman_lengths`
returns the code lengths ℓ_s, `canonical_code` turns them into the canonical code (codewords
of equal length are consecutive binary numbers, ordered by symbol), so that a decoder needs only
the lengths: the table costs `TABLE_BITS_PER_SYMBOL` bits per symbol of the alphabet.

Sparse storage as in Deep Compression (Han, Mao & Dally 2016, §2 and Fig. 2,
https://arxiv.org/abs/1510.00149): the kept weights of a flattened layer are stored in order,
each with the *gap* to the previous one, g = p_i − p_{i−1} (p_{−1} = −1), in a fixed `index_bits`
b bits as g − 1 ∈ [0, 2^b − 1]. A gap larger than 2^b is bridged with filler entries, each a
stored zero weight 2^b positions further on. The value stream then holds one codebook index per
real entry and the extra symbol K (= "zero") per filler.
"""
from __future__ import annotations

import heapq
import math
import numbers

import numpy as np
import torch

from .validate import accepts, check_bits, check_int, message

TABLE_BITS_PER_SYMBOL = 5   # a canonical table stores each code length ℓ_s ≤ 31 in 5 bits


def _symbols(symbols, func: str) -> np.ndarray:
    """A 1-D int64 ndarray from an integer tensor, ndarray, list or tuple."""
    if isinstance(symbols, torch.Tensor):
        if symbols.is_floating_point() or symbols.is_complex() or symbols.dtype == torch.bool:
            raise TypeError(message("symbols", func, "integers", f"dtype {symbols.dtype}"))
        arr = symbols.detach().cpu().numpy()
    elif isinstance(symbols, np.ndarray):
        if not np.issubdtype(symbols.dtype, np.integer):
            raise TypeError(message("symbols", func, "integers", f"dtype {symbols.dtype}"))
        arr = symbols
    elif isinstance(symbols, (list, tuple)):
        if not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in symbols):
            raise TypeError(message("symbols", func, "a sequence of ints", symbols))
        arr = np.asarray(symbols, dtype=np.int64)
    else:
        raise TypeError(message("symbols", func, "a 1-D integer tensor, ndarray, list or tuple",
                                 type(symbols).__name__))
    if arr.ndim != 1:
        raise ValueError(message("symbols", func, "1-D", f"shape {arr.shape}"))
    return arr.astype(np.int64, copy=False)


@accepts(list="an empty sequence has no symbols: its counts are {}")
def counts(symbols) -> dict[int, int]:
    """{symbol: number of occurrences}, symbols in increasing order."""
    arr = _symbols(symbols, "counts")
    values, n = np.unique(arr, return_counts=True)
    return {int(v): int(c) for v, c in zip(values, n)}


@accepts(list="an empty sequence has no symbols: N·H = 0 bits")
def entropy_bits(symbols) -> float:
    """N · H of the empirical distribution, in bits: the least a symbol-by-symbol code can use."""
    n = np.array(list(counts(symbols).values()), dtype=np.float64)
    if n.size == 0:
        return 0.0
    return float(-(n * np.log2(n / n.sum())).sum())


@accepts(list="an empty sequence has no symbols, so no code lengths: {}")
def huffman_lengths(symbols) -> dict[int, int]:
    """{symbol: ℓ_s}, the code lengths of a Huffman code for the symbols' frequencies.

    Ties are broken by symbol, so the result is deterministic. A source with a single distinct
    symbol gets ℓ = 1 (a codeword cannot be empty).
    """
    freq = counts(symbols)
    if len(freq) <= 1:
        return {s: 1 for s in freq}
    # heap of (weight, tie-break, symbols in the subtree); each merge makes them one bit longer
    heap = [(n, i, [s]) for i, (s, n) in enumerate(freq.items())]
    heapq.heapify(heap)
    length = dict.fromkeys(freq, 0)
    tie = len(heap)
    while len(heap) > 1:
        n1, _, s1 = heapq.heappop(heap)
        n2, _, s2 = heapq.heappop(heap)
        for s in s1 + s2:
            length[s] += 1
        heapq.heappush(heap, (n1 + n2, tie, s1 + s2))
        tie += 1
    return length


def canonical_code(lengths: dict[int, int]) -> dict[int, str]:
    """The canonical prefix code {symbol: codeword as a '0'/'1' string} with the given lengths.

    Symbols sorted by (ℓ, symbol) get consecutive codewords; the lengths must satisfy Kraft's
    inequality Σ 2^−ℓ ≤ 1.
    """
    if not isinstance(lengths, dict) or not all(
            isinstance(v, numbers.Integral) and v >= 1 for v in lengths.values()):
        raise TypeError(message("lengths", "canonical_code", "a dict {symbol: int length ≥ 1}",
                                 lengths))
    if sum(2.0 ** -v for v in lengths.values()) > 1 + 1e-12:
        raise ValueError(message("lengths", "canonical_code", "lengths with Σ 2^-ℓ ≤ 1 (Kraft)",
                                  lengths))
    code, value, prev = {}, 0, 0
    for s, ell in sorted(lengths.items(), key=lambda kv: (kv[1], kv[0])):
        value <<= ell - prev
        code[s] = format(value, f"0{ell}b")
        value += 1
        prev = ell
    return code


@accepts(list="an empty sequence has no symbols, so no codewords: {}")
def huffman_code(symbols) -> dict[int, str]:
    """The canonical Huffman code {symbol: codeword} of the symbols' frequencies."""
    return canonical_code(huffman_lengths(symbols))


@accepts(list="the Huffman code of an empty sequence is 0 bits")
def huffman_bits(symbols) -> int:
    """Total length in bits of `symbols` coded with an optimal prefix (Huffman) code: Σ_s n_s·ℓ_s.

    The table that a decoder also needs is not included (see `table_bits`).
    """
    arr = _symbols(symbols, "huffman_bits")
    freq, length = counts(arr), huffman_lengths(arr)
    return int(sum(freq[s] * length[s] for s in freq))


@accepts(large="a size, only multiplied: a table over 10**9 symbols is 5·10**9 bits; nothing is allocated")
def table_bits(alphabet_size: int) -> int:
    """Bits of a canonical Huffman table over symbols 0..A−1: one 5-bit length per symbol."""
    alphabet_size = check_int(alphabet_size, "alphabet_size", "table_bits", low=1)
    return TABLE_BITS_PER_SYMBOL * alphabet_size


def encode(symbols, code: dict[int, str]) -> str:
    """The concatenated codewords of `symbols` as a '0'/'1' string."""
    arr = _symbols(symbols, "encode")
    if not isinstance(code, dict):
        raise TypeError(message("code", "encode", "a dict {symbol: codeword}", type(code).__name__))
    missing = sorted(set(np.unique(arr).tolist()) - set(code))
    if missing:
        raise ValueError(message("code", "encode", "a code with a codeword for every symbol",
                                  f"no codeword for {missing[:5]}"))
    return "".join(code[int(s)] for s in arr)


def decode(bits: str, code: dict[int, str]) -> np.ndarray:
    """Invert `encode`: read codewords of the prefix code `code` from a '0'/'1' string."""
    if not isinstance(bits, str) or set(bits) - {"0", "1"}:
        raise TypeError(message("bits", "decode", "a string of '0' and '1'", bits[:20]
                                 if isinstance(bits, str) else type(bits).__name__))
    inverse = {w: s for s, w in code.items()}
    out, word = [], ""
    for b in bits:
        word += b
        if word in inverse:
            out.append(inverse[word])
            word = ""
    if word:
        raise ValueError(message("bits", "decode", "a whole number of codewords",
                                  f"{len(word)} bits left over"))
    return np.asarray(out, dtype=np.int64)


def relative_index(mask, index_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Deep Compression's relative indices of the True entries of a flattened keep-mask.

    Returns (stored, filler), one item per stored entry in order: `stored` = g − 1 ∈ [0, 2^b − 1]
    where g is the gap to the previous stored entry, `filler` True for a filler zero inserted
    because the real gap exceeded 2^b (b = index_bits). Entries = kept weights + fillers.
    """
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
        raise TypeError(message("mask", "relative_index", "a bool tensor or ndarray",
                                 getattr(mask, "dtype", type(mask).__name__)))
    b = check_bits(index_bits, "index_bits", "relative_index")
    span = 2 ** b                                               # largest gap one entry can store
    pos = np.flatnonzero(mask.reshape(-1))
    gap = np.diff(pos, prepend=-1)                              # g_i ≥ 1
    fillers = (gap - 1) // span                                 # fillers before each real entry
    per_entry = fillers + 1
    filler = np.ones(int(per_entry.sum()), dtype=bool)
    ends = np.cumsum(per_entry) - 1                             # the real entry closes each run
    filler[ends] = False
    stored = np.full(filler.shape, span - 1, dtype=np.int64)    # a filler stores gap 2^b
    stored[ends] = gap - fillers * span - 1
    return stored, filler


@accepts(list="no stored entries, no positions: an empty array")
def positions(stored, filler) -> np.ndarray:
    """Invert `relative_index`: the flat positions of the real (non-filler) entries."""
    stored = _symbols(stored, "positions")
    if isinstance(filler, torch.Tensor):
        filler = filler.detach().cpu().numpy()
    elif isinstance(filler, (list, tuple)) and all(isinstance(f, (bool, np.bool_)) for f in filler):
        filler = np.asarray(filler, dtype=bool)
    if not isinstance(filler, np.ndarray) or filler.dtype != np.bool_:
        raise TypeError(message("filler", "positions", "a 1-D bool array, tensor or list",
                                 getattr(filler, "dtype", type(filler).__name__)))
    if stored.size and stored.min() < 0:
        raise ValueError(message("stored", "positions", "gaps − 1 ≥ 0", f"minimum {stored.min()}"))
    if stored.shape != filler.shape or stored.ndim != 1:
        raise ValueError(message("filler", "positions", "a 1-D array shaped like stored",
                                  f"shape {filler.shape}"))
    return (np.cumsum(stored + 1) - 1)[~filler]


def sparse_streams(codes, mask, index_bits: int, alphabet_size: int) -> dict:
    """The two streams that store one pruned, weight-shared layer.

    codes: the codebook index ∈ [0, K) of every weight (flattened, any value where pruned);
    mask: the keep-mask (same number of elements); K = alphabet_size.
    Returns {"index": stored gaps, "value": codebook indices with K for each filler,
    "nonzero": kept weights, "fillers": filler entries}.
    """
    if isinstance(codes, (torch.Tensor, np.ndarray)):
        codes = codes.reshape(-1)
    arr = _symbols(codes, "sparse_streams")
    K = check_int(alphabet_size, "alphabet_size", "sparse_streams", low=1)
    stored, filler = relative_index(mask, index_bits)         # also checks the mask
    flat = (mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else mask).reshape(-1)
    if flat.size != arr.size:
        raise ValueError(message("mask", "sparse_streams", f"a mask with {arr.size} elements "
                                  "like codes", f"{flat.size} elements"))
    kept = arr[flat]
    if kept.size and (kept.min() < 0 or kept.max() >= K):
        raise ValueError(message("codes", "sparse_streams", f"indices in [0, {K - 1}] where kept",
                                  f"range [{kept.min()}, {kept.max()}]"))
    value = np.full(filler.shape, K, dtype=np.int64)
    value[~filler] = kept
    return {"index": stored, "value": value, "nonzero": int(kept.size),
            "fillers": int(filler.sum())}


@accepts(large="a size, only its log taken: 10**9 symbols need ⌈log2 10**9⌉ = 30 bits; nothing is allocated")
def fixed_bits(alphabet_size: int) -> int:
    """Bits of a fixed-width code for an alphabet of A symbols: ⌈log2 A⌉ (1 for A = 1)."""
    A = check_int(alphabet_size, "alphabet_size", "fixed_bits", low=1)
    return max(1, math.ceil(math.log2(A)))
