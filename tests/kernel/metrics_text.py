"""Read one sample out of a /metrics page with prometheus_client's own parser (label order and
value formatting are the library's, so tests must not match the text)."""
from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def sample(text: str | None, name: str, **labels: str) -> float | None:
    """The value of the sample `name` whose labels are exactly `labels`; None when absent."""
    for family in text_string_to_metric_families(text or ""):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return found.value
    return None
