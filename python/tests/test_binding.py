# SPDX-License-Identifier: MIT
"""python-binding: the Python binding against the built library: regions,
private and shared replicas equal to the writer at the same epoch, numpy views,
refresh timeouts, errors as exceptions, trackers on mmap buffers.

Run by test/python-binding.sh (PAGETRACK_LIB and PYTHONPATH set).  Each case
prints done, skipped [reason] or failed [reason]; exit 0 pass, 1 fail, 77 when
every case skipped.
"""
import errno
import gc
import glob
import mmap
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback

import pagetrack
from pagetrack import _lib

try:
    import numpy
except ImportError:
    numpy = None

PAGE = mmap.PAGESIZE
NPAGES = 64


class Skip(Exception):
    pass


def strerror(err):
    return _lib.pt_strerror(-err).decode()


def fill(region, epoch_tag):
    """Write a pattern that differs per page and per epoch_tag on a few pages."""
    buf = region.buffer
    for page in (0, 3, 17, NPAGES - 1):
        buf[page * PAGE:page * PAGE + 16] = bytes([epoch_tag, page]) * 8
    del buf


def case_replicas_equal(tmp):
    """private and shared replicas equal the writer at the same epoch"""
    d = os.path.join(tmp, "region")
    name = "pybinding-%d-%d" % (os.getpid(), int(time.time() * 1000) % 100000)
    try:
        region = pagetrack.Region.create(d, NPAGES * PAGE)
        assert region.size == NPAGES * PAGE
        fill(region, 1)
        e = region.sync()
        assert e >= 1 and region.epoch == e
        private = pagetrack.Replica(d)
        shared = pagetrack.Replica(d, shared=True, name=name)
        assert glob.glob("/dev/shm/pagetrack-%s*" % name), "no shared copy in /dev/shm"
        for r in (private, shared):
            assert r.size == region.size, (r.size, region.size)
            assert r.epoch == e, (r.epoch, e)
            assert r.buffer.readonly
            assert r.buffer == region.buffer, "replica differs at epoch %d" % e
        for tag in (2, 3):
            fill(region, tag)
            e = region.sync()
            for r in (private, shared):
                assert r.refresh(timeout_ms=1000) == e
                assert r.epoch == e
                assert r.buffer == region.buffer, "replica differs at epoch %d" % e
        try:
            private.buffer[0] = 1
        except TypeError:
            pass
        else:
            raise AssertionError("a replica's buffer is writable")
        if numpy is not None:
            for r in (private, shared):
                a = r.array("<u8")
                assert not a.flags.writeable
                assert a.size == region.size // 8
                assert numpy.array_equal(a, region.array("<u8"))
                # zero copy: the array is the replica's memory
                assert a.__array_interface__["data"][0] == \
                    r.array("u1").__array_interface__["data"][0]
                del a
        private.close()
        shared.close()
        assert private.closed
        try:
            private.refresh()
        except ValueError:
            pass
        else:
            raise AssertionError("refresh on a closed replica")
        region.close()
        region = pagetrack.Region.open(d)
        assert region.epoch == e, (region.epoch, e)
        region.close()
    finally:
        for f in glob.glob("/dev/shm/pagetrack-%s*" % name):
            os.unlink(f)


def case_refresh_timeout(tmp):
    """refresh waits at most timeout_ms, and wakes up for a new epoch"""
    d = os.path.join(tmp, "timeout")
    region = pagetrack.Region.create(d, NPAGES * PAGE)
    e = region.sync()
    with pagetrack.Replica(d) as r:
        assert r.refresh(0) == e
        start = time.monotonic()
        assert r.refresh(timeout_ms=200) == e, "no epoch came, yet the replica moved"
        waited = time.monotonic() - start
        assert 0.15 <= waited < 5, "refresh(200) took %.3f s" % waited

        def later():
            time.sleep(0.1)
            fill(region, 9)
            region.sync()
        t = threading.Thread(target=later)
        t.start()
        start = time.monotonic()
        got = r.refresh(timeout_ms=5000)
        waited = time.monotonic() - start
        t.join()
        assert got == e + 1, (got, e + 1)
        assert waited < 4, "refresh did not wake up for the new epoch (%.3f s)" % waited
        try:
            r.refresh(timeout_ms=-2)
        except pagetrack.PagetrackError as x:
            assert x.errno == errno.EINVAL, x
        else:
            raise AssertionError("refresh(-2) did not fail")
    assert region.wait(e + 1, "durable", 5000) is True
    assert region.wait(e + 1, "checkpointed", 5000) is True
    assert region.checkpoint() >= e + 1
    region.close()


