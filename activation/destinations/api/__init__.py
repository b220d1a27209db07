"""API destinations: one engine drives any vendor's client.

client.py   the protocol a vendor's client implements (ObjectClient, FieldInfo, Outcome, CallStats)
limits.py   the one rate limiter per destination and the retry Transport every call goes through
config.py   what a sync into an API object may be, checked when syncs.yml loads
engine.py   ApiDestination: plan -> guards -> describe and value checks -> send -> commit; the preview
plan.py     what a sync would do, found in the warehouse (and the object's describe) before any write
fields.py   the mapping checked against the describe; the values the API would refuse, as warehouse SQL
records.py  warehouse rows as API records (type conversion) in batches of the client's size
send.py     the calls, per-record outcomes into counts, rejects and refused deletes
"""
