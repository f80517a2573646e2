"""Compare two metrics.json files as a re-run must reproduce them."""

from __future__ import annotations

#: Keys that differ between two runs of the same work: their identities and timings.
VARYING = {"run", "scoring_seconds"}


def assert_same_metrics(a, b, path: str = "metrics") -> None:
    """Equal JSON, floats to 1e-6 (NaN equals NaN); :data:`VARYING` keys left out."""
    if isinstance(a, dict):
        assert set(a) - VARYING == set(b) - VARYING, path
        for key in set(a) - VARYING:
            assert_same_metrics(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_metrics(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert abs(a - b) <= 1e-6 or (a != a and b != b), f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"
