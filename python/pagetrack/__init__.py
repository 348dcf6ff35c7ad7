# SPDX-License-Identifier: MIT
"""pagetrack: a Python binding of libpagetrack (include/pagetrack.h).

    Replica(dir, shared=False, name=None)   a copy of a region, read with zero copies
    Region.create(dir, size) / Region.open(dir)   the region's one writer
    Tracker(buffer, backend="auto")         which pages of a buffer were written
    PagetrackError                          an OSError: .errno and pt_strerror's text

Memory the library maps (a replica's copy, a region) is exposed as memoryviews
and numpy arrays over it, never copied.  Every such view keeps the library's
handle open: close() raises BufferError while one is alive, as mmap.close()
does, and a handle nobody can reach any more is closed by the garbage collector.
"""
import ctypes
import os
import sys
import weakref

from . import _lib
from ._lib import PagetrackError

__all__ = ["Replica", "Region", "Tracker", "PagetrackError", "version", "probe"]
__version__ = "0.2.0"


def version():
    """The loaded library's version string."""
    return _lib.pt_version().decode()


def probe(backend):
    """None if the tracking backend ("uffd-wp", "soft-dirty" or "mprotect")
    works in this process, else the library's one-line reason."""
    why = ctypes.create_string_buffer(256)
    ret = _lib.pt_backend_probe(_backend_number(backend), why, len(why))
    return None if ret == 0 else (why.value.decode(errors="replace") or
                                  _lib.pt_strerror(ret).decode())


def _backend_number(backend):
    if isinstance(backend, int):
        return backend
    try:
        return _lib.BACKENDS[backend]
    except KeyError:
        raise ValueError("unknown backend %r (one of %s)" % (backend, ", ".join(_lib.BACKENDS)))


class _Owner:
    """Owns one C handle: closed exactly once, by close() or when nothing
    (the Python object, or a view of the memory behind it) reaches it."""

    def __init__(self, ptr, closer):
        self.ptr = ptr
        self._finalizer = weakref.finalize(self, closer, ptr)

    def close(self):
        return self._finalizer()	# the closer's result the first time, then None


def _memory(address, size, owner):
    """A ctypes array over [address, address + size) that keeps owner alive:
    every memoryview or numpy array made from it holds it, so the handle whose
    memory it is cannot be closed under a live view."""
    cls = type("_Memory", (ctypes.c_ubyte * size,), {})
    mem = cls.from_address(address)
    mem.owner = owner
    return mem


class _Mapped:
    """What Replica and Region share: a handle and the memory it maps."""

    _owner = None
    _mem = None

    def _views_alive(self):
        # Our own attribute plus getrefcount's argument; anything more is a
        # memoryview's (or a numpy array's) reference.
        return self._mem is not None and sys.getrefcount(self._mem) > 2

    def _release(self):
        """Drop the memory and return the owner to close, or raise
        BufferError if views of the memory are still alive."""
        if self._owner is None:
            return None
        if self._views_alive():
            raise BufferError("%s: views of its memory are still alive (memoryviews, numpy "
                              "arrays): release them before close()" % type(self).__name__)
        self._mem = None
        owner, self._owner = self._owner, None
        return owner

    def _ptr(self):
        if self._owner is None:
            raise ValueError("%s is closed" % type(self).__name__)
        return self._owner.ptr

    @property
    def closed(self):
        return self._owner is None

    def _view(self, readonly):
        self._ptr()
        view = memoryview(self._mem).cast("B")
        return view.toreadonly() if readonly else view

    def _array(self, dtype, offset, count, readonly):
        import numpy
        return numpy.frombuffer(self._view(readonly), dtype=dtype, count=count, offset=offset)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _opts_name(name):
    if name is None:
        return None
    return os.fsencode(name)


