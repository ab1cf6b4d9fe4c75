"""Pure, synchronous, deterministic domain logic. No I/O, no clock, no Kafka."""
