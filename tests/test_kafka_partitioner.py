"""The producer's partitioner must place every key where kafka-python's default does:
consumers and `goodwill topics` rely on customer-keyed records landing on one partition."""

from __future__ import annotations

from kafka.partitioner.default import DefaultPartitioner

from events.kafka import KeyHashCachingPartitioner


class Cluster:
    """The two ClusterMetadata calls the partitioners make."""

    def __init__(self, partitions: int) -> None:
        self.partitions = set(range(partitions))

    def topics(self) -> set[str]:
        return {"t"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions


def test_every_key_goes_where_the_default_partitioner_puts_it() -> None:
    cached, default = KeyHashCachingPartitioner(), DefaultPartitioner()
    keys = [f"c-{i}".encode() for i in range(3000)] + ["ünïcode-ключ".encode(), b"", b"\x00\xff"]
    for count in (1, 2, 3, 7, 12):
        cluster = Cluster(count)
        for _ in range(2):  # the second pass answers from the cache
            for key in keys:
                expected = default.partition("t", key, key, None, None, cluster)
                assert cached.partition("t", key, key, None, None, cluster) == expected, key
    spread = {cached.partition("t", k, k, None, None, Cluster(12)) for k in keys}
    assert spread == set(range(12))


def test_the_cache_is_bounded() -> None:
    cached = KeyHashCachingPartitioner()
    cached.CACHE_SIZE = 10  # type: ignore[misc]
    cluster = Cluster(3)
    for i in range(25):
        cached.partition("t", None, str(i).encode(), None, None, cluster)
    assert len(cached._hashes) <= 10


def test_explain_reads_the_partition_the_default_partitioner_puts_a_customer_on() -> None:
    from engine.placement import partition_for

    default = DefaultPartitioner()
    for count in (1, 3, 4, 12):
        for i in range(500):
            key = f"c-{i}".encode()
            expected = default.partition("t", key, key, None, None, Cluster(count))
            assert partition_for(key, list(range(count))) == expected
