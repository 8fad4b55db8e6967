"""An in-process cache of catalog reads, checked against a change token on every call.

Why: a catalog read pays for opening the file every time (a DuckDB instance, about 12 ms, then a
cold buffer pool that makes the first queries slower still), because Workbench may not keep it
open: DuckDB lets one process open the file read-write, and while it does no other process can
open it at all. A long-lived process (the Jupyter server, widgets, a notebook polling) asks the
same questions every few seconds, and the answers change only when the catalog does. So answers,
never connections, are kept in memory and reused while the catalog is unchanged: no file lock is
held between calls. A hit costs two `stat` calls and a private copy: 0.2 ms for the top 1,000 of
100,000 runs, which reading the catalog answers in 90-120 ms (`python -m benchmarks query`).

"Unchanged" is decided by a change token taken before every lookup:

- `os.stat` of the catalog file and of its write-ahead log (`<catalog>.wal`): device, inode, size,
  mtime and ctime in nanoseconds. A commit by any process appends to the log or rewrites the
  file, a checkpoint rewrites the file and removes the log, replacing the catalog (rebuild,
  restore) changes the inode.
- This process's write generation (`connection.write_generation()`), bumped after every
  transaction, migration and catalog swap: this process's own writes are seen without trusting
  timestamps at all.

Timestamps are coarse: the kernel stamps a file from a clock that advances in ticks (1-10 ms on
Linux; whole seconds on some filesystems), and DuckDB rewrites blocks in place, so a second write
within one tick can leave size and mtime as they were. As git does with "racily clean" index
entries, an answer is therefore stored only if its token was taken at least `racy_window_s`
(2 s) after the newest timestamp in it: any later write then lands on a later tick and changes
the token. Reads in the two seconds after a write are simply not cached, which costs one extra
catalog read per write. A file stamped in the future (clock skew) is never trusted; on a network
filesystem whose server clock runs more than the window behind this machine's, turn the cache
off with `WORKBENCH_READ_CACHE=0`.

Order makes it safe under concurrency (threads here, writers elsewhere): the token is taken
before the answer is read, so a stored answer is never older than its token; a write racing with
the read can only make the answer newer than its token, and the next token differs (a wasted
entry, never a stale read). Not cached, the function is simply called:

- while this thread is inside a catalog connection (it may see its own uncommitted writes);
- for reads that index runs first (`indexes_runs=True`) while any run is pending indexing: that
  read writes the catalog (see `workbench.runs.ingest`), and a marker is how news from a run that
  does not write the catalog itself shows up. Not so in the team server, whose reads do not index
  (a thread of its own does, and each received chunk is indexed before it is acknowledged): there a
  read is a plain read, cached like any other, and the indexing thread's commits change the token;
- when `WORKBENCH_READ_CACHE` is 0/false/no/off.

Callers get private copies (`frame_copies`, `deep_copies`, `shallow_copies`), so mutating an
answer never changes what the next caller sees. Memory is bounded: at most `max_entries` answers
and about `max_bytes` (estimated), least recently used first out. Two threads missing the same
key at once both compute it (DuckDB reads are serialised by the catalog's process lock anyway);
the later store wins and both are correct.
"""

from __future__ import annotations

import copy
import functools
import inspect
import os
import pickle
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from workbench.catalog.connection import in_connection, write_generation
from workbench.errors import WorkbenchError
from workbench.workspace import Workspace, current_workspace

if TYPE_CHECKING:
    import pandas as pd

ENV_SWITCH = "WORKBENCH_READ_CACHE"
#: Seconds a token's newest file timestamp must lie in the past for its answer to be stored.
RACY_WINDOW_S = 2.0
MAX_ENTRIES = 8
MAX_BYTES = 64 * 1024 * 1024

T = TypeVar("T")
P = ParamSpec("P")
#: Given an answer, a function returning a fresh private copy of it at each call.
Copies = Callable[[Any], Callable[[], Any]]
#: (st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns)
FileState = tuple[int, int, int, int, int]


def enabled() -> bool:
    """False when `WORKBENCH_READ_CACHE` turns the cache off (0, false, no, off)."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


# --------------------------------------------------------------------------------------------
# Change token


@dataclass(frozen=True)
class ChangeToken:
    """What the catalog looked like from this process: equal tokens, equal catalog contents."""

    generation: int
    catalog: FileState | None
    wal: FileState | None

    def newest_ns(self) -> int:
        """The latest mtime or ctime in the token (0 when no file exists)."""
        stamps = [stamp for state in (self.catalog, self.wal) if state for stamp in state[3:]]
        return max(stamps, default=0)


def _file_state(path: str) -> FileState | None:
    try:
        st = os.stat(path)
    except OSError:  # absent (no log between checkpoints) or unreadable: the read itself will tell
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def change_token(ws: Workspace) -> ChangeToken:
    """The catalog's change token now: two `stat` calls (see the module doc)."""
    path = str(ws.catalog_path)
    return ChangeToken(write_generation(), _file_state(path), _file_state(path + ".wal"))


