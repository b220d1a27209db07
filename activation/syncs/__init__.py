"""The sync engine: spec (validated config) -> schema (destination tables) -> load (writers), with
the blocking checks (prechecks) and the dry run (preview). It imports nothing from Dagster; the
Dagster layer is activation.orchestration."""