class Replica(_Mapped):
    """A copy of the region in dir, following its writer (pt_replica_open).

    shared=False: this process's own copy, changed only by refresh().
    shared=True: one copy in shared memory for every process that opens it
    under the same name (/dev/shm/pagetrack-NAME and its copy files; None: a
    name from the region's history id).  at_writer_address: map it at the
    writer's address.  stuck_reader_ms: see pt_replica_open(3).

    .buffer is a read-only memoryview of the copy and .array(dtype) a
    read-only numpy array over it, both without copying; both show the new
    epoch after refresh().  The copy starts at the newest published epoch.
    """

    def __init__(self, dir, shared=False, name=None, at_writer_address=False,
                 stuck_reader_ms=0):
        if _lib.pt_replica_size is None:
            raise NotImplementedError("this libpagetrack has no pt_replica_size(), which a "
                                      "replica's buffer needs: use a newer library")
        self.dir = os.fspath(dir)
        self.shared = bool(shared)
        opts = _lib.ReplicaOpts(sz=ctypes.sizeof(_lib.ReplicaOpts),
                                mode=_lib.REPLICA_SHARED if shared else _lib.REPLICA_PRIVATE,
                                flags=_lib.REPLICA_AT_WRITER_ADDRESS if at_writer_address else 0,
                                name=_opts_name(name), stuck_reader_ms=stuck_reader_ms)
        handle = ctypes.c_void_p()
        _lib.check(_lib.pt_replica_open(ctypes.byref(handle), os.fsencode(self.dir),
                                        ctypes.byref(opts)), self.dir)
        owner = _Owner(handle.value, _lib.pt_replica_close)
        self.size = _lib.pt_replica_size(handle.value)
        self._owner = owner
        self._mem = _memory(_lib.pt_replica_base(handle.value), self.size, owner)

    def refresh(self, timeout_ms=0):
        """Apply every whole epoch published since; with none, wait up to
        timeout_ms for one (0: don't wait, -1: forever).  Returns the epoch
        now visible (the same one if none came)."""
        return _lib.check(_lib.pt_replica_refresh(self._ptr(), int(timeout_ms)), self.dir)

    @property
    def epoch(self):
        return _lib.pt_replica_epoch(self._ptr())

    @property
    def image_pages(self):
        """Pages copied from the image by catch-ups so far."""
        return _lib.pt_replica_image_pages(self._ptr())

    @property
    def buffer(self):
        """A read-only memoryview of the whole copy (no copy made)."""
        return self._view(readonly=True)

    def array(self, dtype="u1", offset=0, count=-1):
        """A read-only numpy array over the copy (needs numpy)."""
        return self._array(dtype, offset, count, readonly=True)

    def close(self):
        """Close the replica (a shared one gives its reader slot back).
        BufferError if views of its memory are alive."""
        owner = self._release()
        if owner is not None:
            owner.close()

    def __repr__(self):
        state = "closed" if self.closed else "epoch %d" % self.epoch
        return "<pagetrack.Replica %s %s, %d bytes, %s>" % (
            "shared" if self.shared else "private", self.dir, self.size, state)


def _region_opts(durability=None, durable_interval_ms=0, backend="auto",
                 checkpoint_thread=True, checkpoint_interval_ms=0, retain_bytes=0,
                 segment_bytes=0, staging_bytes=0, address=None, accept_loss=False,
                 direct_log=False):
    if durability is None:
        durability = "sync"
    if not isinstance(durability, int):
        try:
            durability = _lib.DURABILITY[durability]
        except KeyError:
            raise ValueError("unknown durability %r (one of %s)"
                             % (durability, ", ".join(_lib.DURABILITY)))
    flags = 0 if checkpoint_thread else _lib.REGION_NO_CHECKPOINT_THREAD
    if accept_loss:
        flags |= _lib.REGION_ACCEPT_LOSS
    if direct_log:
        flags |= _lib.REGION_DIRECT_LOG
    return _lib.RegionOpts(sz=ctypes.sizeof(_lib.RegionOpts), durability=durability,
                           durable_interval_ms=durable_interval_ms,
                           backend=_backend_number(backend), flags=flags,
                           checkpoint_interval_ms=checkpoint_interval_ms,
                           retain_bytes=retain_bytes, segment_bytes=segment_bytes,
                           staging_bytes=staging_bytes, address=address)


class Region(_Mapped):
    """The writer of a region (pt_region_create / pt_region_open).

    Options, as in struct pt_region_opts (0 or None: the default):
    durability "sync" (default), "background" or "none"; durable_interval_ms;
    backend; checkpoint_thread=False for checkpoints only by checkpoint();
    checkpoint_interval_ms; retain_bytes; segment_bytes; staging_bytes;
    address; direct_log=True to write the log O_DIRECT (PT_REGION_DIRECT_LOG).
    .buffer is a writable memoryview of the memory, .array(dtype) a
    writable numpy array over it.
    """

    def __init__(self, *args, **kwargs):
        raise TypeError("use Region.create(dir, size) or Region.open(dir)")

    @classmethod
    def _make(cls, dir, handle):
        self = object.__new__(cls)
        self.dir = dir
        owner = _Owner(handle, _lib.pt_region_close)
        self.size = _lib.pt_region_size(handle)
        self._owner = owner
        self._mem = _memory(_lib.pt_region_base(handle), self.size, owner)
        return self

    @classmethod
    def create(cls, dir, size, **opts):
        """A new region of size bytes (a multiple of the page size), zero-filled
        at epoch 0, in data directory dir."""
        dir = os.fspath(dir)
        o = _region_opts(**opts)
        handle = ctypes.c_void_p()
        _lib.check(_lib.pt_region_create(ctypes.byref(handle), os.fsencode(dir), size,
                                         ctypes.byref(o)), dir)
        return cls._make(dir, handle.value)

    @classmethod
    def open(cls, dir, accept_loss=False, **opts):
        """Reopen the region in dir as its writer, recovering after a crash;
        accept_loss: go on even if durable epochs cannot be reached."""
        dir = os.fspath(dir)
        o = _region_opts(accept_loss=accept_loss, **opts)
        handle = ctypes.c_void_p()
        _lib.check(_lib.pt_region_open(ctypes.byref(handle), os.fsencode(dir),
                                       ctypes.byref(o)), dir)
        return cls._make(dir, handle.value)

    @property
    def buffer(self):
        """A writable memoryview of the region's memory (no copy made)."""
        return self._view(readonly=False)

    def array(self, dtype="u1", offset=0, count=-1):
        """A writable numpy array over the region's memory (needs numpy)."""
        return self._array(dtype, offset, count, readonly=False)

    def sync(self):
        """Publish an epoch of the memory as it is now; returns it."""
        return _lib.check(_lib.pt_region_sync(self._ptr()), self.dir)

    @property
    def epoch(self):
        """The newest published epoch."""
        return _lib.check(_lib.pt_region_epoch(self._ptr()), self.dir)

    def wait(self, epoch, level="durable", timeout_ms=-1):
        """Wait until epoch reaches level ("published", "durable",
        "checkpointed"), at most timeout_ms (-1: forever).  True once it has,
        False on timeout; other errors raise."""
        if not isinstance(level, int):
            try:
                level = _lib.LEVELS[level]
            except KeyError:
                raise ValueError("unknown level %r (one of %s)" % (level, ", ".join(_lib.LEVELS)))
        ret = _lib.pt_region_wait(self._ptr(), epoch, level, int(timeout_ms))
        if ret == -_lib.ETIMEDOUT:
            return False
        _lib.check(ret, self.dir)
        return True

    def checkpoint(self):
        """Fold the durable log into the image now; returns the image's epoch."""
        return _lib.check(_lib.pt_region_checkpoint(self._ptr()), self.dir)

    def threads(self):
        """The thread ids of the region's own threads (seal, log, then
        checkpoint if it runs one), to place them with
        os.sched_setaffinity()."""
        tids = (ctypes.c_int * 4)()
        n = _lib.check(_lib.pt_region_threads(self._ptr(), tids, 4), self.dir)
        return list(tids[:min(n, 4)])

    def close(self):
        """Make every published epoch durable and close.  Raises BufferError
        (and stays open) while views of the memory are alive, PagetrackError
        if the last epochs could not be made durable (then it is closed)."""
        owner = self._release()
        if owner is not None:
            _lib.check(owner.close(), self.dir)

    def __repr__(self):
        state = "closed" if self.closed else "epoch %d" % self.epoch
        return "<pagetrack.Region %s, %d bytes, %s>" % (self.dir, self.size, state)