# --------------------------------------------------------------------------------------------
# Cache


@dataclass
class _Entry:
    token: ChangeToken
    copies: Callable[[], Any]
    weight: int


class ReadCache:
    """Answers by (catalog, key), each valid while the catalog's change token is unchanged."""

    def __init__(
        self,
        max_entries: int = MAX_ENTRIES,
        max_bytes: int = MAX_BYTES,
        racy_window_s: float = RACY_WINDOW_S,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.racy_window_s = racy_window_s
        self.clock = clock  # wall clock in ns, comparable with file timestamps
        self._entries: OrderedDict[tuple[str, Hashable], _Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = self.stores = 0

    def get(self, ws: Workspace, key: Hashable, compute: Callable[[], T], copies: Copies) -> T:
        """`compute()`'s answer for `key` on `ws`'s catalog: a copy of the stored one while the
        catalog is unchanged, else computed (and stored when its token can be trusted)."""
        if not enabled() or in_connection():
            return compute()
        now = self.clock()  # before the stats: a conservative "when was the token taken"
        token = change_token(ws)
        slot = (str(ws.catalog_path), key)
        with self._lock:
            entry = self._entries.get(slot)
            if entry is not None and entry.token == token:
                self._entries.move_to_end(slot)
                self.hits += 1
                fresh = entry.copies
            else:
                if entry is not None:
                    self._remove(slot)
                self.misses += 1
                fresh = None
        if fresh is not None:
            return fresh()
        value = compute()
        if token.catalog is None or now - token.newest_ns() < self.racy_window_s * 1e9:
            return value  # no catalog yet, or changed too recently to trust the token: not stored
        fresh = copies(value)
        self._store(slot, _Entry(token, fresh, _weight(value)))
        return fresh()

    def _store(self, slot: tuple[str, Hashable], entry: _Entry) -> None:
        if entry.weight > self.max_bytes // 4:
            return  # one huge answer (a whole 100,000-run table) would push out every polled one
        with self._lock:
            if slot in self._entries:
                self._remove(slot)
            self._entries[slot] = entry
            self._bytes += entry.weight
            self.stores += 1
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                self._remove(next(iter(self._entries)))

    def _remove(self, slot: tuple[str, Hashable]) -> None:
        self._bytes -= self._entries.pop(slot).weight

    def clear(self) -> None:
        """Forget every answer (the counters too)."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0
            self.hits = self.misses = self.stores = 0

    def stats(self) -> dict[str, int]:
        """hits, misses, stores, entries and estimated bytes held."""
        with self._lock:
            return {"hits": self.hits, "misses": self.misses, "stores": self.stores,
                    "entries": len(self._entries), "bytes": self._bytes}  # fmt: skip

    def _after_fork(self) -> None:
        self._lock = threading.Lock()  # another thread may have held it at the fork
        self.clear()


#: The process's cache, used by `cached` and `cached_read`.
CACHE = ReadCache()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=CACHE._after_fork)


def cached(ws: Workspace, key: Hashable, compute: Callable[[], T], copies: Copies) -> T:
    """`compute()` through the process's read cache; `key` names the question on `ws`'s catalog."""
    return CACHE.get(ws, key, compute, copies)


def runs_pending(ws: Workspace) -> bool:
    """Whether any run waits to be indexed (a reader would write the catalog first)."""
    from workbench.runs.ids import RUN_ID
    from workbench.runs.ingest import pending_dir

    try:
        with os.scandir(pending_dir(ws)) as entries:
            return any(RUN_ID.match(entry.name) for entry in entries)
    except (FileNotFoundError, NotADirectoryError):
        return False


def _read_indexes(ws: Workspace) -> bool:
    """Whether a read that indexes runs first would write the catalog now: some run is pending and this
    process does not leave that to a thread of its own (the team server: `ingest.BACKGROUND_INDEXED`)."""
    from workbench.runs.ingest import BACKGROUND_INDEXED

    return str(ws.catalog_path) not in BACKGROUND_INDEXED and runs_pending(ws)


def cached_read(copies: Copies, *, indexes_runs: bool = False) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Decorate a catalog read `f(..., ws=None)` so that repeated calls are answered from `CACHE`.

    The key is the function and its other arguments (lists, Series and arrays by value; an
    argument of any other type makes the call uncached). `indexes_runs`: the function indexes
    pending runs first, so it is not cached while any are pending. The undecorated function
    stays available as `f.__wrapped__`.
    """

    def decorate(fn: Callable[P, T]) -> Callable[P, T]:
        signature = inspect.signature(fn)
        name = f"{fn.__module__}.{fn.__qualname__}"

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                bound = signature.bind(*args, **kwargs)
                bound.apply_defaults()
                ws = bound.arguments.get("ws") or current_workspace()
                bound.arguments["ws"] = ws
                key = (name, _freeze([(k, v) for k, v in bound.arguments.items() if k != "ws"]))
            except (TypeError, WorkbenchError):  # bad arguments, no workspace, unhashable: fn decides
                return fn(*args, **kwargs)
            if indexes_runs and _read_indexes(ws):
                return fn(*bound.args, **bound.kwargs)
            return cached(ws, key, lambda: fn(*bound.args, **bound.kwargs), copies)

        return wrapper

    return decorate


def _freeze(value: Any) -> Hashable:
    """A hashable stand-in for an argument, with types kept (1, 1.0 and True are different keys)."""
    if value is None or isinstance(value, (str, bytes, bool, int, float)):
        return (type(value).__name__, value)
    if isinstance(value, (list, tuple)):
        if all(type(item) is str for item in value):
            return ("strs", tuple(value))  # run ids: fast, they may be thousands
        return ("seq", tuple(_freeze(item) for item in value))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((_freeze(k), _freeze(v)) for k, v in value.items())))
    if hasattr(value, "tolist") and callable(value.tolist):  # pandas Series/Index, numpy arrays and scalars
        return _freeze(value.tolist())
    raise TypeError(f"cannot key a cached read on a {type(value).__name__}")


