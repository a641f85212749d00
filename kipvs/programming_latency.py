"""Network programming latency as kube-proxy measures it (Kubernetes' network programming SLI): from
the time the EndpointSlice controller stamps on a slice, `endpoints.kubernetes.io/last-change-trigger-time`
(when the Pod or Service change behind the update happened), to the sync that wrote it into the kernel.

Only slices seen as watch events count, with a trigger time after the watch started (older ones
would time kipvs's own start, not the network's programming), and a deleted slice's pending times
are dropped (a deletion's annotation dates from its last update): kube-proxy's rules.
"""
from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta, timezone

log = logging.getLogger("kipvs.metrics")

ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"
# RFC 3339 as Go's time.RFC3339Nano writes it (up to nanoseconds; Z or a numeric offset).
_RFC3339 = re.compile(r"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d\d):(\d\d))",
                      re.ASCII)


def parse_rfc3339(text: str) -> float | None:
    """Unix time of an RFC 3339 timestamp, or None when it is not one."""
    match = _RFC3339.fullmatch(text)
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    try:
        offset = timezone.utc if zulu else timezone(
            (1 if sign == "+" else -1) * timedelta(hours=int(off_h), minutes=int(off_m)))
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=offset)
    except ValueError:  # month 13, 25 o'clock, an offset of a day or more
        return None
    return moment.timestamp() + (int(fraction.ljust(9, "0")) / 1e9 if fraction else 0.0)


def trigger_time(obj: dict) -> float | None:
    """The slice's last-change trigger time (unix seconds); None when it has none. A malformed value
    is ignored, with one line naming the slice and the annotation (kube-proxy ignores it too)."""
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    annotations = meta.get("annotations") if isinstance(meta.get("annotations"), dict) else {}
    value = annotations.get(ANNOTATION)
    if value is None:
        return None
    parsed = parse_rfc3339(value) if isinstance(value, str) else None
    if parsed is None:
        log.warning("EndpointSlice %s/%s: annotation %s: %r is not an RFC 3339 time; not timed",
                    meta.get("namespace") or "", meta.get("name") or "", ANNOTATION, value)
    return parsed


def latencies(trigger_times: list[float], written_at: float) -> list[float]:
    """Seconds from each trigger to the kernel write. A trigger stamped after the write (the
    controller's clock ahead of this node's) counts as 0, not as a negative latency."""
    return [max(0.0, written_at - t) for t in trigger_times]
