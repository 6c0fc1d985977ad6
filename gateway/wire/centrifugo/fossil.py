"""Fossil deltas: ``create`` one from a source to a target, ``apply`` one to a source.

The format and the encoder follow the fossil SCM's published description of its delta
(``www/delta_format.wiki`` and ``www/delta_encoder_algorithm.wiki``), the format
Centrifugo's ``delta: "fossil"`` subscriptions carry and its SDKs apply:

    delta   := length "\\n" command* checksum ";"
    command := count "@" offset ","     copy count bytes of the source from offset
             | count ":" bytes           insert the next count bytes of the delta

Numbers are written in a base-64 alphabet, most significant digit first; the checksum is
the 32-bit sum of the target read as big-endian words. The encoder indexes the source in
blocks of 16 bytes by a rolling hash, slides that hash over the target, and at each hit
extends the match forwards and backwards; a match is taken when its copy command is
shorter than the bytes it replaces.

``create(..., text=True)`` keeps every copy on UTF-8 character boundaries of the target,
so that the delta of valid UTF-8 is itself valid UTF-8: the JSON dialect carries deltas
as JSON strings, which the SDKs turn back into bytes as UTF-8.
"""

from __future__ import annotations

import operator
import struct

NHASH = 16
"""Bytes per hashed block of the source (and the width of the rolling hash window)."""

_DIGITS = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~"
_VALUES = {digit: value for value, digit in enumerate(_DIGITS)}
_CANDIDATES_PER_HASH = 250
_CHUNK = 256
_MIN_COPY = 6
"""The shortest copy worth its command: three one-digit numbers and three punctuation marks."""
_WEIGHTS = tuple(range(NHASH, 0, -1))


class DeltaError(ValueError):
    """A delta that is malformed or does not fit the source it is applied to."""


