# SPDX-License-Identifier: MIT
"""Loading libpagetrack.so.0 and declaring the C API of include/pagetrack.h.

ctypes in ABI mode: nothing is compiled, the prototypes below must follow the
header.  The structs are the header's option structs with their `sz` first,
so a newer library that grew them still reads ours.
"""
import ctypes
import ctypes.util
import errno as _errno
import os

SONAME = "libpagetrack.so.0"


def _load():
    path = os.environ.get("PAGETRACK_LIB")
    if path:
        # A path given on purpose: fail loudly if it is wrong, never fall
        # back to another copy of the library.
        return ctypes.CDLL(path, use_errno=False)
    candidates = [SONAME]
    found = ctypes.util.find_library("pagetrack")
    if found and found not in candidates:
        candidates.append(found)
    errors = []
    for name in candidates:
        try:
            return ctypes.CDLL(name)
        except OSError as e:
            errors.append(str(e))
    raise ImportError("pagetrack: cannot load %s (set PAGETRACK_LIB to its path, or install "
                      "the library): %s" % (SONAME, "; ".join(errors)))


lib = _load()

c_int64_p = ctypes.POINTER(ctypes.c_int64)


class Range(ctypes.Structure):
    _fields_ = [("first", ctypes.c_uint64), ("count", ctypes.c_uint64)]


class TrackerOpts(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t),
                ("backend", ctypes.c_int),
                ("flags", ctypes.c_uint)]


class RegionOpts(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t),
                ("durability", ctypes.c_int),
                ("durable_interval_ms", ctypes.c_uint),
                ("backend", ctypes.c_int),
                ("flags", ctypes.c_uint),
                ("checkpoint_interval_ms", ctypes.c_uint),
                ("retain_bytes", ctypes.c_uint64),
                ("segment_bytes", ctypes.c_uint64),
                ("staging_bytes", ctypes.c_uint64),
                ("address", ctypes.c_void_p)]


class ReplicaOpts(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t),
                ("mode", ctypes.c_int),
                ("flags", ctypes.c_uint),
                ("name", ctypes.c_char_p),
                ("stuck_reader_ms", ctypes.c_uint)]


# enum pt_backend
BACKENDS = {"auto": 0, "uffd-wp": 1, "soft-dirty": 2, "mprotect": 3}
# enum pt_level
LEVELS = {"published": 1, "durable": 2, "checkpointed": 3}
# enum pt_durability
DURABILITY = {"sync": 0, "background": 1, "none": 2}
REGION_NO_CHECKPOINT_THREAD = 1
REGION_ACCEPT_LOSS = 2
REGION_DIRECT_LOG = 16
REPLICA_PRIVATE, REPLICA_SHARED = 0, 1
REPLICA_AT_WRITER_ADDRESS = 1
COLLECT_RESET = 1

vp = ctypes.c_void_p
# Epochs are pt_epoch_t, an int64_t: ctypes.c_int64 wherever one passes.


def _proto(name, restype, *argtypes, optional=False):
    try:
        fn = getattr(lib, name)
    except AttributeError:
        if optional:
            return None
        raise ImportError("pagetrack: %s lacks %s (a library older than this binding?)"
                          % (SONAME, name))
    fn.restype = restype
    fn.argtypes = list(argtypes)
    return fn


pt_version = _proto("pt_version", ctypes.c_char_p)
pt_strerror = _proto("pt_strerror", ctypes.c_char_p, ctypes.c_int)

pt_tracker_open = _proto("pt_tracker_open", ctypes.c_int, ctypes.POINTER(vp), vp,
                         ctypes.c_size_t, ctypes.POINTER(TrackerOpts))
pt_tracker_collect = _proto("pt_tracker_collect", ctypes.c_int, vp, ctypes.c_uint,
                            ctypes.POINTER(ctypes.POINTER(Range)),
                            ctypes.POINTER(ctypes.c_size_t))
pt_tracker_mark = _proto("pt_tracker_mark", ctypes.c_int, vp, ctypes.c_uint64, ctypes.c_uint64)
pt_tracker_reset = _proto("pt_tracker_reset", ctypes.c_int, vp)
pt_tracker_close = _proto("pt_tracker_close", None, vp)
pt_tracker_backend = _proto("pt_tracker_backend", ctypes.c_int, vp)
pt_backend_name = _proto("pt_backend_name", ctypes.c_char_p, ctypes.c_int)
pt_backend_probe = _proto("pt_backend_probe", ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_size_t)

pt_region_create = _proto("pt_region_create", ctypes.c_int, ctypes.POINTER(vp), ctypes.c_char_p,
                          ctypes.c_size_t, ctypes.POINTER(RegionOpts))
pt_region_open = _proto("pt_region_open", ctypes.c_int, ctypes.POINTER(vp), ctypes.c_char_p,
                        ctypes.POINTER(RegionOpts))
pt_region_base = _proto("pt_region_base", vp, vp)
pt_region_size = _proto("pt_region_size", ctypes.c_size_t, vp)
pt_region_sync = _proto("pt_region_sync", ctypes.c_int64, vp)
pt_region_epoch = _proto("pt_region_epoch", ctypes.c_int64, vp)
pt_region_wait = _proto("pt_region_wait", ctypes.c_int, vp, ctypes.c_int64, ctypes.c_int,
                        ctypes.c_int)
pt_region_checkpoint = _proto("pt_region_checkpoint", ctypes.c_int64, vp)
pt_region_threads = _proto("pt_region_threads", ctypes.c_int, vp, ctypes.POINTER(ctypes.c_int),
                           ctypes.c_size_t)
pt_region_close = _proto("pt_region_close", ctypes.c_int, vp)

pt_replica_open = _proto("pt_replica_open", ctypes.c_int, ctypes.POINTER(vp), ctypes.c_char_p,
                         ctypes.POINTER(ReplicaOpts))
pt_replica_refresh = _proto("pt_replica_refresh", ctypes.c_int64, vp, ctypes.c_int)
pt_replica_base = _proto("pt_replica_base", vp, vp)
pt_replica_epoch = _proto("pt_replica_epoch", ctypes.c_int64, vp)
pt_replica_image_pages = _proto("pt_replica_image_pages", ctypes.c_uint64, vp)
pt_replica_close = _proto("pt_replica_close", None, vp)
# Newer than the rest: a library without it still serves regions and
# trackers, and Replica says what it lacks.
pt_replica_size = _proto("pt_replica_size", ctypes.c_size_t, vp, optional=True)


class PagetrackError(OSError):
    """A libpagetrack call failed: .errno is the positive errno value, the
    message is the library's own text for it (pt_strerror), which knows the
    meanings the replication layer gives some errno values."""

    def __init__(self, err, filename=None):
        err = abs(int(err))
        text = pt_strerror(-err).decode("utf-8", "replace")
        if filename is None:
            super().__init__(err, text)
        else:
            super().__init__(err, text, os.fsdecode(filename))


def check(ret, filename=None):
    """ret as the C call returned it: >= 0 passes through, -errno raises."""
    if ret < 0:
        raise PagetrackError(-ret, filename)
    return ret


ETIMEDOUT = _errno.ETIMEDOUT
