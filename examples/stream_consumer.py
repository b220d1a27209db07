"""A reference consumer of activation's change events: apply them to a SQLite table, idempotently.

Each event is applied at most once (its id is recorded in the same transaction as the row), and
applying `after` by key is itself idempotent, so a redelivery, a replay from the start of the
stream or an event published twice changes nothing. A message is acknowledged only after its row
committed: a consumer that dies in between gets it again, and skips it. Run against JetStream:
    uv run python examples/stream_consumer.py customer_scores scores.sqlite customer_scores
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys


def apply(con: sqlite3.Connection, table: str, event: dict) -> bool:
    """Apply one event (the envelope, decoded); False when it was applied before."""
    data = event["data"]
    row = data["after"] or data["key"]
    con.execute("CREATE TABLE IF NOT EXISTS applied_events (id TEXT PRIMARY KEY)")
    if data["after"]:  # the columns come with the first row; the key is the table's primary key
        columns = ", ".join(f'"{c}"' for c in row)
        con.execute(f'CREATE TABLE IF NOT EXISTS "{table}" ({columns}, PRIMARY KEY ({", ".join(data["key"])}))')
    with con:  # one transaction: the row and the id, or neither
        if con.execute("INSERT OR IGNORE INTO applied_events VALUES (?)", [event["id"]]).rowcount == 0:
            return False
        where = " AND ".join(f'"{k}" = ?' for k in data["key"])
        if data["op"] == "d":
            con.execute(f'CREATE TABLE IF NOT EXISTS "{table}" ({", ".join(data["key"])})')
            con.execute(f'DELETE FROM "{table}" WHERE {where}', list(data["key"].values()))
        else:
            cols = ", ".join(f'"{c}"' for c in row)
            marks = ", ".join("?" for _ in row)
            values = [json.dumps(v) if isinstance(v, dict | list) else v for v in row.values()]
            con.execute(f'INSERT OR REPLACE INTO "{table}" ({cols}) VALUES ({marks})', values)
    return True


async def consume_jetstream(
    stream: str, path: str, table: str, server: str = "nats://127.0.0.1:4222", ack_wait: float = 30.0
) -> int:
    """Apply what the stream holds beyond what this consumer acknowledged (a durable pull consumer
    named `<table>_sqlite`), until it is caught up; the events applied."""
    import nats
    from nats.js.api import ConsumerConfig

    nc = await nats.connect(server)
    con = sqlite3.connect(path)
    applied = 0
    try:
        subscription = await nc.jetstream().pull_subscribe(
            "", durable=f"{table}_sqlite", stream=stream, config=ConsumerConfig(ack_wait=ack_wait)
        )
        while True:
            try:
                messages = await subscription.fetch(500, timeout=2)
            except TimeoutError:
                return applied  # caught up
            for message in messages:
                applied += apply(con, table, json.loads(message.data))
                await message.ack()  # after the row committed: a crash before it redelivers, and apply skips it
    finally:
        con.close()
        await nc.close()


if __name__ == "__main__":
    print(asyncio.run(consume_jetstream(*sys.argv[1:4])), "events applied")
