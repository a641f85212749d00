"""A JSON dump's List decoded by msgspec into structs of only the fields kipvs reads: the text of every
other field (uids, targetRef's kind and uid, zones, managedFields, ...) is skipped without building a
Python object, which is most of what decoding a dump cost (`json.loads` built every field: 5x the text
per endpoint in what the EndpointSlice controller writes than in a bare dump).

The same result as kipvs.sources.file's json path, or none at all: `load_list` returns None for
anything it is not sure of, and the caller reads the file the usual way (so every error and problem
stays as it was; tests/unit/test_early_parse.py compares both on generated and hostile dumps). Values
kipvs checks itself (a port, an address, a label) are decoded as whatever JSON holds (`Any`), so a
wrong type there is a problem line for its object, as before; only the shape of the hot path (an item,
its endpoints, an endpoint's conditions, targetRef and hints entries must be maps, lists where lists
belong) is typed, and an item that breaks it is decoded whole (msgspec without types: the values
json.loads gives) and parsed as the json path parses it. What msgspec could read differently from json
(see `load_list`) leaves the whole dump to json. msgspec is optional: without it, every dump is read the
usual way.
"""
from __future__ import annotations

import codecs
import sys
from typing import Any

from kipvs.cluster import parse_early, parse_endpoint_slice_early, parse_service_early

try:
    import msgspec
    from msgspec import UNSET, Struct, UnsetType
except ImportError:  # pragma: no cover - an install without the optional decoder
    msgspec = None

# Fields an item keeps when it is neither a Service nor an EndpointSlice (a Node: what kipvs reads of it).
KEPT = ("kind", "apiVersion", "metadata", "spec", "status")
# Extra Python frames under the decoder: it then meets Python's recursion limit before the json path would
# (both count every nested list and map against it), so a dump nested too deeply for json is never decoded here.
DEPTH_MARGIN = 8

if msgspec is not None:
    class _Conditions(Struct, gc=False):
        ready: Any = None
        serving: Any = None
        terminating: Any = None

    class _Named(Struct, gc=False):  # targetRef and hint entries: only the name is read
        name: Any = None

    class _Hints(Struct, gc=False):
        forZones: list[_Named] | None = None
        forNodes: list[_Named] | None = None

    class Endpoint(Struct, gc=False):
        """An endpoint as cluster._endpoints reads it (absent and null are the same to it)."""
        addresses: Any = None
        conditions: _Conditions | None = None
        nodeName: Any = None
        targetRef: _Named | None = None
        hints: _Hints | None = None

        def as_dict(self) -> dict:
            """The map the general reader (cluster._endpoint) would have had, restricted to what it reads."""
            conditions, target, hints = self.conditions, self.targetRef, self.hints
            return {"addresses": self.addresses,
                    "conditions": None if conditions is None else {
                        "ready": conditions.ready, "serving": conditions.serving,
                        "terminating": conditions.terminating},
                    "nodeName": self.nodeName,
                    "targetRef": None if target is None else {"name": target.name},
                    "hints": None if hints is None else {"forZones": _entries(hints.forZones),
                                                         "forNodes": _entries(hints.forNodes)}}

    class _Item(Struct, gc=False):
        """Any List item: a Service, an EndpointSlice, a Node or another kind (present fields kept as they are)."""
        kind: Any = UNSET
        apiVersion: Any = UNSET
        metadata: Any = UNSET
        spec: Any = UNSET
        status: Any = UNSET
        addressType: Any = UNSET
        ports: Any = UNSET
        endpoints: list[Endpoint] | None | UnsetType = UNSET

    class _List(Struct, gc=False):
        """The List, each item left as its text (a view of the bytes) until it is decoded and parsed: the
        structs of a whole dump at once would double file mode's peak memory."""
        kind: Any = UNSET
        items: list[msgspec.Raw] | None | UnsetType = UNSET

    _LIST, _ITEM, _ANY = msgspec.json.Decoder(_List), msgspec.json.Decoder(_Item), msgspec.json.Decoder()


def _entries(entries) -> list | None:
    return None if entries is None else [{"name": entry.name} for entry in entries]


def _present(item, fields) -> dict:
    return {name: value for name in fields if (value := getattr(item, name)) is not UNSET}


_DIGITS = bytes(49 if 48 <= c <= 57 else 48 for c in range(256))  # b"1" for an ASCII digit, else b"0"


def _long_digit_run(data: bytes, limit: int) -> bool:
    """True when `data` may hold a run of more than `limit` ASCII digits (json refuses an integer that long;
    msgspec skips it in a field it does not decode). Bytes one step apart are sampled: such a run covers two
    neighbouring samples, and the bytes between them are then all digits. Linear, ~limit/2 times less
    than a scan of every byte."""
    if limit <= 0:
        return False
    step = (limit + 1) // 2
    flags = data[::step].translate(_DIGITS)
    at = flags.find(b"11")
    while at != -1:
        if data[at * step:(at + 1) * step + 1].isdigit():
            return True
        at = flags.find(b"11", at + 1)
    return False


def _utf8(data: bytes) -> bool:
    if data.isascii():
        return True
    decoder, view = codecs.getincrementaldecoder("utf-8")(), memoryview(data)
    try:
        for start in range(0, len(data), 1 << 22):  # in pieces: the whole text is never built
            decoder.decode(view[start:start + (1 << 22)])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _nested(frames: int, call, data: bytes):
    return call(data) if frames == 0 else _nested(frames - 1, call, data)


def load_list(data: bytes) -> dict | None:
    """What kipvs.sources.file's json path gives for the bytes of a JSON List (each Service and
    EndpointSlice parsed early, other items as maps), or None: msgspec is missing, or the bytes are not a
    List it can decode exactly as json would (the caller then reads them the usual way)."""
    if msgspec is None or b"\x00" in data or not _utf8(data) or _long_digit_run(data, sys.get_int_max_str_digits()):
        return None
    return _nested(DEPTH_MARGIN, _load_list, data)


def _load_list(data: bytes) -> dict | None:
    try:
        document = _LIST.decode(data)
    except Exception:  # whatever it refuses (malformed, too deep, a wrong shape): json decides
        return None
    kind, items = document.kind, document.items
    if items is UNSET or not (kind is UNSET or (kind.__class__ is str and kind.endswith("List"))):
        return None  # not a List with items (see kipvs.sources.file._is_list): the usual way
    found: dict = {} if kind is UNSET else {"kind": kind}
    if items is None:
        return dict(found, items=None)
    parsed, decode = [], _ITEM.decode
    for raw in items:
        try:
            item = decode(raw)
        except Exception:  # an item the structs do not fit (an endpoint that is a string, conditions a list):
            try:  # this item alone is decoded whole, as json.loads would, and parsed as the json path does
                parsed.append(parse_early(_ANY.decode(raw)))
            except Exception:
                return None
            continue
        kind = item.kind
        if kind == "EndpointSlice":
            parsed.append(parse_endpoint_slice_early(
                _present(item, ("metadata", "addressType", "ports", "endpoints")), Endpoint))
        elif kind == "Service":
            parsed.append(parse_service_early(_present(item, KEPT)))
        else:
            parsed.append(_present(item, KEPT))
    found["items"] = parsed
    return found
