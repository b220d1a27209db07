"""API destinations: one engine (engine.py) drives any vendor's client (client.py's protocol)."""
