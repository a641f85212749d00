"""`--cluster-file`: what `kubectl get services,endpointslices,nodes -A -o json|yaml` prints.

The file may come from anyone: every way it can be unreadable (not UTF-8, binary, a directory,
closed stdin, YAML errors, nesting deeper than Python can follow, alias bombs, sheer size) is one
line naming the file and the cause, and exit status 2 with nothing changed.
"""
from __future__ import annotations

import functools
import json
import os
import re
import sys

from kipvs.cluster import ParsedEndpointSlice, ParsedService, parse_early
from kipvs.bounded_read import NotReadable, read_chunks, read_regular
from kipvs.errors import ClusterUnavailable, ConfigError
from kipvs.gc_pause import gc_paused
from kipvs.sources import Snapshot, snapshot_from_objects

# A 50,000-Service dump with 10 endpoints each is about 300 MB of JSON; refuse what is far beyond.
DEFAULT_MAX_BYTES = 1 << 30
MAX_BYTES: int | None = None  # None: KIPVS_MAX_CLUSTER_FILE_BYTES, else DEFAULT_MAX_BYTES (tests set it)
# kubectl never writes YAML aliases; a few in a hand-written file are fine, an expansion that
# makes the data larger than the text (a "billion laughs" bomb) is refused.
ALIAS_SLACK = 10_000

# libyaml's composer recurses in C without a limit: nesting deep enough to overflow the stack kills
# the process, so it is measured (cheaply) first. kubectl's output nests about 10 levels.
MAX_NESTING = 200
_QUOTED = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\n]|\'\')*\'')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
# Block nesting: a line indented by 2 * MAX_NESTING, or MAX_NESTING compact `- `/`? ` markers in a row. Written
# so that `re` can skip ahead (a newline, two markers in a row): `^ {400,}\S|(?:[-?] +){200,}` with re.M took
# 0.8 s over a 22 MB dump.
_DEEP_BLOCK = (re.compile(r" {%d,}\S" % (MAX_NESTING * 2)).match, re.compile(r"\n {%d,}\S" % (MAX_NESTING * 2)).search,
               re.compile(r"[-?] +[-?] +(?:[-?] +){%d,}" % (MAX_NESTING - 2)).search)


def _is_list(document: dict) -> bool:
    """kubectl's -o yaml/json of several kinds (a `List`), or a bare {"items": [...]}."""
    kind = document.get("kind")
    return (isinstance(kind, str) and kind.endswith("List")) or ("items" in document and "kind" not in document)


def _flatten(document) -> list[dict]:
    """A `List` or a single object."""
    if not isinstance(document, dict):
        return []
    if _is_list(document):
        items = document.get("items")
        return [item for item in items if isinstance(item, (dict, ParsedEndpointSlice, ParsedService))] \
            if isinstance(items, list) else []
    return [document]


class _Irregular(Exception):
    """Not a plain `{..., "items": [...], ...}` List: decoded the ordinary way instead."""


_DECODER = json.JSONDecoder()
_JSON_OBJECT = re.compile(rb"[ \t\r\n]*\{").match
_SPACE = json.decoder.WHITESPACE.match


def _load_json(text: str):
    """json.loads(text), except that each item of a List is parsed (cluster.parse_early) as soon as it
    is decoded: at 50,000 Services the raw objects were most of file mode's peak memory. Only the top
    level is walked here, so an object nested anywhere inside an item stays as it is; any file that is
    not a plain List (errors included: their messages are json's own) is decoded again by json.loads."""
    try:
        return _load_list(text)
    except (_Irregular, ValueError, StopIteration):
        pass
    return json.loads(text)


def _load_list(text: str) -> dict:
    scan = _DECODER.scan_once
    i = _SPACE(text, 0).end()
    if text[i:i + 1] != "{":
        raise _Irregular
    document = {}
    i = _SPACE(text, i + 1).end()
    if text[i:i + 1] == "}":
        raise _Irregular  # {}: nothing to gain
    while True:
        if text[i:i + 1] != '"':
            raise _Irregular
        key, i = json.decoder.scanstring(text, i + 1)
        i = _SPACE(text, i).end()
        if text[i:i + 1] != ":":
            raise _Irregular
        i = _SPACE(text, i + 1).end()
        if key == "items" and text[i:i + 1] == "[":
            value, i = _load_items(text, i + 1, scan)
        else:
            value, i = scan(text, i)
        document[key] = value  # a repeated key: the last wins, as in json.loads
        i = _SPACE(text, i).end()
        if text[i:i + 1] == ",":
            i = _SPACE(text, i + 1).end()
        elif text[i:i + 1] == "}":
            break
        else:
            raise _Irregular
    if _SPACE(text, i + 1).end() != len(text) or not _is_list(document):
        raise _Irregular
    return document


