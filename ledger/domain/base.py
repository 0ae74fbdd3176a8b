"""The base of the ledger's aggregates: the library's Aggregate, with events built directly.

The library builds each new event through its frozen dataclass __init__ (one
object.__setattr__ per field, after copying the arguments twice) and, for a created
event, picks the aggregate's __init__ arguments out of the event by inspecting its
signature. A ledger triggers one or two events for every entry it records or audits,
and that machinery cost more than the rules themselves. Here an event is built the way
the library's own Mapper rebuilds stored ones (object.__new__ and its __dict__), then
applied exactly as the library would: same version checks, same attributes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any, Self
from uuid import UUID

from eventsourcing.domain import Aggregate as LibraryAggregate
from eventsourcing.domain import CanMutateAggregate
from eventsourcing.utils import get_topic


# The time of the entry whose rules are running, given by the writer: its events carry
# it, the log's as the aggregates', so one formatted time serves them all. Elsewhere
# (tests, tools) events are timed by the library's clock.
_recording_time: ContextVar[datetime | None] = ContextVar("recording_time", default=None)


@contextmanager
def recording(at: datetime) -> Iterator[Callable[[datetime], object]]:
    """Events made inside are timestamped `at`, or the time last given to the function
    yielded (a replay records each entry at its own time)."""
    token = _recording_time.set(at)
    try:
        yield _recording_time.set
    finally:
        _recording_time.reset(token)


def _timestamp(event_class: type[Any]) -> datetime:
    at = _recording_time.get()
    return at if at is not None else event_class.create_timestamp()  # type: ignore[no-any-return]


def make_event(event_class: type[Any], state: dict[str, Any]) -> Any:
    """An event of `event_class` whose attributes are `state`, in that order (the order
    they are stored in), built without the dataclass __init__."""
    event = object.__new__(event_class)
    object.__setattr__(event, "__dict__", state)
    return event


class Aggregate(LibraryAggregate):
    @classmethod
    def _created(cls, event_class: type[Any], aggregate_id: UUID, **fields: Any) -> Self:
        """Create the aggregate with its created event: `fields` are its __init__'s
        arguments and the event's attributes."""
        timestamp = _timestamp(event_class)
        event = make_event(event_class, {
            "originator_topic": get_topic(cls), "originator_id": aggregate_id,
            "originator_version": cls.INITIAL_VERSION, "timestamp": timestamp, **fields,
        })
        aggregate = cls.__new__(cls)
        aggregate.__base_init__(aggregate_id, cls.INITIAL_VERSION, timestamp)
        aggregate.__init__(**fields)  # type: ignore[misc]
        aggregate._pending_events.append(event)
        return aggregate

    def trigger_event(self, event_class: type[CanMutateAggregate[UUID]], **fields: Any) -> None:
        state = {
            "originator_id": self._id, "originator_version": self._version + 1,
            "timestamp": _timestamp(event_class), **fields,
        }
        event = make_event(event_class, state)
        event.mutate(self)
        self._pending_events.append(event)
