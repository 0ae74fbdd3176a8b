"""The aggregates one batch of statements reads and changes, saved together or not at all."""

from __future__ import annotations

from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Repository
from eventsourcing.domain import Aggregate

A = TypeVar("A", bound=Aggregate)


class UnitOfWork:
    """Loads each aggregate at most once per batch and remembers what it touched.

    The repository's cache hands out its own objects (no deep copy: copying every
    aggregate on every statement would cost more than verifying the signature), so
    a batch that fails must `discard()` what it loaded, and the cache reloads it.
    """

    def __init__(self, repository: Repository[UUID]) -> None:
        self._repository = repository
        self._loaded: dict[UUID, Aggregate | None] = {}

    def get(self, cls: type[A], aggregate_id: UUID) -> A | None:
        try:
            found = self._loaded[aggregate_id]
        except KeyError:
            try:
                found = self._repository.get(aggregate_id)
            except AggregateNotFoundError:
                found = None
            self._loaded[aggregate_id] = found
        if found is not None and not isinstance(found, cls):
            return None
        return found  # type: ignore[return-value]

    def add(self, aggregate: Aggregate) -> None:
        self._loaded[aggregate.id] = aggregate

    def changed(self) -> list[Aggregate]:
        return [a for a in self._loaded.values() if a is not None and a.pending_events]

    def discard(self) -> None:
        cache: Any = self._repository.cache
        for aggregate_id, aggregate in self._loaded.items():
            if aggregate is not None:
                aggregate.collect_events()  # drop pending events
            if cache is not None:
                try:
                    cache.get(aggregate_id, evict=True)
                except KeyError:
                    pass
        self._loaded.clear()