def _load_items(text: str, i: int, scan) -> tuple[list, int]:
    items: list = []
    i = _SPACE(text, i).end()
    if text[i:i + 1] == "]":
        return items, i + 1
    while True:
        value, i = scan(text, i)
        items.append(parse_early(value))
        i = _SPACE(text, i).end()
        if text[i:i + 1] == ",":
            i = _SPACE(text, i + 1).end()
        elif text[i:i + 1] == "]":
            return items, i + 1
        else:
            raise _Irregular


def _check_expansion(documents: list, budget: int) -> None:
    """Walk the loaded data as a consumer would; aliases that expand it past `budget` nodes (or
    refer to themselves) are refused before anything else walks it."""
    stack = list(documents)
    while stack:
        node = stack.pop()
        budget -= 1
        if budget < 0:
            raise ClusterUnavailable("YAML aliases expand far beyond the file's size (an alias bomb?): refused")
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _check_nesting(text: str, origin: str) -> None:
    if any(find(text) for find in _DEEP_BLOCK):
        raise ClusterUnavailable(f"{origin}: nested too deeply to be a kubectl dump")
    if "[" not in text and "{" not in text:
        return
    depth = 0
    for c in _NOT_BRACKET.sub("", _QUOTED.sub("", text)):
        depth += 1 if c in "[{" else -1
        if depth > MAX_NESTING:
            raise ClusterUnavailable(f"{origin}: nested too deeply to be a kubectl dump")


def yaml_loader():
    """libyaml's C loader when PyYAML was built with it (~20x faster than the pure-Python one)."""
    import yaml  # only a YAML dump needs it

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


_YAML = "tag:yaml.org,2002:"


def strict_loader():
    """yaml_loader() whose scalar constructors turn a value Python cannot build (a 5,000-digit integer, an
    unquoted 2023-02-30 or T25:61:61Z) into a YAML error with its line and column, not a ValueError from
    deep inside PyYAML."""
    return _strict(yaml_loader())


@functools.lru_cache(maxsize=None)
def _strict(base):
    import yaml

    class Strict(base):  # type: ignore[misc, valid-type]
        pass

    for name, what in (("int", "an integer"), ("float", "a number"), ("timestamp", "a date or time")):
        def construct(loader, node, build=base.yaml_constructors[_YAML + name], what=what):
            try:
                return build(loader, node)
            except (ValueError, OverflowError, TypeError):
                raise yaml.constructor.ConstructorError(
                    None, None, f"{str(node.value)[:40]!r} is not {what} kipvs can read", node.start_mark) from None
        Strict.add_constructor(_YAML + name, construct)
    return Strict


_PLAIN_SCALARS = {_YAML + name for name in ("null", "bool", "int", "float", "timestamp")}


class _NotPlain(Exception):
    """A node `_plain_data` leaves to PyYAML's own constructor."""


def _plain_data(loader, node):
    """What loader.construct_document(node) gives, for a document of plain maps, lists and scalars (a kubectl
    dump), without PyYAML's generic machinery (a generator per map and list, its bookkeeping per node): about
    half of loading a dump. Anything else (merge keys, other tags, keys that are not strings) raises _NotPlain.
    Only for text without aliases: a node met twice here would be built twice."""
    import yaml

    scalar, mapping, sequence = yaml.ScalarNode, yaml.MappingNode, yaml.SequenceNode
    constructors, text, as_map, as_list = loader.yaml_constructors, _YAML + "str", _YAML + "map", _YAML + "seq"

    def build(node):
        tag, kind = node.tag, node.__class__
        if kind is scalar:
            if tag == text:
                return node.value
            if tag in _PLAIN_SCALARS:
                return constructors[tag](loader, node)
        elif kind is mapping and tag == as_map:
            found = {}
            for key, value in node.value:
                if key.tag != text or key.__class__ is not scalar:
                    raise _NotPlain
                found[key.value] = build(value)
            return found
        elif kind is sequence and tag == as_list:
            return [build(item) for item in node.value]
        raise _NotPlain

    return build(node)


def _yaml_documents(text: str) -> list:
    """yaml.load_all(text) with the C loader when there is one, plain documents built by `_plain_data`."""
    loader = strict_loader()(text)
    documents = []
    try:
        while loader.check_node():
            node = loader.get_node()
            try:
                documents.append(_plain_data(loader, node) if "*" not in text else loader.construct_document(node))
            except _NotPlain:
                documents.append(loader.construct_document(node))
    finally:
        loader.dispose()
    return documents


