"""Segments: rule-based memberships over profile features, online and in batch.

* :mod:`tailorkit.segment.definitions` parses segments (condition, priority,
  exclusive group, ``min_users``, webhooks);
* :mod:`tailorkit.segment.online` is the online executor (:class:`SegmentEngine`);
* :mod:`tailorkit.segment.batch` computes membership, sizes and overlap in the warehouse;
* :mod:`tailorkit.segment.sink` and :mod:`tailorkit.segment.webhooks` act on changes.

See ``docs/profiles.md``.
"""

from tailorkit.segment.definitions import Definitions, Segment, parse_definitions
from tailorkit.segment.online import Change, SegmentEngine

__all__ = ["Change", "Definitions", "Segment", "SegmentEngine", "parse_definitions"]