def case_threads(tmp):
    """threads() names the region's own threads, which can be placed"""
    d = os.path.join(tmp, "threads")
    region = pagetrack.Region.create(d, NPAGES * PAGE)
    tids = region.threads()
    names = []
    for tid in tids:
        with open("/proc/self/task/%d/comm" % tid) as f:
            names.append(f.read().strip())
    assert names == ["pt-seal", "pt-log", "pt-checkpoint"], (tids, names)
    cpus = os.sched_getaffinity(0)
    one = {min(cpus)}
    for tid in tids:
        os.sched_setaffinity(tid, one)
        assert os.sched_getaffinity(tid) == one
    fill(region, 5)
    assert region.wait(region.sync(), "durable", 5000) is True
    region.close()


def case_direct_log(tmp):
    """direct_log=True: the log written O_DIRECT, read back by a replica and a reopen"""
    d = os.path.join(tmp, "direct")
    region = pagetrack.Region.create(d, NPAGES * PAGE, direct_log=True)
    replica = pagetrack.Replica(d)
    for tag in (1, 2, 3):
        fill(region, tag)
        e = region.sync()
        assert replica.refresh(timeout_ms=1000) == e
        assert replica.buffer == region.buffer, "replica differs at epoch %d" % e
    replica.close()
    region.close()
    region = pagetrack.Region.open(d, direct_log=True)
    assert region.epoch == e, (region.epoch, e)
    fill(region, 4)
    assert region.wait(region.sync(), "durable", 5000) is True
    region.close()


def case_errors(tmp):
    """errors are PagetrackError(OSError) with errno and pt_strerror's text"""
    plain = os.path.join(tmp, "plain")
    os.mkdir(plain, 0o700)
    try:
        pagetrack.Replica(plain)
    except pagetrack.PagetrackError as x:
        assert isinstance(x, OSError)
        assert x.errno == errno.EMEDIUMTYPE, x
        assert x.strerror == strerror(errno.EMEDIUMTYPE), (x.strerror,)
        assert x.filename == plain
        assert strerror(errno.EMEDIUMTYPE) in str(x)
    else:
        raise AssertionError("a directory without a region opened as a replica")
    try:
        pagetrack.Region.open(os.path.join(tmp, "missing"))
    except pagetrack.PagetrackError as x:
        assert x.errno == errno.ENOENT, x
    else:
        raise AssertionError("a missing directory opened as a region")
    d = os.path.join(tmp, "twice")
    region = pagetrack.Region.create(d, NPAGES * PAGE)
    try:
        for attempt in (lambda: pagetrack.Region.create(d, NPAGES * PAGE),
                        lambda: pagetrack.Region.open(d)):
            try:
                attempt().close()
            except pagetrack.PagetrackError as x:
                assert x.errno in (errno.EEXIST, errno.EBUSY), x
            else:
                raise AssertionError("a second writer of one region")
        try:
            pagetrack.Region.create(os.path.join(tmp, "odd"), PAGE + 1)
        except pagetrack.PagetrackError as x:
            assert x.errno == errno.EINVAL, x
        else:
            raise AssertionError("a size that is not a page multiple")
        try:
            region.wait(1000, "durable", 0)
        except pagetrack.PagetrackError as x:
            assert x.errno == errno.EINVAL, x
        else:
            raise AssertionError("wait for an epoch that does not exist")
    finally:
        region.close()


