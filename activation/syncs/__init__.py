"""The sync: spec (validated config) -> schema (destination tables) -> load (writers) -> assets."""
