"""``tailorkit ingest``: load files through the same validator and store as HTTP."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from tailorkit.collect.files import read_file
from tailorkit.collect.pipeline import ACCEPTED, CONSENT_DROPPED, DUPLICATE, REJECTED, Collector

OnError = Literal["skip", "abort"]


@dataclass
class IngestSummary:
    """Totals over all files, and every rejected line with its reason."""

    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    consent_dropped: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    aborted: bool = False

    def to_dict(self, max_errors: int = 1000) -> dict[str, Any]:
        """JSON summary (errors capped at ``max_errors``; the count is exact)."""
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "consent_dropped": self.consent_dropped,
            "aborted": self.aborted,
            "errors": self.errors[:max_errors],
        }


def _check_only(collector: Collector, paths: list[Path]) -> list[dict[str, Any]]:
    """Validate without storing; the errors a load would report."""
    errors = []
    for path in paths:
        for chunk in read_file(path, collector.settings.limits):
            validated = collector.validator.validate(
                chunk.raw, datetime.now(UTC), f"file:{path.name}"
            )
            for index, reason in validated.rejected:
                errors.append(
                    {"file": str(path), "line": chunk.first_line + index, "reason": reason}
                )
    return errors


def ingest_files(
    collector: Collector,
    paths: list[Path],
    on_error: OnError = "skip",
    progress: Callable[[int], None] | None = None,
) -> IngestSummary:
    """Load ``paths``. With ``on_error="abort"`` nothing is stored if any line is bad.

    ``progress`` is called with the number of bytes processed after each chunk.
    """
    summary = IngestSummary()
    if on_error == "abort":
        summary.errors = _check_only(collector, paths)
        if summary.errors:
            summary.rejected, summary.aborted = len(summary.errors), True
            return summary
    for path in paths:
        for chunk in read_file(path, collector.settings.limits):
            result = collector.ingest(chunk.raw, f"file:{path.name}")
            summary.accepted += result.count(ACCEPTED)
            summary.duplicates += result.count(DUPLICATE)
            summary.rejected += result.count(REJECTED)
            summary.consent_dropped += result.count(CONSENT_DROPPED)
            for error in result.errors:
                line = chunk.first_line + int(chunk.raw["_index"][error["index"]].as_py())
                summary.errors.append({"file": str(path), "line": line, "reason": error["reason"]})
            if progress is not None:
                progress(chunk.bytes_read)
    return summary
