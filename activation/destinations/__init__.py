"""Where synced rows go: SQL databases (sql/) and API objects (api/ and one package per vendor)."""
