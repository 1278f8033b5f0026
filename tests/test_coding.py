"""labkit.coding: entropy, Huffman (against hand-computed codes and dahuffman), sparse storage."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from labkit import coding

symbol_lists = st.lists(st.integers(0, 20), min_size=1, max_size=300)


def test_dyadic_source_is_coded_exactly_at_the_entropy():
    s = [0] * 4 + [1] * 2 + [2] + [3]                       # p = 1/2, 1/4, 1/8, 1/8
    assert coding.entropy_bits(s) == 14.0                   # 4·1 + 2·2 + 3 + 3
    assert coding.huffman_lengths(s) == {0: 1, 1: 2, 2: 3, 3: 3}
    assert coding.huffman_code(s) == {0: "0", 1: "10", 2: "110", 3: "111"}
    assert coding.huffman_bits(s) == 14


def test_non_dyadic_hand_computed():
    # counts 5, 2, 1, 1, 1 (N = 10): merges 1+1=2, 1+2=3, 2+3=5, 5+5=10; the total length is
    # the sum of the merged weights, 2 + 3 + 5 + 10 = 20 (each merge adds a bit to its symbols)
    s = [7] * 5 + [3] * 2 + [1, 2, 9]
    assert coding.huffman_bits(s) == 20
    lengths = coding.huffman_lengths(s)
    assert lengths[7] == 1 and sorted(lengths.values()) in ([1, 3, 3, 3, 3], [1, 2, 3, 4, 4])
    H = -(5 * math.log2(.5) + 2 * math.log2(.2) + 3 * math.log2(.1))
    assert coding.entropy_bits(s) == pytest.approx(H)


def test_single_symbol_needs_one_bit_each():
    assert coding.huffman_bits([4, 4, 4]) == 3
    assert coding.entropy_bits([4, 4, 4]) == 0.0
    assert coding.huffman_code([4, 4, 4]) == {4: "0"}


def test_canonical_code_hand_computed():
    assert coding.canonical_code({0: 2, 1: 1, 2: 3, 3: 3}) == {1: "0", 0: "10", 2: "110", 3: "111"}


@settings(max_examples=60, deadline=None)
@given(symbol_lists)
def test_huffman_total_equals_dahuffman(s):
    from dahuffman import HuffmanCodec
    freq = coding.counts(s)
    # eof = a symbol already present, so that dahuffman adds no end-of-file symbol
    table = HuffmanCodec.from_frequencies(freq, eof=next(iter(freq))).get_code_table()
    ref = sum(n * table[k][0] for k, n in freq.items()) if len(freq) > 1 else len(s)
    assert coding.huffman_bits(s) == ref


@settings(max_examples=100, deadline=None)
@given(symbol_lists)
def test_huffman_within_one_bit_per_symbol_of_entropy(s):
    H, L, N = coding.entropy_bits(s), coding.huffman_bits(s), len(s)
    assert H - 1e-9 <= L <= H + N + 1e-9
    if len(set(s)) > 1:
        assert L < H + N
    # never worse than Shannon's code ℓ = ⌈−log2 p⌉, a valid prefix code
    shannon = sum(n * math.ceil(-math.log2(n / N) - 1e-12) for n in coding.counts(s).values())
    assert L <= max(shannon, N)


@settings(max_examples=60, deadline=None)
@given(symbol_lists)
def test_code_is_prefix_free_kraft_and_roundtrips(s):
    code = coding.huffman_code(s)
    words = sorted(code.values())
    assert not any(b.startswith(a) for a, b in zip(words, words[1:]))
    if len(code) > 1:
        assert sum(2.0 ** -len(w) for w in words) == 1.0         # Huffman trees are full
    bits = coding.encode(s, code)
    assert len(bits) == coding.huffman_bits(s)
    np.testing.assert_array_equal(coding.decode(bits, code), s)


def test_relative_index_hand_computed_with_fillers():
    m = np.zeros(40, bool)
    m[[0, 3, 20, 39]] = True
    stored, filler = coding.relative_index(m, 3)                 # gaps up to 8 per entry
    # gaps 1, 3, 17 = 8 + 8 + 1, 19 = 8 + 8 + 3
    np.testing.assert_array_equal(stored, [0, 2, 7, 7, 0, 7, 7, 2])
    np.testing.assert_array_equal(filler, [0, 0, 1, 1, 0, 1, 1, 0])
    s = coding.sparse_streams(np.arange(40) % 4, m, 3, 4)
    np.testing.assert_array_equal(s["value"], [0, 3, 4, 4, 0, 4, 4, 3])
    assert (s["nonzero"], s["fillers"]) == (4, 4)


def test_gap_of_exactly_two_to_the_b_needs_no_filler():
    m = np.zeros(16, bool)
    m[[7, 15]] = True                                          # gaps 8 and 8 with b = 3
    stored, filler = coding.relative_index(m, 3)
    np.testing.assert_array_equal(stored, [7, 7])
    assert not filler.any()


@settings(max_examples=80, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=400), st.integers(1, 6))
def test_relative_index_roundtrip_and_count(mask, b):
    m = np.array(mask, dtype=bool)
    stored, filler = coding.relative_index(torch.from_numpy(m), b)
    assert stored.min(initial=0) >= 0 and stored.max(initial=0) < 2 ** b
    np.testing.assert_array_equal(coding.positions(stored, filler), np.flatnonzero(m))
    gaps = np.diff(np.flatnonzero(m), prepend=-1)
    assert filler.sum() == ((gaps - 1) // 2 ** b).sum()


def test_the_empty_sequence_codes_in_zero_bits():
    assert coding.counts([]) == {} and coding.huffman_code([]) == {}
    assert coding.huffman_bits([]) == 0 and coding.entropy_bits([]) == 0.0
    assert coding.positions([], []).size == 0


def test_fixed_and_table_bits():
    assert [coding.fixed_bits(a) for a in (1, 2, 3, 32, 33)] == [1, 1, 2, 5, 6]
    assert coding.table_bits(33) == 165


@pytest.mark.parametrize("call, exc", [
    (lambda: coding.entropy_bits([0.5, 1.0]), TypeError),
    (lambda: coding.huffman_bits(torch.tensor([0.5])), TypeError),
    (lambda: coding.huffman_bits("abc"), TypeError),
    (lambda: coding.huffman_bits(np.zeros((2, 2), dtype=int)), ValueError),
    (lambda: coding.canonical_code({0: 1, 1: 1, 2: 1}), ValueError),
    (lambda: coding.relative_index(np.zeros(3), 3), TypeError),
    (lambda: coding.relative_index(np.zeros(3, bool), 0), ValueError),
    (lambda: coding.decode("0102", {0: "0"}), TypeError),
    (lambda: coding.decode("1", {0: "0", 1: "10"}), ValueError),
    (lambda: coding.encode([2], {0: "0"}), ValueError),
    (lambda: coding.encode([0], [0]), TypeError),                          # a code is a dict
    (lambda: coding.positions(np.array([0.5]), np.array([False])), TypeError),  # gaps are ints
    (lambda: coding.positions(np.array([-2]), np.array([False])), ValueError),
    (lambda: coding.positions(np.array([1]), np.array([0])), TypeError),        # filler is bool
    (lambda: coding.sparse_streams([0, 5], np.ones(2, bool), 3, 4), ValueError),
    (lambda: coding.sparse_streams([0, 1], np.ones(3, bool), 3, 4), ValueError),
])
def test_bad_input(call, exc):
    with pytest.raises(exc, match="parameter of"):
        call()
