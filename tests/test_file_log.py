"""The embedded file log: exact round trips, contiguous offsets, crash recovery."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from events.log import (
    EventLog,
    FileLog,
    LogCorrupted,
    LogError,
    Record,
    read_jsonl_source,
    scan_topic,
)

TOPIC = "goodwill.events"


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return tmp_path / "log"


@pytest.fixture
def log(directory: Path) -> Iterator[FileLog]:
    opened = FileLog.open(directory)
    yield opened
    opened.close()


def fill(log: FileLog, count: int, topic: str = TOPIC) -> list[Record]:
    return [log.append(topic, f"k{i}".encode(), f"value {i}".encode()) for i in range(count)]


def test_file_log_is_an_event_log(log: FileLog) -> None:
    assert isinstance(log, EventLog)


def test_round_trip_with_binary_keys_values_and_headers(log: FileLog) -> None:
    appended = [
        log.append(TOPIC, None, b'{"type":"clock.tick"}'),
        log.append(TOPIC, b"cust-1", "ünïcode\nwith newline".encode()),
        log.append(TOPIC, b"\xff\xfe", b"\x00\x01\xff binary", [("trace", b"\x80"), ("n", b"1")]),
        log.append(TOPIC, b"", b""),
    ]

    assert log.read(TOPIC, 0, 0, 10) == appended
    assert appended[2] == Record(
        TOPIC, 0, 2, b"\xff\xfe", b"\x00\x01\xff binary", (("trace", b"\x80"), ("n", b"1"))
    )


def test_offsets_are_contiguous_per_topic(log: FileLog) -> None:
    first = fill(log, 5)
    other = fill(log, 2, topic="goodwill.decisions")

    assert [r.offset for r in first] == [0, 1, 2, 3, 4]
    assert [r.offset for r in other] == [0, 1]
    assert log.end_offset(TOPIC, 0) == 5
    assert log.end_offset("goodwill.decisions", 0) == 2


def test_records_are_readable_lines(log: FileLog, directory: Path) -> None:
    log.append(TOPIC, b"cust-1", b'{"type":"clock.tick"}', [("h", b"\xff")])
    log.flush()

    line = (directory / f"{TOPIC}.jsonl").read_text(encoding="utf-8")
    assert (
        line
        == '{"o":0,"k":"cust-1","v":"{\\"type\\":\\"clock.tick\\"}","h":[["h",{"b64":"/w=="}]]}\n'
    )


def test_read_sees_appends_before_flush(log: FileLog) -> None:
    fill(log, 3)

    assert [r.offset for r in log.read(TOPIC, 0, 1, 10)] == [1, 2]


def test_read_from_the_middle_respects_offset_and_limit(log: FileLog) -> None:
    records = fill(log, 10)

    assert log.read(TOPIC, 0, 5, 3) == records[5:8]
    assert log.read(TOPIC, 0, 8, 100) == records[8:]
    assert log.read(TOPIC, 0, 10, 5) == []
    assert log.read(TOPIC, 0, 99, 5) == []
    assert log.read(TOPIC, 0, 3, 0) == []


def test_unknown_topic_is_empty(log: FileLog) -> None:
    assert log.read("nothing.here", 0, 0, 10) == []
    assert log.end_offset("nothing.here", 0) == 0
    assert log.partitions("nothing.here") == 1


def test_one_partition_per_topic(log: FileLog) -> None:
    fill(log, 1)

    assert log.partitions(TOPIC) == 1
    with pytest.raises(ValueError, match="one partition"):
        log.read(TOPIC, 1, 0, 10)
    with pytest.raises(ValueError, match="one partition"):
        log.end_offset(TOPIC, 1)


@pytest.mark.parametrize("name", ["", ".", "..", "../escape", "a/b", "a b", "x" * 250, "tópico"])
def test_topic_names_are_validated(log: FileLog, name: str) -> None:
    with pytest.raises(ValueError, match="invalid topic name"):
        log.append(name, None, b"x")


def test_negative_offset_or_limit_is_refused(log: FileLog) -> None:
    with pytest.raises(ValueError):
        log.read(TOPIC, 0, -1, 1)
    with pytest.raises(ValueError):
        log.read(TOPIC, 0, 0, -1)


def test_reopen_continues_offsets(directory: Path) -> None:
    with FileLog.open(directory) as log:
        before = fill(log, 3)

    with FileLog.open(directory) as log:
        assert log.topics() == [TOPIC]
        assert log.end_offset(TOPIC, 0) == 3
        assert log.append(TOPIC, None, b"next").offset == 3
        assert log.read(TOPIC, 0, 0, 3) == before


@pytest.mark.parametrize(
    "garbage",
    [
        b'{"o":3,"k":"k3","v":"val',  # a record cut short by a crash
        b"\x00" * 4096,  # blocks the filesystem allocated but never wrote
        b'{"o":3,"k":null,"v":"x","h":[]\n',  # a whole line that is not valid JSON
        b'{"o":3,"k":null,"v":{"b64":"!!"},"h":[]}\n',  # valid JSON, undecodable record
    ],
)
def test_torn_tail_is_truncated_on_open(
    directory: Path, garbage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with FileLog.open(directory) as log:
        before = fill(log, 3)
    path = directory / f"{TOPIC}.jsonl"
    size = path.stat().st_size
    with path.open("ab") as file:
        file.write(garbage)

    with caplog.at_level(logging.WARNING, logger="events.log"), FileLog.open(directory) as log:
        assert log.read(TOPIC, 0, 0, 10) == before
        assert log.append(TOPIC, None, b"after").offset == 3

    assert "torn record at offset 3" in caplog.text
    with FileLog.open(directory) as log:
        assert [r.value for r in log.read(TOPIC, 0, 2, 10)] == [b"value 2", b"after"]
    assert path.stat().st_size > size


@pytest.mark.parametrize(
    "damage",
    [
        lambda lines: [lines[0], lines[2], lines[1], *lines[3:]],  # records out of order
        lambda lines: [lines[0], b"oops\n", *lines[2:]],  # a damaged record mid-file
        lambda lines: lines[:1] + lines[2:],  # a record missing
    ],
)
def test_damage_before_the_last_line_is_refused_not_guessed(
    directory: Path, damage: object
) -> None:
    with FileLog.open(directory) as log:
        fill(log, 4)
    path = directory / f"{TOPIC}.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(damage(lines)))  # type: ignore[operator]

    for _ in range(2):  # the second attempt shows the failed open released its lock
        with pytest.raises(LogCorrupted, match=rf"{TOPIC}\.jsonl:\d+"):
            FileLog.open(directory)
    assert path.read_bytes() == b"".join(damage(lines))  # type: ignore[operator]


def test_a_directory_has_one_writer_at_a_time(log: FileLog, directory: Path) -> None:
    with pytest.raises(LogError, match="already open"):
        FileLog.open(directory)

    log.close()
    FileLog.open(directory).close()


def test_a_closed_log_refuses_work(log: FileLog) -> None:
    log.close()
    log.close()  # closing twice is harmless

    with pytest.raises(LogError, match="closed"):
        log.append(TOPIC, None, b"x")
    with pytest.raises(LogError, match="closed"):
        log.read(TOPIC, 0, 0, 1)


def test_many_records_read_near_the_end(directory: Path) -> None:
    count = 20_000
    with FileLog.open(directory) as log:
        for i in range(count):
            log.append(TOPIC, f"cust-{i % 97}".encode(), json.dumps({"n": i}).encode())

    with FileLog.open(directory) as log:
        tail = log.read(TOPIC, 0, count - 5, 100)

    assert [r.offset for r in tail] == list(range(count - 5, count))
    assert [json.loads(r.value)["n"] for r in tail] == list(range(count - 5, count))
    assert tail[-1].key == f"cust-{(count - 1) % 97}".encode()


def test_read_jsonl_source_numbers_lines_and_skips_blanks(tmp_path: Path) -> None:
    source = tmp_path / "events.jsonl"
    source.write_bytes(b'\xef\xbb\xbf{"a":1}\r\n\n   \n{"b":\xff}\n{"c":3}')

    assert list(read_jsonl_source(source)) == [
        (1, b'{"a":1}'),
        (4, b'{"b":\xff}'),
        (5, b'{"c":3}'),
    ]


def test_scan_topic_reads_while_a_writer_holds_the_log(directory: Path, log: FileLog) -> None:
    written = fill(log, 3)
    log.flush()
    # A record being appended right now: its line is not finished yet.
    with (directory / f"{TOPIC}.jsonl").open("ab") as file:
        file.write(b'{"o":3,"k":null,"v":"half')

    assert list(scan_topic(directory, TOPIC)) == written
    assert list(scan_topic(directory, "no.such.topic")) == []


def test_read_jsonl_source_leaves_a_last_line_being_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = tmp_path / "events.jsonl"
    source.write_bytes(b'{"a":1}\n{"b":2}\n{"c":')  # a producer is appending the third

    assert list(read_jsonl_source(source)) == [(1, b'{"a":1}'), (2, b'{"b":2}')]
    assert f"{source}:3: the last line has no newline and is not whole JSON" in caplog.text
    with source.open("ab") as file:
        file.write(b"3}")
    assert list(read_jsonl_source(source))[-1] == (3, b'{"c":3}')  # whole now, newline or not
    with source.open("ab") as file:
        file.write(b"\n{oops\n")
    assert list(read_jsonl_source(source))[-1] == (4, b"{oops")  # ended: it is dead-lettered


_FILL_A_SMALL_FILE = """
import resource, signal, sys
from pathlib import Path
from events.log import FileLog
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY))
log = FileLog.open(Path(sys.argv[1]))
try:
    for i in range(10_000):
        log.append("t", None, b"%06d" % i + b"x" * 200)
    log.flush()
except OSError as err:
    print(err.filename, err.errno)
log.close()  # does not write again after the failure
"""


def test_a_write_the_disk_refuses_names_the_file_and_leaves_only_a_torn_tail(
    directory: Path,
) -> None:
    import errno
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _FILL_A_SMALL_FILE, str(directory)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    path = directory / "t.jsonl"
    assert done.stdout.split() == [str(path), str(errno.EFBIG)], done.stderr
    assert path.stat().st_size == 100_000  # filled to the limit, ending in part of a line
    with FileLog.open(directory) as log:  # the torn tail is cut; every whole line reads
        records = log.read("t", 0, 0, 10_000)
    assert 0 < len(records) < 10_000
    assert [r.value[:6] for r in records] == [b"%06d" % i for i in range(len(records))]
