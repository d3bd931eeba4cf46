"""The event log: the one interface the engine reads and writes topics through, and
`FileLog`, the embedded backend used when no Kafka is configured.

A `FileLog` is a directory with one append-only JSON-lines file per topic, readable with
`cat`: line N is the record at offset N,

    {"o":0,"k":"cust-42","v":"{\\"type\\":\\"order.placed\\",...}","h":[["trace","abc"]]}

where key, value and header values are text when they are UTF-8 and {"b64": "..."}
otherwise, so any bytes round-trip exactly.
"""

from __future__ import annotations

import base64
import fcntl
import json
import logging
import os
import re
import threading
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable

logger = logging.getLogger(__name__)

_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
_SUFFIX = ".jsonl"
_WRITE_BYTES = 1 << 16  # appended lines written to the file at once

Headers = Sequence[tuple[str, bytes]]


class LogError(Exception):
    """The log cannot be used as asked (open elsewhere, closed, or after a failed write)."""


class LogCorrupted(LogError):
    """A log file damaged other than by a torn last write; never guessed around."""


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


@runtime_checkable
class Sink(Protocol):
    """Where outputs go: `flush` returns only when every appended record is durable."""

    def append(
        self, topic: str, key: bytes | None, value: bytes, headers: Headers = ()
    ) -> object: ...

    def flush(self) -> None: ...


class EventLog(Sink, Protocol):
    """Topics of partitions of records numbered by offset, as the engine needs them.

    `read` returns records with offset >= `offset`, at most `limit`, in order;
    `end_offset` is the offset the next append to that partition gets; `flush` returns
    only when every appended record is durable.
    """

    def append(
        self, topic: str, key: bytes | None, value: bytes, headers: Headers = ()
    ) -> Record: ...

    def read(self, topic: str, partition: int, offset: int, limit: int) -> list[Record]: ...
    def partitions(self, topic: str) -> int: ...
    def end_offset(self, topic: str, partition: int) -> int: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


def check_topic(topic: str) -> str:
    """Return `topic` if it is a valid name (letters, digits, `.`, `_`, `-`), else raise."""
    if not _TOPIC.fullmatch(topic) or topic in (".", ".."):
        raise ValueError(f"invalid topic name {topic!r}: use letters, digits, '.', '_' and '-'")
    return topic


