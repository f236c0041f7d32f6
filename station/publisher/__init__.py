# The station's MQTT publisher: the journal is the outbox; results go out in order until the town acknowledges them.
from station.publisher.client import Identity, Publisher, PublisherEvent, PublisherState

__all__ = ["Identity", "Publisher", "PublisherEvent", "PublisherState"]
