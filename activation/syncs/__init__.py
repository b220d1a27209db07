"""The sync engine's core: spec (validated config), model (the warehouse's Plan), plan (SyncPlan,
one sync's plan as a value, and Strategy), results, guards, problems. It imports nothing from
Dagster or any database; the Dagster layer is activation.orchestration, the writers are in
activation.destinations."""
