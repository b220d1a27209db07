"""Quality gates on every destination table, derived from its sync config (names in
activation.syncs.outcome).

Before the write (blocking: a failure stops the sync and nothing is written), in the engine so
the dry run shares them: keys and fit (`activation.destinations.sql.prechecks`); the guards, which the
engine evaluates inside its write transaction (`guards`). After the write: row count, content
checksum, orphaned foreign keys and rejects (`post_write`, reading back through `read_back`).
`results` turns each outcome into Dagster's asset check result. Every result carries counts,
sample keys and a short markdown table.
"""
