"""The logmond socket protocol: framing, message shapes and error codes. No I/O.

The daemon and logmonctl both import this module, so it depends on nothing but the stdlib
and msgpack. Every message is a msgpack map with string keys:

    request  {"op": str, "id": int, ...args}
    reply    {"id": int, "ok": true, "result": {...}}
    error    {"id": int, "ok": false, "error": {"code": str, "message": str}}
    push     {"event": "snapshot" | "alert", ...fields}
"""
from __future__ import annotations

from typing import Any

import msgpack

# Bumped on any incompatible change; hello refuses a client that speaks another version.
PROTOCOL = 1

# Largest message either side accepts (1 MiB): the unpacker's buffer and per-container limit.
MAX_MESSAGE = 1 << 20
# Largest request the daemon decodes. Requests are a few dozen bytes, and decoding can take
# ~90x the wire size (1 MiB of empty maps is ~90 MB of dicts): 16 KiB bounds what one client's
# message in progress can cost to about 1.5 MB.
MAX_REQUEST = 16 << 10

# The id of an error not tied to a request (busy, hello timeout, unparsable input).
NO_ID = 0

# Error codes: the only values of error.code a client ever sees.
BAD_REQUEST = "bad_request"
UNKNOWN_OP = "unknown_op"
PROTOCOL_ERROR = "protocol"
HELLO_REQUIRED = "hello_required"
TOO_LARGE = "too_large"
PERMISSION = "permission"
BUSY = "busy"
INTERNAL = "internal"
ERROR_CODES = frozenset({BAD_REQUEST, UNKNOWN_OP, PROTOCOL_ERROR, HELLO_REQUIRED, TOO_LARGE,
                         PERMISSION, BUSY, INTERNAL})

# Push event names.
EVENT_SNAPSHOT = "snapshot"
EVENT_ALERT = "alert"

Message = dict[str, Any]


class ApiError(Exception):
    """A failure a client may see: a code from ERROR_CODES and a human message, never a traceback."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message


def encode(obj: Message) -> bytes:
    """One frame: msgpack needs no length prefix, so frames are simply concatenated."""
    return msgpack.packb(obj, use_bin_type=True)


def new_unpacker(first_buffer: int | None = None) -> msgpack.Unpacker:
    """A streaming decoder whose buffer limit refuses an oversized array or map header up front
    (a declared string is only checked once complete: the server also puts a deadline on each
    message). `first_buffer` bytes are reserved at first (msgpack's default reserves the whole
    limit); the buffer grows as a message needs."""
    return msgpack.Unpacker(raw=False, strict_map_key=True, max_buffer_size=MAX_MESSAGE,
                            read_size=first_buffer or MAX_MESSAGE)


def unpack_error_code(exc: Exception) -> str:
    """Tell an oversized message from garbage; msgpack reports declared lengths as ValueError."""
    if isinstance(exc, msgpack.BufferFull) or "exceeds max_" in str(exc):
        return TOO_LARGE
    return BAD_REQUEST


def request(op: str, id: int, **args: Any) -> Message:
    return {**args, "op": op, "id": id}


def reply(id: int, result: dict[str, Any]) -> Message:
    return {"id": id, "ok": True, "result": result}


def error(id: int, code: str, message: str) -> Message:
    return {"id": id, "ok": False, "error": {"code": code, "message": message}}


def push(event: str, **fields: Any) -> Message:
    return {**fields, "event": event}


def request_id(obj: object) -> int:
    """The id to echo in an error about obj: its own if well-typed, else NO_ID."""
    if isinstance(obj, dict):
        rid = obj.get("id")
        if isinstance(rid, int) and not isinstance(rid, bool):
            return rid
    return NO_ID


def parse_request(obj: object) -> tuple[str, int, dict[str, Any]]:
    """Split a decoded request into (op, id, args); raise ApiError(BAD_REQUEST) if ill-formed."""
    if not isinstance(obj, dict):
        raise ApiError(BAD_REQUEST, f"a request must be a map, not {type(obj).__name__}")
    rid = obj.get("id")
    if not isinstance(rid, int) or isinstance(rid, bool):
        raise ApiError(BAD_REQUEST, "a request needs an integer 'id'")
    op = obj.get("op")
    if not isinstance(op, str):
        raise ApiError(BAD_REQUEST, "a request needs a string 'op'")
    args = {k: v for k, v in obj.items() if k not in ("op", "id")}
    return op, rid, args


def parse_reply(obj: object) -> tuple[int, bool, Any]:
    """Split a decoded reply into (id, ok, result-or-(code, message)); ValueError if ill-formed."""
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), int) or not isinstance(obj.get("ok"), bool):
        raise ValueError(f"not a reply: {obj!r:.200}")
    if obj["ok"]:
        result = obj.get("result")
        if not isinstance(result, dict):
            raise ValueError("reply without a result map")
        return obj["id"], True, result
    err = obj.get("error")
    if not isinstance(err, dict) or not isinstance(err.get("code"), str) or not isinstance(err.get("message"), str):
        raise ValueError("error reply without code and message")
    return obj["id"], False, (err["code"], err["message"])
