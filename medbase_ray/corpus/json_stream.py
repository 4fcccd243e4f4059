"""Big JSON files read incrementally (ijson's C parser): one item at a time, so a file of
any size is read in constant memory (issue 18: Apollo's English books are one JSON file
of over a gigabyte; `json.load` held it whole in one worker).

Two shapes:
- a list (`[item, item, ...]`): an ApolloCorpus file;
- an object of lists (`{"medicalBook_zh_qa": [...], ...}`): Apollo's merged
  `mixTrain.json`, each member the list of the file whose stem is its name.

A syntax error stops the reading where it is: the items before it have been read, the
error names the file and the item after which it broke.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Literal

import ijson

Shape = Literal["list", "object"]
_WHITESPACE = b" \t\r\n\xef\xbb\xbf"  # and a UTF-8 byte-order mark


class JsonStreamError(ValueError):
    """Invalid JSON, or JSON of another shape; `index` is the item it broke at (None:
    before the first item)."""

    def __init__(self, reason: str, index: int | None = None, member: str | None = None):
        super().__init__(reason)
        self.reason, self.index, self.member = reason, index, member


def json_shape(path: str | Path) -> Shape:
    """ "list" or "object", from the first byte that is not whitespace."""
    with open(path, "rb") as f:
        head = f.read(4096).lstrip(_WHITESPACE)
    if head[:1] == b"[":
        return "list"
    if head[:1] == b"{":
        return "object"
    got = "an empty file" if not head else f"{head[:20]!r}..."
    raise JsonStreamError(
        f"expected a JSON list (or an object of lists, as mixTrain.json), got {got}"
    )


def _error(exc: Exception, index: int, member: str | None = None) -> JsonStreamError:
    """ijson's message (bytes or text, several lines) as one line naming where it broke."""
    text = exc.args[0] if exc.args else str(exc)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = str(text).strip().splitlines()[0] if str(text).strip() else type(exc).__name__
    where = f"after item {index - 1}" if index else "before the first item"
    if isinstance(exc, UnicodeDecodeError) or "UTF8" in text or "UTF-8" in text:
        return JsonStreamError(f"invalid UTF-8 {where}: {text}", index, member)
    return JsonStreamError(f"invalid JSON {where}: {text}", index, member)


def iter_list_items(f: BinaryIO) -> Iterator[Any]:
    """The items of a top-level JSON list, one at a time."""
    index = 0
    try:
        for item in ijson.items(f, "item", use_float=True):
            yield item
            index += 1
    except (ijson.JSONError, UnicodeDecodeError) as exc:
        raise _error(exc, index) from None


_STARTS = ("start_map", "start_array")
_ENDS = ("end_map", "end_array")


def iter_member_items(f: BinaryIO) -> Iterator[tuple[str, int, Any]]:
    """(member name, index in its list, item) of a top-level object of lists."""
    depth, key, index = 0, "", 0
    builder: ijson.ObjectBuilder | None = None
    try:
        for _, event, value in ijson.parse(f, use_float=True):
            if builder is not None:  # inside one item that is a list or an object
                builder.event(event, value)
                depth += event in _STARTS
                depth -= event in _ENDS
                if depth == 2:
                    yield key, index, builder.value
                    index, builder = index + 1, None
            elif depth == 2:  # between the items of one member's list
                if event == "end_array":
                    depth = 1
                elif event in _STARTS:
                    builder = ijson.ObjectBuilder()
                    builder.event(event, value)
                    depth = 3
                else:
                    yield key, index, value
                    index += 1
            elif depth == 1:
                if event == "map_key":
                    key, index = value, 0
                elif event == "start_array":
                    depth = 2
                elif event == "end_map":
                    depth = 0
                else:
                    raise JsonStreamError(
                        f"member {key!r}: expected a JSON list, got {event.replace('start_', '')}",
                        None,
                        key,
                    )
            elif event == "start_map":
                depth = 1
    except (ijson.JSONError, UnicodeDecodeError) as exc:
        raise _error(exc, index, key or None) from None
