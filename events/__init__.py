"""The contract with producers and the logs events travel through.

- `events.models` — the envelope and one typed payload per event type.
- `events.codec` — bytes ⇄ event; `DecodeError` says exactly what is wrong.
- `events.upcast` — upgrades records written at an older `schema_version`.
- `events.schema` — JSON Schema export for producers.
- `events.log` — the `EventLog` interface and `FileLog`, the embedded backend.
- `events.kafka` — Kafka settings and clients.
- `events.kafka_log` — `KafkaLog`, the Kafka backend of the event log.
- `events.producer` — `EventProducer`, how backends send events to Kafka.
"""
