#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""md_query.py - a market-data query process in Python: best bid and ask of
a symbol, read from a replica of the exchange engine's books.

The engine in apps/exchange keeps all its state in one pagetrack region (the
layout is apps/exchange/book.h).  This process opens a replica of that region
and reads the books through numpy views of the replica's memory: no copy, no
socket, no request to the engine.  Between two refreshes a private replica
does not change, so every answer comes from one whole epoch.

Run it alongside the demo, which must keep its work directory:

    make demo DEMO_ARGS="--dir /tmp/xch --seconds 60" &
    PAGETRACK_LIB=build/libpagetrack.so.0 PYTHONPATH=python \\
        /usr/bin/python3 examples/md_query.py /tmp/xch/data 7 42 --watch 5

(without --dir the demo works in a temporary directory that it removes at
the end; with it the directory stays, and this program can still read the
last epoch after the demo is over; remove /tmp/xch before the next run.)

    md_query.py DIR SYMBOL... [--depth N] [--watch SECONDS] [--shared NAME]

DIR is the engine's data directory (the demo's is WORKDIR/data).  Symbols
are numbers, 0 to nsymbols - 1.  --depth prints N levels per side, --watch
refreshes and answers again every time the engine publishes an epoch, for
that many seconds, --shared NAME reads the shared copy the md servers use
when the demo runs with --shared (its name is exchange-demo-PID).
"""
import argparse
import errno
import sys
import time

import numpy

import pagetrack

# apps/exchange/book.h, XB_VERSION 3 (x86-64 and other LP64 little-endian).
XB_MAGIC = 0x4b4f4f4248435845	# "EXCHBOOK"
XB_VERSION = 3
XB_NIL = 0xffffffff
XB_BUY, XB_SELL = 0, 1

HEADER = numpy.dtype({
    "names": ["magic", "version", "header_size", "block_size", "nsymbols", "max_orders",
              "max_levels", "off_symbols", "off_levels", "commands", "trade_count",
              "live_orders"],
    "formats": ["<u8", "<u4", "<u4", "<u8", "<u4", "<u4", "<u4", "<u8", "<u8", "<u8", "<u8",
                "<u8"],
    "offsets": [0, 8, 12, 16, 24, 28, 32, 48, 56, 112, 120, 136],
    "itemsize": 168,
})
SYMBOL = numpy.dtype({
    "names": ["best", "nlevels", "last_price", "volume", "trades"],
    "formats": [("<u4", 2), ("<u4", 2), "<i8", "<u8", "<u8"],
    "offsets": [0, 8, 16, 24, 32],
    "itemsize": 48,
})
LEVEL = numpy.dtype({
    "names": ["price", "qty", "norders", "next"],
    "formats": ["<i8", "<u8", "<u4", "<u4"],
    "offsets": [0, 8, 16, 28],
    "itemsize": 64,
})


class Books:
    """numpy views of one replica's books, checked as book.c's xb_attach()
    checks them; every index followed is bounds-checked, every walk bounded."""

    def __init__(self, replica):
        h = replica.array(HEADER, count=1)[0]
        if h["magic"] != XB_MAGIC:
            raise ValueError("no exchange books in this region (magic %#x)" % h["magic"])
        if h["version"] != XB_VERSION or h["header_size"] != HEADER.itemsize:
            raise ValueError("books of layout version %d, this program reads %d"
                             % (h["version"], XB_VERSION))
        if h["block_size"] > replica.size:
            raise ValueError("books of %d bytes in a region of %d" % (h["block_size"], replica.size))
        self.header = h
        self.nsymbols = int(h["nsymbols"])
        self.max_levels = int(h["max_levels"])
        for off, n, dt in ((h["off_symbols"], self.nsymbols, SYMBOL),
                           (h["off_levels"], self.max_levels, LEVEL)):
            if off + n * dt.itemsize > h["block_size"]:
                raise ValueError("a table of the books lies outside them")
        self.symbols = replica.array(SYMBOL, offset=int(h["off_symbols"]), count=self.nsymbols)
        self.levels = replica.array(LEVEL, offset=int(h["off_levels"]), count=self.max_levels)

    def side(self, sym, side, depth):
        """Up to depth (price, qty, norders) levels of one side, best first."""
        out = []
        li = int(self.symbols[sym]["best"][side])
        while li != XB_NIL and len(out) < depth:
            if li >= self.max_levels:
                raise ValueError("symbol %d: level index %d out of range (a damaged copy)"
                                 % (sym, li))
            lvl = self.levels[li]
            out.append((int(lvl["price"]), int(lvl["qty"]), int(lvl["norders"])))
            li = int(lvl["next"])
        return out


def show(levels):
    if not levels:
        return "-"
    return "  ".join("%d x %d (%d)" % lvl for lvl in levels)


def answer(books, epoch, symbols, depth):
    for sym in symbols:
        if sym >= books.nsymbols:
            print("epoch %d  symbol %d: no such symbol (0 to %d)" % (epoch, sym, books.nsymbols - 1))
            continue
        s = books.symbols[sym]
        print("epoch %d  symbol %d  bid %s  |  ask %s  |  last %d, %d trades, volume %d" % (
            epoch, sym, show(books.side(sym, XB_BUY, depth)), show(books.side(sym, XB_SELL, depth)),
            s["last_price"], s["trades"], s["volume"]))


def open_replica(args):
    """The engine may not have made its region yet: retry for a few seconds."""
    deadline = time.monotonic() + args.wait
    while True:
        try:
            return pagetrack.Replica(args.dir, shared=args.shared is not None, name=args.shared)
        except pagetrack.PagetrackError as e:
            if e.errno not in (errno.ENOENT, errno.EMEDIUMTYPE) or time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def main():
    p = argparse.ArgumentParser(description="best bid/ask from the exchange's replica")
    p.add_argument("dir", help="the engine's data directory (the demo's WORKDIR/data)")
    p.add_argument("symbols", type=int, nargs="+", metavar="SYMBOL")
    p.add_argument("--depth", type=int, default=1, help="levels per side (default 1)")
    p.add_argument("--watch", type=float, default=0, metavar="SECONDS",
                   help="answer again at each new epoch for this long")
    p.add_argument("--shared", metavar="NAME", help="read the shared copy of this name")
    p.add_argument("--wait", type=float, default=5, metavar="SECONDS",
                   help="wait this long for the engine's region to appear (default 5)")
    args = p.parse_args()

    try:
        replica = open_replica(args)
    except pagetrack.PagetrackError as e:
        sys.exit("md_query: %s: %s" % (args.dir, e.strerror))
    epoch = replica.epoch
    try:
        books = Books(replica)
        answer(books, epoch, args.symbols, args.depth)
        end = time.monotonic() + args.watch
        while time.monotonic() < end:
            wait_ms = max(1, min(1000, int((end - time.monotonic()) * 1000)))
            now = replica.refresh(timeout_ms=wait_ms)
            if now != epoch:
                epoch = now
                answer(books, epoch, args.symbols, args.depth)
    except ValueError as e:
        sys.exit("md_query: %s: %s" % (args.dir, e))
    except pagetrack.PagetrackError as e:
        # -ESTALE: the engine's region was made again; a real server reopens.
        sys.exit("md_query: %s: refresh: %s" % (args.dir, e.strerror))
    finally:
        books = None
        replica.close()


if __name__ == "__main__":
    main()
