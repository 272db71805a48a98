"""What the trend clusterer holds per story and hands to storage: ``StoryState``, ``ClusterDelta`` (the
changes since the last drain) and ``Lineage`` events (plain dataclasses, no Ray)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Lineage:
    level: str  # story | topic
    kind: str  # birth | merge | split | death
    subject: int
    related: tuple[int, ...]
    documents: int
    at: int  # epoch seconds (document time)
    key: str  # unique per partition: replays write it once


@dataclass
class ClusterDelta:
    """Changes since the last ``drain``: what storage must write."""

    assignments: dict[int, tuple[int, float | None, str, int]] = field(default_factory=dict)
    #: document -> (story, similarity, method, document time)
    unassigned: set[int] = field(default_factory=set)
    stories: dict[int, tuple[int | None, str, int | None]] = field(default_factory=dict)
    #: story -> (topic, status, merged_into)
    topics: dict[int, tuple[str, int]] = field(default_factory=dict)  #: topic -> (status, story count)
    lineage: list[Lineage] = field(default_factory=list)
    #: document -> (topic, document time); topic -1: the document has none any more
    document_topics: dict[int, tuple[int, int]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (
            self.assignments
            or self.unassigned
            or self.stories
            or self.topics
            or self.lineage
            or self.document_topics
        )


@dataclass
class StoryState:
    """A story as the clusterer holds it: the sum of its window documents' vectors and their count."""

    centroid_sum: np.ndarray
    count: int  # documents in the window
    last: int = 0  # time of its latest document (epoch s)
    topic: int | None = None
    status: str = "active"
    merged_into: int | None = None