# --------------------------------------------------------------------------------------------
# Private copies of answers


def deep_copies(value: T) -> Callable[[], T]:
    """Copies for nested answers (lists of dicts, dataclasses): unpickled from bytes pickled once,
    ten times faster than `copy.deepcopy` (30 snapshots with 20-column profiles: 0.4 ms, not 4 ms)."""
    try:
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError):
        return functools.partial(copy.deepcopy, value)
    return functools.partial(pickle.loads, data)


def shallow_copies(value: T) -> Callable[[], T]:
    """Copies for a dict or list whose items are immutable (tuples of str, numbers, datetimes)."""
    return functools.partial(copy.copy, value)


#: What pandas' `infer_dtype` says of object columns holding only immutable values.
_IMMUTABLE_KINDS = frozenset({
    "empty", "string", "bytes", "integer", "floating", "mixed-integer-float", "decimal", "complex",
    "boolean", "datetime", "datetime64", "date", "time", "timedelta", "timedelta64",
})  # fmt: skip


def frame_copies(frame: pd.DataFrame) -> Callable[[], pd.DataFrame]:
    """Copies of a DataFrame: a deep copy (numpy buffers: about 0.1 ms for 1,000 x 30, 1.3 ms for
    35,000 x 30), plus copies of the cells that are containers (a param logged as a list), since
    pandas copies object columns as references. Which columns hold any is found once, here."""
    import pandas as pd
    from pandas.api.types import infer_dtype

    nested = [
        position
        for position, dtype in enumerate(frame.dtypes)
        if dtype.kind == "O" and infer_dtype(frame.iloc[:, position], skipna=True) not in _IMMUTABLE_KINDS
    ]

    def fresh() -> pd.DataFrame:
        out = frame.copy(deep=True)
        for position in nested:
            cells = [copy.deepcopy(v) for v in frame.iloc[:, position]]
            out.isetitem(position, pd.Series(cells, index=out.index, dtype=object))
        return out

    return fresh


def _weight(value: Any) -> int:
    """Rough bytes held by an answer: exact for numeric columns, 64 per other cell or item."""
    if hasattr(value, "memory_usage") and hasattr(value, "dtypes"):  # a DataFrame
        other = sum(1 for dtype in value.dtypes if getattr(dtype, "kind", "O") not in "biufcmM")
        return int(value.memory_usage(index=True, deep=False).sum()) + 64 * other * len(value)
    try:
        return 256 + 64 * len(value)
    except TypeError:
        return 256
