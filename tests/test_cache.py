"""The bounded short-lived cache behind the gateway's per-request reads."""

from __future__ import annotations

import pytest

from authgate.cache import Cache


class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_entries_live_ttl_seconds() -> None:
    t = Ticks()
    c: Cache[str, int] = Cache(ttl=0.5, clock=t)
    c.put("a", 1)
    assert c.get("a") == 1
    t.now += 0.49
    assert c.get("a") == 1
    t.now += 0.02
    assert c.get("a") is None and len(c) == 0


def test_put_refreshes_and_drop_forgets() -> None:
    t = Ticks()
    c: Cache[str, int] = Cache(ttl=1, clock=t)
    c.put("a", 1)
    t.now += 0.9
    c.put("a", 2)
    t.now += 0.9
    assert c.get("a") == 2
    c.drop("a")
    c.drop("never there")
    assert c.get("a") is None


def test_size_is_bounded_oldest_goes_first() -> None:
    c: Cache[int, int] = Cache(ttl=60, size=3)
    for i in range(5):
        c.put(i, i)
    assert len(c) == 3
    assert [c.get(i) for i in range(5)] == [None, None, 2, 3, 4]
    c.put(3, 33)  # replacing an entry evicts nothing
    assert len(c) == 3 and c.get(2) == 2
    c.clear()
    assert len(c) == 0


def test_ttl_zero_keeps_nothing() -> None:
    c: Cache[str, int] = Cache(ttl=0)
    c.put("a", 1)
    assert c.get("a") is None and len(c) == 0


@pytest.mark.parametrize(("ttl", "size"), [(-1, 10), (1, 0)])
def test_nonsense_bounds_are_refused(ttl: float, size: int) -> None:
    with pytest.raises(ValueError, match="ttl >= 0 and size >= 1"):
        Cache(ttl=ttl, size=size)