class _TopicFile:
    """One topic's file, its write and read handles, and the byte position of every offset.

    Appended lines wait in `pending` until `write_out` (at 64 KB, a read, a flush). After a
    write fails (a full disk) nothing is written to the file again: it may end in part of
    a line, which reopening truncates as a torn tail, and a retry must not put whole lines
    after it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        # 8 bytes per record keeps reads O(1) without rescanning; a million records is 8 MB.
        self.positions = array("q")
        self.size = _recover(path, self.positions) if path.exists() else 0
        self.writer = path.open("ab", buffering=0)
        self.reader: IO[bytes] = path.open("rb")
        self.pending = bytearray()  # lines appended, not yet written: the reader cannot see them
        self.failed = False

    def add(self, line: bytes) -> None:
        self.pending += line
        if len(self.pending) >= _WRITE_BYTES:
            self.write_out()

    def write_out(self) -> None:
        try:
            while self.pending:
                written = self.writer.write(self.pending)
                del self.pending[: written or 0]
        except OSError as err:
            self.failed = True
            self.pending.clear()
            raise _named(err, self.path) from None

    def sync(self) -> None:
        self.write_out()
        try:
            os.fsync(self.writer.fileno())
        except OSError as err:
            raise _named(err, self.path) from None

    def close(self) -> None:
        try:
            if not self.failed:
                self.write_out()
        finally:
            self.writer.close()
            self.reader.close()


class FileLog:
    """`EventLog` over a directory: one file per topic, a single partition 0 each.

    Appends are buffered; `flush()` makes them durable. One `FileLog` may have a directory
    open at a time (an exclusive lock), because two writers would interleave offsets.
    """

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._lock_fd = _lock_directory(directory)
        self._mutex = threading.Lock()
        self._topics: dict[str, _TopicFile] = {}
        self._new_files = False
        self._closed = False
        try:
            for path in sorted(directory.glob("*" + _SUFFIX)):
                topic = path.name.removesuffix(_SUFFIX)
                if _TOPIC.fullmatch(topic):
                    self._topics[topic] = _TopicFile(path)
        except BaseException:
            for file in self._topics.values():
                file.close()
            self._release()
            raise

    @classmethod
    def open(cls, directory: Path) -> FileLog:
        """Open (or create) the log in `directory`, truncating any torn last record."""
        return cls(directory)

    def append(self, topic: str, key: bytes | None, value: bytes, headers: Headers = ()) -> Record:
        headers = tuple((name, data) for name, data in headers)
        with self._mutex:
            file = self._created(topic)
            if file.failed:
                raise LogError(f"{file.path}: an earlier write failed; reopen the log to recover")
            offset = len(file.positions)
            line = _encode_line(offset, key, value, headers)
            try:
                file.add(line)
            except BaseException:  # a full disk, an interrupt
                # Part of the line may be in the file; reopening truncates it as a torn tail.
                file.failed = True
                raise
            file.positions.append(file.size)
            file.size += len(line)
        return Record(topic, 0, offset, key, value, headers)

    def read(self, topic: str, partition: int, offset: int, limit: int) -> list[Record]:
        _check_partition(partition)
        if offset < 0 or limit < 0:
            raise ValueError(f"offset and limit must not be negative ({offset}, {limit})")
        with self._mutex:
            file = self._existing(topic)
            if file is None or offset >= len(file.positions) or limit == 0:
                return []
            stop = min(len(file.positions), offset + limit)
            start = file.positions[offset]
            end = file.positions[stop] if stop < len(file.positions) else file.size
            if file.pending:
                file.write_out()
            file.reader.seek(start)
            chunk = file.reader.read(end - start)
        if len(chunk) != end - start:
            raise LogCorrupted(f"{file.path}: file is shorter than its index; was it truncated?")
        lines = chunk.split(b"\n")[:-1]
        return [_decode_line(line, topic, offset + i, file.path) for i, line in enumerate(lines)]

    def partitions(self, topic: str) -> int:
        check_topic(topic)
        return 1

    def end_offset(self, topic: str, partition: int) -> int:
        _check_partition(partition)
        with self._mutex:
            file = self._existing(topic)
            return 0 if file is None else len(file.positions)

    def topics(self) -> list[str]:
        """Topics that exist in the directory, sorted."""
        with self._mutex:
            return sorted(self._topics)

    def flush(self) -> None:
        with self._mutex:
            self._flush()

    def close(self) -> None:
        with self._mutex:
            if self._closed:
                return
            try:
                self._flush()
            finally:
                for file in self._topics.values():
                    file.close()
                self._release()

    def __enter__(self) -> FileLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _existing(self, topic: str) -> _TopicFile | None:
        if self._closed:
            raise LogError(f"{self.directory}: the log is closed")
        return self._topics.get(check_topic(topic))

    def _created(self, topic: str) -> _TopicFile:
        file = self._existing(topic)
        if file is None:
            file = self._topics[topic] = _TopicFile(self.directory / (topic + _SUFFIX))
            self._new_files = True
        return file

    def _flush(self) -> None:
        if self._closed:
            raise LogError(f"{self.directory}: the log is closed")
        for file in self._topics.values():
            if not file.failed:
                file.sync()
        if self._new_files:
            # A new file's directory entry is only durable once the directory is synced.
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
            self._new_files = False

    def _release(self) -> None:
        self._closed = True
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        os.close(self._lock_fd)


def read_jsonl_source(path: Path) -> Iterator[tuple[int, bytes]]:
    """Yield (line number from 1, line bytes without its newline) for each non-blank line.

    A last line with no newline that is not whole JSON is not yielded: it may be an event
    a producer is still appending, which would be dead-lettered cut short and then, once
    finished, skipped as a line already read. It is read when it ends with a newline."""
    with path.open("rb") as source:
        for number, line in enumerate(source, start=1):
            if number == 1:
                # Editors on Windows prepend a BOM; it is not part of the first event.
                line = line.removeprefix(b"\xef\xbb\xbf")
            ended = line.endswith(b"\n")
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            if not ended and not _whole_json(line):
                logger.warning(
                    "%s:%d: the last line has no newline and is not whole JSON; left unread"
                    " (still being written?) until it ends with a newline",
                    path,
                    number,
                )
                return
            yield number, line


def _whole_json(line: bytes) -> bool:
    try:
        json.loads(line)
    except ValueError:  # not JSON, or not UTF-8
        return False
    return True


def scan_topic(directory: Path, topic: str) -> Iterator[Record]:
    """Every complete record of `topic` in the file log in `directory`, in offset order.

    Read-only and without the writer's lock, so it works while `goodwill run` appends;
    a last line still being written is not yielded.
    """
    path = directory / (check_topic(topic) + _SUFFIX)
    if not path.is_file():
        return
    with path.open("rb") as file:
        for offset, line in enumerate(file):
            if not line.endswith(b"\n"):
                return
            yield _decode_line(line[:-1], topic, offset, path)


def _named(err: OSError, path: Path) -> OSError:
    """`err`, naming the file it happened to: a failed write on an open file names none."""
    if err.filename is None and err.errno is not None:
        return OSError(err.errno, err.strerror, str(path))
    return err


def _lock_directory(directory: Path) -> int:
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
        os.close(fd)
        raise LogError(
            f"{directory} is already open by another FileLog (pid {holder}); close that first"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd


def _check_partition(partition: int) -> None:
    if partition != 0:
        raise ValueError(f"the file log has one partition per topic (0), not {partition}")


def _recover(path: Path, positions: array[int]) -> int:
    """Index every line of `path` and return its size, truncating a torn last record.

    Only the last line may be damaged (a crash mid-append); damage anywhere else means
    the file was altered, and guessing would mis-number every later record.
    """
    position = 0
    damaged: int | None = None
    last = b""
    with path.open("rb") as file:
        for line in file:
            offset = len(positions)
            if damaged is not None:
                raise LogCorrupted(
                    f"{path}:{damaged + 1}: record {damaged} is damaged but is not the last line"
                )
            # A cheap prefix check on every line catches missing or interleaved records
            # without parsing each one; the last line is parsed fully below.
            if not line.endswith(b"\n") or not line.startswith(b'{"o":%d,' % offset):
                damaged = offset
            positions.append(position)
            position += len(line)
            last = line
    if damaged is None and positions:
        try:
            _decode_line(last[:-1], "", len(positions) - 1, path)
        except LogCorrupted:
            damaged = len(positions) - 1
    if damaged is None:
        return position
    keep = positions[damaged]
    message = "%s: dropped a torn record at offset %d (%d bytes, an interrupted write)"
    logger.warning(message, path, damaged, position - keep)
    with path.open("r+b") as file:
        file.truncate(keep)
        os.fsync(file.fileno())
    del positions[damaged:]
    return keep


def _pack(data: bytes) -> str | dict[str, str]:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(data).decode("ascii")}


def _unpack(stored: Any) -> bytes:
    if isinstance(stored, str):
        return stored.encode("utf-8")
    return base64.b64decode(stored["b64"], validate=True)


def _encode_line(
    offset: int, key: bytes | None, value: bytes, headers: tuple[tuple[str, bytes], ...]
) -> bytes:
    record = {
        "o": offset,
        "k": None if key is None else _pack(key),
        "v": _pack(value),
        "h": [[name, _pack(data)] for name, data in headers],
    }
    # ensure_ascii=False keeps text readable with `cat`; JSON escapes any newline inside.
    text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8") + b"\n"


def _decode_line(line: bytes, topic: str, offset: int, path: Path) -> Record:
    try:
        stored = json.loads(line)
        if stored["o"] != offset:
            raise ValueError(f"holds offset {stored['o']}, expected {offset}")
        key = None if stored["k"] is None else _unpack(stored["k"])
        headers = tuple((str(name), _unpack(data)) for name, data in stored["h"])
        return Record(topic, 0, offset, key, _unpack(stored["v"]), headers)
    except (ValueError, KeyError, TypeError) as exc:  # binascii.Error is a ValueError
        raise LogCorrupted(f"{path}:{offset + 1}: unreadable record: {exc!r}") from None