def create(source: bytes, target: bytes, *, text: bool = False) -> bytes:
    """A delta that turns ``source`` into ``target``."""
    out = bytearray(_encode_int(len(target)) + b"\n")
    target_len = len(target)
    if len(source) <= NHASH:
        _literal(out, target)
        out += _encode_int(checksum(target)) + b";"
        return bytes(out)

    buckets = len(source) // NHASH
    collide = [-1] * buckets
    landmark = [-1] * buckets
    for start in range(0, len(source) - NHASH, NHASH):
        slot = _hash_block(source, start) % buckets
        collide[start // NHASH] = landmark[slot]
        landmark[slot] = start // NHASH

    base = 0
    while base + NHASH < target_len:
        a, b = _hash_sums(target, base)
        i = 0
        while True:
            best_count = best_offset = best_literal = 0
            block = landmark[((a & 0xFFFF) | ((b & 0xFFFF) << 16)) % buckets]
            budget = _CANDIDATES_PER_HASH
            while block >= 0 and budget > 0:
                budget -= 1
                src = block * NHASH
                here = base + i
                forward = (
                    _common_prefix(source, src, target, here) if source[src] == target[here] else 0
                )
                backward = (
                    _common_suffix(source, src, target, here, min(src - 1, i))
                    if i > 0 and src > 1 and source[src - 1] == target[here - 1]
                    else 0
                )
                if forward + backward < _MIN_COPY:
                    block = collide[block]
                    continue
                start, end = here - backward, here + forward
                offset = src - backward
                if text:
                    while start < end and _continues(target, start):
                        start += 1
                        offset += 1
                    while end > start and end < target_len and _continues(target, end):
                        end -= 1
                count = end - start
                cost = _digit_count(start - base) + _digit_count(count) + _digit_count(offset) + 3
                if count >= cost and count > best_count:
                    best_count, best_offset, best_literal = count, offset, start - base
                block = collide[block]
            if best_count > 0:
                if best_literal > 0:
                    _literal(out, target[base : base + best_literal])
                    base += best_literal
                out += _encode_int(best_count) + b"@" + _encode_int(best_offset) + b","
                base += best_count
                break
            if base + i + NHASH >= target_len:
                _literal(out, target[base:])
                base = target_len
                break
            old, new = target[base + i], target[base + i + NHASH]
            a = (a - old + new) & 0xFFFF
            b = (b - NHASH * old + a) & 0xFFFF
            i += 1
    if base < target_len:
        _literal(out, target[base:])
    out += _encode_int(checksum(target)) + b";"
    return bytes(out)


def apply(source: bytes, delta: bytes) -> bytes:
    """The target that ``delta`` makes of ``source``; ``DeltaError`` if it does not fit."""
    position, length = _decode_int(delta, 0)
    position = _expect(delta, position, b"\n")
    out = bytearray()
    while position < len(delta):
        position, count = _decode_int(delta, position)
        if position >= len(delta):
            break
        op = delta[position]
        position += 1
        if op == ord("@"):
            position, offset = _decode_int(delta, position)
            position = _expect(delta, position, b",")
            if offset + count > len(source):
                raise DeltaError("copy past the end of the source")
            if len(out) + count > length:
                raise DeltaError("copy past the declared length of the target")
            out += source[offset : offset + count]
        elif op == ord(":"):
            if position + count > len(delta):
                raise DeltaError("insert past the end of the delta")
            if len(out) + count > length:
                raise DeltaError("insert past the declared length of the target")
            out += delta[position : position + count]
            position += count
        elif op == ord(";"):
            if len(out) != length:
                raise DeltaError(f"target is {len(out)} bytes, the delta declares {length}")
            if count != checksum(out):
                raise DeltaError("checksum mismatch")
            return bytes(out)
        else:
            raise DeltaError(f"unknown command {chr(op)!r} at byte {position - 1}")
    raise DeltaError("unterminated delta")


def checksum(data: bytes | bytearray) -> int:
    """The 32-bit sum of ``data`` as big-endian words, the last one padded with zeros."""
    padded = bytes(data) + b"\0" * (-len(data) % 4)
    words: tuple[int, ...] = struct.unpack(f">{len(padded) // 4}I", padded)
    return sum(words) & 0xFFFFFFFF


def _literal(out: bytearray, data: bytes) -> None:
    out += _encode_int(len(data)) + b":" + data


def _encode_int(value: int) -> bytes:
    if value == 0:
        return b"0"
    digits = bytearray()
    while value > 0:
        digits.append(_DIGITS[value & 0x3F])
        value >>= 6
    digits.reverse()
    return bytes(digits)


def _decode_int(data: bytes, position: int) -> tuple[int, int]:
    start = position
    value = 0
    while position < len(data) and data[position] in _VALUES:
        value = (value << 6) | _VALUES[data[position]]
        position += 1
    if position == start:
        raise DeltaError(f"expected a number at byte {start}")
    return position, value


def _expect(data: bytes, position: int, char: bytes) -> int:
    if data[position : position + 1] != char:
        raise DeltaError(f"expected {char!r} at byte {position}")
    return position + 1


def _digit_count(value: int) -> int:
    count, limit = 1, 64
    while value >= limit:
        count += 1
        limit <<= 6
    return count


def _hash_sums(data: bytes, start: int) -> tuple[int, int]:
    """The two 16-bit sums of the rolling hash over ``data[start:start + NHASH]``."""
    window = data[start : start + NHASH]
    return sum(window) & 0xFFFF, sum(map(operator.mul, _WEIGHTS, window)) & 0xFFFF


def _hash_block(data: bytes, start: int) -> int:
    a, b = _hash_sums(data, start)
    return a | (b << 16)


def _continues(data: bytes, index: int) -> bool:
    """``data[index]`` is a UTF-8 continuation byte (not the start of a character)."""
    return data[index] & 0xC0 == 0x80


def _common_prefix(a: bytes, i: int, b: bytes, j: int) -> int:
    """How many bytes ``a[i:]`` and ``b[j:]`` have in common at their start."""
    limit = min(len(a) - i, len(b) - j)
    count = 0
    while (
        count + _CHUNK <= limit
        and a[i + count : i + count + _CHUNK] == b[j + count : j + count + _CHUNK]
    ):
        count += _CHUNK
    end = min(limit, count + _CHUNK)
    while count < end and a[i + count] == b[j + count]:
        count += 1
    return count


def _common_suffix(a: bytes, i: int, b: bytes, j: int, limit: int) -> int:
    """How many bytes (at most ``limit``) ``a[:i]`` and ``b[:j]`` have in common at their end."""
    count = 0
    while (
        count + _CHUNK <= limit
        and a[i - count - _CHUNK : i - count] == b[j - count - _CHUNK : j - count]
    ):
        count += _CHUNK
    end = min(limit, count + _CHUNK)
    while count < end and a[i - count - 1] == b[j - count - 1]:
        count += 1
    return count
