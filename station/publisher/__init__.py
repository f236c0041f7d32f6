# The station's MQTT publisher: the journal is the outbox; results go out in order until the town acknowledges them.
from station.publisher.client import Publisher
from station.publisher.reports import PublisherEvent, PublisherState
from station.publisher.settings import Identity, PublisherSettings

__all__ = ["Identity", "Publisher", "PublisherEvent", "PublisherSettings", "PublisherState"]
