"""A Salesforce-shaped raw data set for a Japanese medical-staffing business, in a local DuckDB file.

The demo needs a lake that looks like what Fivetran lands from Salesforce (lowercase columns,
18-character ids, soft deletes via `is_deleted`, UTC modstamps) and that changes from day to day,
so that the dbt marts and the syncs downstream have real inserts, edits and deletes to carry.

Everything is generated with set-based DuckDB SQL. Randomness comes from `hash(seed, key, tag)`,
never from `random()`: the same seed gives byte-identical tables on every run and every thread
count, and a single column can be changed without reshuffling the others.
"""

from activation.demo.generate import generate_lake
from activation.demo.next_day import apply_day_of_changes
from activation.demo.sql import KEY_PREFIX, RAW_SCHEMA, TABLES, salesforce_id_checksum

__all__ = ["KEY_PREFIX", "RAW_SCHEMA", "TABLES", "apply_day_of_changes", "generate_lake", "salesforce_id_checksum"]
