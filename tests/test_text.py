"""labkit.text (the GPT's characters) and data.shakespeare (the shipped plays, split by whole plays)."""
import pytest
import torch

from labkit import data, text


@pytest.fixture(scope="module")
def split():
    return data.shakespeare()


def test_the_split_holds_out_whole_plays(split):
    train, val, test = split
    assert len(train) == 4_417_414 and len(val) == 231_095 and len(test) == 201_869
    assert val.startswith("JULIUS CAESAR\n") and "TWELFTH NIGHT" in val.upper()
    assert test.startswith("MACBETH\n") and "\nTHE TEMPEST\n" in test
    assert train.startswith("ALL'S WELL THAT ENDS WELL\n")
    # no line of dialogue of a held-out play occurs in train (long lines, so no chance coincidence)
    held_out = [line for line in (val + test).splitlines() if len(line) > 50]
    assert len(held_out) > 1000
    leaked = [line for line in held_out if line in train]
    assert len(leaked) / len(held_out) < 0.01, leaked[:5]


def test_the_vocabulary_is_the_sorted_characters_of_the_text(split):
    assert text.CHARS == "".join(sorted(set("".join(split))))
    assert len(text.CHARS) == 83


def test_encode_decode_round_trip_and_ids():
    ids = text.encode("To be")
    assert ids.dtype == torch.int64 and ids.tolist() == [text.CHARS.index(c) for c in "To be"]
    assert ids.tolist() == [45, 69, 1, 56, 59]
    assert text.decode(ids) == "To be" and text.decode(ids.tolist()) == "To be"


def test_encode_refuses_an_unknown_character():
    with pytest.raises(ValueError, match="The 's' parameter of encode"):
        text.encode("café")


def test_a_corrupt_file_is_refused(tmp_path, monkeypatch):
    bad = tmp_path / "shakespeare"
    bad.mkdir()
    for name, _ in data.SHAKESPEARE.values():
        (tmp_path / name).write_text("not Shakespeare")
    (tmp_path / "README.md").write_text("")
    monkeypatch.setattr(data, "data_dir", lambda: tmp_path)
    with pytest.raises(ValueError, match="sha256 mismatch"):
        data.shakespeare()


def test_calibration_is_seeded_windows_of_the_text():
    ids = torch.arange(1000)
    a = text.calibration(ids, 8, 16, seed=3)
    assert a.shape == (8, 16) and a.dtype == torch.int64
    assert torch.equal(a, text.calibration(ids, 8, 16, seed=3))
    assert not torch.equal(a, text.calibration(ids, 8, 16, seed=4))
    assert torch.equal(a[:, 1:] - a[:, :-1], torch.ones(8, 15, dtype=torch.int64))   # consecutive
    assert a.min() >= 0 and a.max() <= 999
    g = torch.Generator().manual_seed(3)                                              # the formula
    assert torch.equal(a[:, 0], torch.randint(0, 1000 - 16 + 1, (8,), generator=g))


def test_calibration_refuses_windows_longer_than_the_text():
    with pytest.raises(ValueError, match="The 'T' parameter of calibration"):
        text.calibration(torch.arange(10), 2, 11)
