"""The Dagster layer: everything the UI shows about a sync is derived from its config here.

`translator` (keys, specs, checks, metadata) -> `assets` (one multi-asset per destination, one
asset per daily-partitioned sync) -> `execute` (blocking checks, the write, the read-back checks).
`checks/` evaluates the checks, `automation` and `partitions` say when things run, `resources`,
`bigquery` and `dbt` reach the warehouse, the destinations and dbt. The engine (activation.syncs,
.warehouses, .destinations) imports nothing from here, nor from Dagster.
"""
