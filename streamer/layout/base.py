"""The layout as a strategy: where a series' runs live in the stores, chosen once.

A *layout* answers every question about names and placement that the commands,
the pipeline and housekeeping would otherwise each answer by branching on
``STREAMER_LAYOUT``: the bucket of a series, the codec it forces, the object
names of a run, how to list runs, the lock key, the prefixes cleanup works on,
whether retention applies, and what happens in a region just before a commit.
``layout_for`` (layout/choice.py) picks the implementation from the
configuration; nothing else looks at the layout's name.  Implementations:
``StreamerLayout`` (layout/streamer.py) and ``AdtLayout`` (layout/adt.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field

from streamer.codec import Codec
from streamer.layout.catalog import RunListing
from streamer.model import Periodicity, Series
from streamer.store.base import ObjectStore
from streamer.tarframe import TarMember


@dataclass(frozen=True)
class Placement:
    """Where one run's objects go in the bucket: each artifact's key and the manifest's.

    ``keep_on_failure``: completed objects of a run that then fails to commit
    stay (the ADT layout overwrites its live objects in place; see adt.py)
    instead of being deleted as a half run."""

    artifact_keys: Mapping[str, str]
    manifest_key: str
    keep_on_failure: bool = False
    # An artifact stored in another bucket of the region than the manifest
    # (the ADT layout's database, in ``-db-<periodicity>``).
    buckets: Mapping[str, str] = field(default_factory=dict)
    # An artifact stored as the one member of a gzip'd tar (tarframe.py).
    members: Mapping[str, TarMember] = field(default_factory=dict)

    def key(self, artifact: str) -> str:
        return self.artifact_keys[artifact]


@dataclass(frozen=True)
class CleanupPrefix:
    """A key prefix cleanup works under; ``with_runs``: also remove abandoned
    manifest-less runs there (only where runs have their own prefix);
    ``bucket``: in that bucket of the region, not the series' own (the ADT
    database object's ``-db-`` bucket)."""

    prefix: str
    with_runs: bool = True
    bucket: str | None = None


class Layout(ABC):
    """One way of naming and placing backups in a bucket."""

    name: str
    codec: Codec
    no_retention: str | None = None  # why retention does not apply here; None: it does
    no_heal: str | None = None  # why `streamer heal` does not apply here; None: it does

    @abstractmethod
    def bucket(self, periodicity: Periodicity | None) -> str:
        """The bucket holding the series of this periodicity (None: any)."""

    def scopes(self, periodicity: Periodicity | None) -> list[Periodicity | None]:
        """The periodicities to visit, a bucket each, for a command given
        ``periodicity`` or none (None: the whole bucket at once)."""
        return [periodicity]

    @abstractmethod
    def placement(self, series: Series, stamp: str, extension: str) -> Placement:
        """Where one run's objects and manifest go."""

    @abstractmethod
    async def runs(self, client: ObjectStore, series: Series) -> list[RunListing]:
        """Every run of one series in one region (committed or not), oldest first."""

    @abstractmethod
    async def runs_in(self, client: ObjectStore, build: str | None,
                      periodicity: Periodicity | None) -> list[RunListing]:
        """Runs in one scope of ``scopes`` (``list``), optionally of one build."""

    @abstractmethod
    async def find_series(self, clients: list[ObjectStore], periodicity: Periodicity | None,
                          build: str | None) -> list[Series]:
        """The series to work on in one scope (``prune``, ``cleanup``): the one
        given, or every one found in any region."""

    @abstractmethod
    def lock_key(self, series: Series) -> str:
        """The key of the backup lock of a series."""

    @abstractmethod
    def cleanup_prefixes(self, series: Series) -> list[CleanupPrefix]:
        """Where leftovers of killed runs of a series can be."""

    def extra_buckets(self, periodicity: Periodicity) -> list[str]:
        """Buckets besides ``bucket`` a backup writes to (checked and created with it)."""
        return []

    async def before_commit(self, client: ObjectStore,
                            objects: tuple[tuple[ObjectStore, str], ...]) -> None:
        """Runs in a region just before its uploads are completed: ``client`` is
        the run's bucket, ``objects`` every artifact's store and key."""
        return None
