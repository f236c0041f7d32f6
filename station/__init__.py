# Nong'an Station: the rapid-test station daemon and its `station` command.
__version__ = "0.1.0"