def case_views_keep_memory(tmp):
    """close() refuses while views live; a dropped handle outlives its views"""
    d = os.path.join(tmp, "views")
    region = pagetrack.Region.create(d, NPAGES * PAGE)
    fill(region, 4)
    region.sync()
    view = region.buffer
    try:
        region.close()
    except BufferError:
        pass
    else:
        raise AssertionError("region closed under a live view")
    del view
    r = pagetrack.Replica(d)
    first = r.buffer[:16]
    expect = bytes(region.buffer[:16])
    del r
    gc.collect()
    assert bytes(first) == expect, "a view of a dropped replica lost its memory"
    del first
    gc.collect()
    region.close()


def case_tracker(tmp, backend):
    """a tracker on an mmap buffer reports exactly the written pages"""
    why = pagetrack.probe(backend) if backend != "auto" else None
    if why is not None:
        raise Skip(why)
    m = mmap.mmap(-1, 32 * PAGE)
    with pagetrack.Tracker(m, backend=backend) as t:
        if backend == "auto":
            assert t.backend in ("uffd-wp", "soft-dirty", "mprotect"), t.backend
        else:
            assert t.backend == backend, t.backend
        assert t.collect() == []
        for page in (0, 5, 6, 7, 20):
            m[page * PAGE + 100] = 1
        got = t.collect()
        assert got == [(0, 1), (5, 3), (20, 1)], got
        assert t.collect() == []
        m[31 * PAGE] = 2
        assert t.collect(reset=False) == [(31, 1)]
        assert t.collect() == [(31, 1)]
        t.mark(9, 2)
        assert t.collect() == [(9, 2)]
        m[3 * PAGE] = 3
        t.reset()
        assert t.collect() == []
        try:
            m.close()
        except BufferError:
            pass
        else:
            raise AssertionError("the mmap closed under its tracker")
        try:
            t.mark(30, 5)
        except pagetrack.PagetrackError as x:
            assert x.errno == errno.EINVAL, x
        else:
            raise AssertionError("mark outside the range")
    assert t.closed
    m.close()


def case_tracker_address(tmp):
    """a tracker on an address and length; misalignment is EINVAL"""
    import ctypes
    m = mmap.mmap(-1, 8 * PAGE)
    buf = (ctypes.c_char * len(m)).from_buffer(m)
    address = ctypes.addressof(buf)
    try:
        pagetrack.Tracker(address + 1, PAGE)
    except pagetrack.PagetrackError as x:
        assert x.errno == errno.EINVAL, x
    else:
        raise AssertionError("a misaligned tracker opened")
    t = pagetrack.Tracker(address, 8 * PAGE)
    m[2 * PAGE] = 1
    assert t.collect() == [(2, 1)]
    t.close()
    del buf
    m.close()


CASES = [
    ("replicas-equal", case_replicas_equal),
    ("refresh-timeout", case_refresh_timeout),
    ("threads", case_threads),
    ("direct-log", case_direct_log),
    ("errors", case_errors),
    ("views-keep-memory", case_views_keep_memory),
] + [("tracker " + b, lambda tmp, b=b: case_tracker(tmp, b))
     for b in ("uffd-wp", "soft-dirty", "mprotect", "auto")] + [
    ("tracker-address", case_tracker_address),
]


def main():
    print("python-binding: libpagetrack %s, Python %s, numpy %s" % (
        pagetrack.version(), sys.version.split()[0],
        numpy.__version__ if numpy is not None else "missing (its checks skipped)"))
    done = failed = skipped = 0
    for name, fn in CASES:
        tmp = tempfile.mkdtemp(prefix="pt-python-")
        try:
            fn(tmp)
            print("%-24s done" % name)
            done += 1
        except Skip as s:
            print("%-24s skipped [%s]" % (name, s))
            skipped += 1
        except Exception as e:
            print("%-24s failed [%s: %s]" % (name, type(e).__name__, e))
            traceback.print_exc(file=sys.stdout)
            failed += 1
        finally:
            gc.collect()
            shutil.rmtree(tmp, ignore_errors=True)
    print("%d done, %d failed, %d skipped" % (done, failed, skipped))
    if failed:
        return 1
    if not done:
        print("skip: every case skipped")
        return 77
    return 0


if __name__ == "__main__":
    sys.exit(main())
