# The results journal and outbox: open a Journal, append signed results, read the outbox, verify the chain.
"""Callers import from here; journal.py holds the Journal, schema.py its rows, chain.py the seq and
hash links, damage.py what counts as a damaged file and how it is set aside."""
from station.journal.chain import TAIL_CHECK, verify_chain
from station.journal.journal import MAX_NONCE_LEN, Journal
from station.journal.schema import APPLICATION_ID, SCHEMA_VERSION, Checkpoint, Entry, JournalStats, Pending

__all__ = [
    "APPLICATION_ID",
    "MAX_NONCE_LEN",
    "SCHEMA_VERSION",
    "TAIL_CHECK",
    "Checkpoint",
    "Entry",
    "Journal",
    "JournalStats",
    "Pending",
    "verify_chain",
]
