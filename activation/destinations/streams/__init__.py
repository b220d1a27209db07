"""Stream destinations: every insert, update and delete the warehouse diff finds, published as one
event (envelope.py) into NATS JetStream, a RabbitMQ stream or a Redis stream, deduplicated by the
broker, with the sync state advanced only once the broker acknowledged every event (engine.py)."""
