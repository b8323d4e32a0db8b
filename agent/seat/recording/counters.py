"""What call recording counts: the protocol the metrics module implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class RecordingCounters(Protocol):
    """What the recorder counts (the metrics module implements it; every method must be thread-safe).

    - ``recording_bytes(n)`` → ``cti_recording_bytes_total``
    - ``recording_error(reason)`` → ``cti_recording_errors_total{reason}``: ``disk_full``, ``io_error``,
      ``device_lost``, ``device_open``, ``database``
    - ``recording_overrun()`` → ``cti_recording_overruns_total``: input dropped (device or queue)
    - ``recording_missing()`` → ``cti_recording_missing_total``
    - ``recording_suspect(reason)`` → ``cti_recording_suspect_total{reason}``: ``short``, ``silent``,
      ``one_sided``
    """

    def recording_bytes(self, n: int) -> None:
        """Count ``n`` bytes of finished recording files."""

    def recording_error(self, reason: str) -> None:
        """Count one recording that failed or stopped early for ``reason``."""

    def recording_overrun(self) -> None:
        """Count one overrun: audio lost because the device or the writer fell behind."""

    def recording_missing(self) -> None:
        """Count one call that should have a recording and has none."""

    def recording_suspect(self, reason: str) -> None:
        """Count one recording flagged ``reason`` by the completeness checks."""


__all__ = ["RecordingCounters"]
