"""The warehouse seam: describe a mart, diff it with the recorded state, stream what to send.

`base.Warehouse` is the interface and the change-detection algorithm, written once over a
`flavour.SqlFlavour`; `duckdb.DuckDB` and `bigquery.BigQuery` supply their SQL and I/O;
`rejects` and `history` are written over the same interface. Resources open one with
`DuckDBWarehouse.open(...)` / `BigQueryWarehouse.open(...)`.
"""
