"""Send-time stamps: load generators put `properties.sent_ns` (time.time_ns()) in each event,
and whatever receives the events reads the stamps back without parsing the JSON around them."""

from __future__ import annotations

import re

STAMP = "sent_ns"
# jsonb's text form has a space after the colon (`"sent_ns": 123`), orjson's has none.
_STAMPS = re.compile(rb'"sent_ns": ?(\d+)')


def send_times(body: bytes) -> list[int]:
    """Every send time stamped in `body` (one per event it carries)."""
    return [int(value) for value in _STAMPS.findall(body)]
