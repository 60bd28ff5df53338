#!/usr/bin/env python3
"""Makes a small fuzz seed from a journal file written by systemd.

The reader never looks at the hash tables, which fill most of a fresh
journal file, so they are dropped: every object after them moves down by
the same distance, every offset that points at an object is rewritten, and
the zeros after the last object are cut off.

usage: compact_seed.py IN.journal OUT.journal
"""
import struct
import sys

DATA, FIELD, ENTRY, DATA_HT, FIELD_HT, ENTRY_ARRAY = 1, 2, 3, 4, 5, 6
COMPACT = 1 << 4


def u64(b, at):
    return struct.unpack_from("<Q", b, at)[0]


def main(src, dst):
    b = bytearray(open(src, "rb").read())
    compact = struct.unpack_from("<I", b, 12)[0] & COMPACT
    header_size = u64(b, 88)
    tail = u64(b, 136)
    # Walk the objects in file order.
    objs, at = [], header_size
    while at and at <= tail:
        ty, size = b[at], u64(b, at + 8)
        objs.append((at, ty, size))
        at += (size + 7) // 8 * 8
    first_kept = next(o for o, ty, _ in objs if ty not in (DATA_HT, FIELD_HT))
    if any(ty in (DATA_HT, FIELD_HT) and o > first_kept for o, ty, _ in objs):
        sys.exit("hash tables are not at the start; cannot compact")
    shift = first_kept - header_size

    def fix(at, width=8):
        fmt = "<Q" if width == 8 else "<I"
        v = struct.unpack_from(fmt, b, at)[0]
        if v:
            struct.pack_into(fmt, b, at, v - shift)

    for o, ty, size in objs:
        if ty == DATA:
            for f in (24, 32, 40, 48):
                fix(o + f)
            if compact:
                fix(o + 64, 4)
        elif ty == FIELD:
            fix(o + 24)
            fix(o + 32)
        elif ty == ENTRY:
            item = 4 if compact else 16
            for i in range((size - 64) // item):
                fix(o + 64 + i * item, 4 if compact else 8)
        elif ty == ENTRY_ARRAY:
            fix(o + 16)
            item = 4 if compact else 8
            for i in range((size - 24) // item):
                fix(o + 24 + i * item, item)
    end = objs[-1][0] + (objs[-1][2] + 7) // 8 * 8
    out = b[:header_size] + b[first_kept:end]
    for f in (104, 112, 120, 128):  # hash table offsets and sizes
        struct.pack_into("<Q", out, f, 0)
    fix_hdr = lambda f: struct.pack_into("<Q", out, f, u64(out, f) - shift if u64(out, f) else 0)
    fix_hdr(136)  # tail object
    fix_hdr(176)  # first entry array
    struct.pack_into("<Q", out, 96, len(out) - header_size)  # arena size
    open(dst, "wb").write(out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