class Tracker:
    """Which pages of a memory range were written (pt_tracker_open).

    buffer_or_address: a writable buffer (an mmap.mmap, a writable
    memoryview...) whose address and length are page-aligned, or an integer
    address.  length: bytes to track (default: the whole buffer; required
    with an address).  The buffer stays exported while the tracker is open,
    so an mmap cannot be closed or resized under it.
    """

    def __init__(self, buffer_or_address, length=None, backend="auto"):
        self._handle = None
        self._exported = None
        if isinstance(buffer_or_address, int):
            if length is None:
                raise TypeError("Tracker(address, length): length is required")
            address = buffer_or_address
        else:
            view = memoryview(buffer_or_address)
            if view.readonly:
                raise TypeError("Tracker needs a writable buffer")
            if length is None:
                length = view.nbytes
            view.release()
            # Takes a buffer export: the object cannot go away or move.
            self._exported = (ctypes.c_char * length).from_buffer(buffer_or_address)
            address = ctypes.addressof(self._exported)
        self.length = length
        opts = _lib.TrackerOpts(sz=ctypes.sizeof(_lib.TrackerOpts),
                                backend=_backend_number(backend), flags=0)
        handle = ctypes.c_void_p()
        try:
            _lib.check(_lib.pt_tracker_open(ctypes.byref(handle), address, length,
                                            ctypes.byref(opts)))
        except BaseException:
            self._exported = None
            raise
        self._handle = handle.value
        self._finalizer = weakref.finalize(self, _lib.pt_tracker_close, handle.value)

    def _ptr(self):
        if self._handle is None:
            raise ValueError("Tracker is closed")
        return self._handle

    def collect(self, reset=True):
        """The pages written since open or the last reset, as a list of
        (first, count) page ranges, ascending; reset re-arms them in the same
        step (a racing write is reported now or next time, never lost)."""
        ranges = ctypes.POINTER(_lib.Range)()
        nr = ctypes.c_size_t()
        _lib.check(_lib.pt_tracker_collect(self._ptr(), _lib.COLLECT_RESET if reset else 0,
                                           ctypes.byref(ranges), ctypes.byref(nr)))
        return [(ranges[i].first, ranges[i].count) for i in range(nr.value)]

    def mark(self, first, count=1):
        """Report pages [first, first + count) as written at the next collect."""
        _lib.check(_lib.pt_tracker_mark(self._ptr(), first, count))

    def reset(self):
        """Forget every write so far."""
        _lib.check(_lib.pt_tracker_reset(self._ptr()))

    @property
    def backend(self):
        """The backend in use: "uffd-wp", "soft-dirty" or "mprotect"."""
        name = _lib.pt_backend_name(_lib.pt_tracker_backend(self._ptr()))
        return name.decode() if name else None

    @property
    def closed(self):
        return self._handle is None

    def close(self):
        """Stop tracking; the buffer is free to be closed afterwards."""
        if self._handle is None:
            return
        self._handle = None
        self._finalizer()
        self._exported = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
