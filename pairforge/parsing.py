"""Parsing of the list and size values used on every command line (`512x256`, `0.8,0.1,0.1`)."""

from __future__ import annotations

from pairforge.errors import UsageError


def parse_size(text: str, flag: str = "--size") -> tuple[int, int]:
    """`N` (square) or `WxH` -> (width, height)."""
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise UsageError(f"{flag} {text!r}: expected N or WxH, e.g. 256 or 512x256") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) <= 0:
        raise UsageError(f"{flag} {text!r}: expected N or WxH with positive sides, e.g. 256 or 512x256")
    return values[0], values[1]


def parse_list(text: str, flag: str, kind: type = float, length: int | None = None) -> list:
    """A comma-separated list of numbers: `0.8,0.1,0.1` or `50,150`."""
    try:
        values = [kind(p) for p in text.split(",")]
    except ValueError:
        raise UsageError(f"{flag} {text!r}: expected comma-separated {kind.__name__} values") from None
    if length is not None and len(values) != length:
        raise UsageError(f"{flag} {text!r}: expected {length} comma-separated values")
    return values


def parse_choices(text: str, flag: str, allowed: tuple[str, ...]) -> list[str]:
    """A comma-separated list of names from `allowed`, order kept, duplicates dropped."""
    names = list(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        raise UsageError(f"{flag} {text!r}: choose from {', '.join(allowed)}")
    return names


_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9}


def parse_bytes(text: str, flag: str) -> int:
    """`1GB`, `500MB`, `64kb` or a plain number of bytes (decimal units) -> bytes."""
    number = text.strip().lower().rstrip("bkmg")
    unit = text.strip().lower()[len(number) :]
    try:
        value = float(number) * _UNITS[unit]
    except (ValueError, KeyError):
        raise UsageError(f"{flag} {text!r}: expected a size such as 1GB, 500MB or 100000") from None
    if value < 1:
        raise UsageError(f"{flag} {text!r}: must be at least 1 byte")
    return int(value)


DIRECTIONS = {"atob": "AtoB", "ab": "AtoB", "btoa": "BtoA", "ba": "BtoA"}


def parse_direction(text: str) -> str:
    """`--direction` on every command: AtoB or BtoA, also written AB or BA (case ignored) -> AtoB or BtoA."""
    found = DIRECTIONS.get(text.strip().lower())
    if found is None:
        raise UsageError(f"--direction {text!r}: choose from AtoB (or AB), BtoA (or BA)")
    return found
