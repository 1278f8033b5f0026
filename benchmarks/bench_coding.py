"""Huffman coding: labkit.coding against dahuffman (the reference), measured in the same run.

    .venv/bin/python benchmarks/bench_coding.py

Prints the time to build the code and count the bits of 200,000 symbols from a 33-symbol
alphabet (the size of a Deep Compression value stream), for both, and their ratio. The totals
must agree. Timings depend on the machine and its load: read the ratio, not the seconds.
"""
import time

import numpy as np

from labkit import coding


def best_of(fn, repeats=3):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main():
    from dahuffman import HuffmanCodec

    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(33) * 0.5)
    symbols = rng.choice(33, size=200_000, p=p)

    def ref():
        freq = coding.counts(symbols)
        table = HuffmanCodec.from_frequencies(freq, eof=next(iter(freq))).get_code_table()
        return sum(n * table[k][0] for k, n in freq.items())

    t_lab, bits_lab = best_of(lambda: coding.huffman_bits(symbols))
    t_ref, bits_ref = best_of(ref)
    assert bits_lab == bits_ref, (bits_lab, bits_ref)
    t_enc, encoded = best_of(lambda: coding.encode(symbols, coding.huffman_code(symbols)), 1)
    t_enc_ref, _ = best_of(lambda: HuffmanCodec.from_data(symbols.tolist()).encode(symbols.tolist()), 1)
    print(f"huffman_bits: labkit {t_lab * 1e3:.1f} ms, dahuffman {t_ref * 1e3:.1f} ms "
          f"(ratio labkit/dahuffman {t_lab / t_ref:.2f}); both {bits_lab:,} bits, "
          f"entropy {coding.entropy_bits(symbols):,.0f}")
    print(f"encode: labkit {t_enc * 1e3:.0f} ms ('0'/'1' string), dahuffman {t_enc_ref * 1e3:.0f} ms "
          f"(bytes) (ratio {t_enc / t_enc_ref:.2f}); {len(encoded):,} bits")


if __name__ == "__main__":
    main()
