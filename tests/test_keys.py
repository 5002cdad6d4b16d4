from __future__ import annotations

import random
from pathlib import Path, PurePosixPath

import pytest

from defstate.errors import InvalidStateKeyError
from defstate.state_storage.keys import decode_key, encode_key

TRICKY = [
    "../x",
    "..",
    ".",
    "/abs",
    "/etc/passwd",
    "a/b",
    "a__b",
    "a%2Fb",
    "a+b",
    "x" * 300,
    "é" * 150,
    "DbtProject[analytics]",
    "表/データ",
    "nul\x00byte",
    "C:\\windows",
    " leading space",
    ".hidden",
]


@pytest.mark.parametrize("key", TRICKY)
def test_round_trip_and_stays_inside_root(key: str, tmp_path: Path) -> None:
    encoded = encode_key(key)
    assert decode_key(encoded) == key
    assert not encoded.is_absolute()
    for part in encoded.parts:
        assert part not in (".", "..")
        assert not part.startswith(".")
        assert len(part.encode()) <= 255
        assert "/" not in part and "\\" not in part and "\x00" not in part
    target = (tmp_path / encoded).resolve()
    assert target.is_relative_to(tmp_path.resolve())


def test_injective_on_tricky_and_random_keys() -> None:
    rng = random.Random(1234)
    alphabet = "ab_/.%+-[]é\x00 "
    keys = set(TRICKY)
    keys.update(
        "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(3000)
    )
    keys.update("y" * n for n in (199, 200, 201, 400, 401))
    encodings = {encode_key(k) for k in keys}
    assert len(encodings) == len(keys)


def test_chunked_key_cannot_collide_with_nested_path() -> None:
    short = encode_key("A" * 200)
    longer = encode_key("A" * 200 + "state")
    assert short.parts == ("A" * 200,)
    assert longer.parts == ("A" * 200 + "+", "state")


def test_readable_for_common_keys() -> None:
    assert encode_key("DbtProject[analytics]") == PurePosixPath("DbtProject[analytics]")
    assert str(encode_key("a/b")) == "a%2Fb"


@pytest.mark.parametrize("bad", ["", "a%2", "a+", "a.b", "%ZZ"])
def test_decode_rejects_paths_encode_never_makes(bad: str) -> None:
    with pytest.raises((InvalidStateKeyError, ValueError)):
        decode_key(bad)


def test_empty_key_rejected() -> None:
    with pytest.raises(InvalidStateKeyError):
        encode_key("")