def _load_yaml(text: str, origin: str) -> list:
    import yaml

    _check_nesting(text, origin)
    try:
        documents = _yaml_documents(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ClusterUnavailable(f"{origin}: not valid YAML{where}: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ClusterUnavailable(f"{origin}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if "*" in text:
        _check_expansion(documents, len(text) + ALIAS_SLACK)
    return documents


def parse_cluster_text(text: str, origin: str) -> Snapshot:
    with gc_paused():
        return _parse_cluster_text(text, origin)


def _parse_cluster_text(text: str, origin: str) -> Snapshot:
    try:
        if text.lstrip().startswith(("{", "[")):
            try:
                documents = [_load_json(text)]
            except json.JSONDecodeError as exc:
                raise ClusterUnavailable(f"{origin}: not valid JSON at line {exc.lineno}, column {exc.colno}: "
                                         f"{exc.msg}") from None
            except ValueError:  # int() refuses more than sys.get_int_max_str_digits() digits
                raise ClusterUnavailable(f"{origin}: a number with more digits than any field of a kubectl dump "
                                         f"(over {sys.get_int_max_str_digits()}): refused") from None
        else:
            documents = _load_yaml(text, origin)
    except RecursionError:
        raise ClusterUnavailable(f"{origin}: nested too deeply to be a kubectl dump") from None
    return _snapshot(documents, origin)


def _snapshot(documents: list, origin: str) -> Snapshot:
    objects = [obj for doc in documents for obj in _flatten(doc)]
    del documents  # the objects are all that is kept
    snapshot = snapshot_from_objects(objects, origin)
    if not (snapshot.services or snapshot.endpoint_slices or snapshot.nodes):
        raise ClusterUnavailable(f"{origin}: no Service, EndpointSlice or Node in it "
                                 "(expected `kubectl get services,endpointslices,nodes -A -o json`)")
    return snapshot


def max_bytes() -> int:
    """The size bound, read when a file is (a bad KIPVS_MAX_CLUSTER_FILE_BYTES is one line, not a traceback)."""
    if MAX_BYTES is not None:
        return MAX_BYTES
    text = os.environ.get("KIPVS_MAX_CLUSTER_FILE_BYTES", "").strip()
    if not text:
        return DEFAULT_MAX_BYTES
    if not (text.isascii() and text.isdigit() and len(text) <= 15 and int(text) > 0):
        raise ConfigError(f"KIPVS_MAX_CLUSTER_FILE_BYTES {text[:40]!r}: expected a number of bytes, e.g. 2147483648")
    return int(text)


def _read_bytes(path: str, origin: str) -> bytes:
    """Stdin (`-`, a pipe is fine) or a regular file named by `path`: never a FIFO or device by name,
    which could block or never end (kipvs.bounded_read)."""
    limit = max_bytes()
    too_large = f"cluster file {origin} is larger than {limit} bytes: refused " \
                "(KIPVS_MAX_CLUSTER_FILE_BYTES raises the limit)"
    try:
        if path == "-":
            if sys.stdin is None or sys.stdin.closed:
                raise ClusterUnavailable("cannot read cluster file stdin: it is closed")
            data = read_chunks(getattr(sys.stdin, "buffer", sys.stdin).read, limit)
        else:
            data = read_regular(path, limit)
    except NotReadable as exc:
        hint = " (a pipe: pass -f - and feed it on stdin)" if "FIFO" in str(exc) else ""
        raise ClusterUnavailable(too_large if str(exc).startswith("larger") else
                                 f"cannot read cluster file {origin}: {exc}{hint}") from None
    except OSError as exc:
        raise ClusterUnavailable(f"cannot read cluster file {origin}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeError) as exc:  # a closed or text-only stream
        raise ClusterUnavailable(f"cannot read cluster file {origin}: {exc}") from None
    if len(data) > limit:
        raise ClusterUnavailable(too_large)
    return data


def _decode(data: bytes, origin: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ClusterUnavailable(f"{origin}: not UTF-8 text (byte {exc.start}): is it a kubectl dump?") from None


def _fast_list(data: bytes, origin: str) -> Snapshot | None:
    """A JSON List read by kipvs.sources.fast_json (msgspec, only the fields kipvs reads), or None when
    it is not sure to give what the json path gives (or msgspec is not installed)."""
    if not _JSON_OBJECT(data):
        return None
    from kipvs.sources.fast_json import load_list

    with gc_paused():
        document = load_list(data)
        return None if document is None else _snapshot([document], origin)


def read_cluster_file(path: str) -> Snapshot:
    """A JSON List by the fast decoder when it is sure to give what the json path gives; anything else (and
    every error) as text."""
    origin = "stdin" if path == "-" else path
    data = _read_bytes(path, origin)
    snapshot = _fast_list(data, origin)
    if snapshot is not None:
        return snapshot
    text = _decode(data, origin)
    del data  # the bytes are not kept while the text is parsed
    if "\x00" in text:
        raise ClusterUnavailable(f"{origin}: binary data, not a kubectl dump")
    return parse_cluster_text(text, origin)
