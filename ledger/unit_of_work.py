"""The aggregates one batch of statements reads and changes, saved together or not at all."""

from __future__ import annotations

import copy
from typing import Any, TypeVar
from uuid import UUID

from collections.abc import Iterable
from itertools import groupby

from eventsourcing.application import AggregateNotFoundError, Repository, project_aggregate
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

    def prefetch(self, ids: Iterable[UUID]) -> None:
        """Load many aggregates with one query: cached ones are brought up to date,
        the rest built from their events, and ids with no events remembered as absent.
        A batch of a thousand statements would otherwise cost thousands of round trips."""
        cache: Any = self._repository.cache
        current: dict[UUID, Aggregate | None] = {}
        for aggregate_id in ids:
            if aggregate_id in self._loaded or aggregate_id in current:
                continue
            try:
                current[aggregate_id] = cache.get(aggregate_id) if cache is not None else None
            except KeyError:
                current[aggregate_id] = None
        if not current:
            return
        recorder: Any = self._repository.event_store.recorder
        mapper = self._repository.event_store.mapper
        pairs = [(i, a.version if a is not None else 0) for i, a in current.items()]
        for aggregate_id, stored in groupby(
            recorder.select_events_after(pairs), key=lambda s: s.originator_id
        ):
            events = [mapper.to_domain_event(s) for s in stored]
            aggregate = project_aggregate(current[aggregate_id], events)  # type: ignore[arg-type]
            current[aggregate_id] = aggregate
            if cache is not None and aggregate is not None:
                cache.put(aggregate_id, aggregate)
        self._loaded.update(current)

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


class InMemoryState:
    """Aggregates in a dict and nowhere else: the audit's state, entry by entry.

    The rules run against it exactly as against the store. An entry the rules refuse
    leaves no trace: what it added is dropped, and aggregates it may have changed
    before refusing (`careful`) are put back as they were. Pending events are dropped
    after each entry; nothing here is ever saved.
    """

    def __init__(self) -> None:
        self._all: dict[UUID, Aggregate] = {}
        self._touched: list[Aggregate] = []
        self._added: list[UUID] = []
        self._saved: dict[UUID, Aggregate] = {}
        self.careful = False

    def get(self, cls: type[A], aggregate_id: UUID) -> A | None:
        found = self._all.get(aggregate_id)
        if found is None or not isinstance(found, cls):
            return None
        if self.careful and aggregate_id not in self._saved:
            self._saved[aggregate_id] = _copy(found)
        self._touched.append(found)
        return found

    def add(self, aggregate: Aggregate) -> None:
        self._all[aggregate.id] = aggregate
        self._added.append(aggregate.id)
        self._touched.append(aggregate)

    def aggregates(self) -> dict[UUID, Aggregate]:
        """Every aggregate held, by id (a copy of the index, not of the aggregates)."""
        return dict(self._all)

    def keep(self) -> None:
        """The entry was applied."""
        for aggregate in self._touched:
            if aggregate._pending_events:
                aggregate._pending_events.clear()
        self._end()

    def undo(self) -> None:
        """The entry was refused."""
        for aggregate_id in self._added:
            self._all.pop(aggregate_id, None)
        self._all.update(self._saved)
        self.keep()

    def _end(self) -> None:
        self._touched.clear()
        self._added.clear()
        self._saved.clear()
        self.careful = False


def _copy(aggregate: A) -> A:
    """A copy that shares nothing mutable with the original (aggregates hold only
    scalars, lists and dicts of scalars)."""
    copied = copy.copy(aggregate)
    for name, value in vars(copied).items():
        if type(value) is dict or type(value) is list:
            setattr(copied, name, value.copy())
    return copied
