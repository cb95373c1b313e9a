"""The real-world suite: redis-py and nats-py through the daemon."""
