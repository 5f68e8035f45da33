"""Reading YAML for the config: every value keeps its key path and line.

PyYAML's ``compose`` gives the node tree (each node has ``start_mark``, the
0-based line and column where it starts) without constructing Python objects,
so values are built here from the nodes themselves: plain scalars, sequences
and mappings only, no application tags, duplicate keys refused.

An alias is the anchored node itself, not a copy, so a few bytes of aliases
can stand for a tree of billions of nodes (a "billion laughs"), or for one
that contains itself.  Everything that later walks the values (the builder,
``/config``, the detector's checks) walks the tree with the aliases expanded,
so the composer counts that tree while it reads and stops at ``MAX_NODES``
nodes, ``MAX_BYTES`` of text in its values or ``MAX_DEPTH`` levels, and
refuses an alias inside its own anchor.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

T = TypeVar("T")
MAX_BYTES = 1 << 20  # a config file's size, and the text of its values with every alias expanded
MAX_NODES = 100_000  # YAML nodes (keys, values, list items) with every alias expanded
MAX_DEPTH = 64  # levels of nested lists and mappings, aliases expanded
MAX_SECONDS = 3650 * 86400  # the longest duration
CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1: never in one line of text
_TAG = "tag:yaml.org,2002:"
_KINDS = ("str", "int", "float", "bool", "null", "timestamp", "seq", "map", "merge")
_SCALARS = yaml.constructor.SafeConstructor()
_CONSTRUCT = {
    "null": lambda node: None,
    "bool": _SCALARS.construct_yaml_bool,
    "int": _SCALARS.construct_yaml_int,
    "float": _SCALARS.construct_yaml_float,
    "str": lambda node: node.value,
}


class Invalid(Exception):
    """A mistake at one place in the document (the caller adds the file name)."""

    def __init__(self, line: int | None, path: str, message: str):
        super().__init__(message)
        self.line = line
        self.path = path
        self.message = message


def compose(text: str) -> Node | None:
    """The document's node tree, or ``None`` for an empty document.

    Syntax errors become :class:`Invalid` with the parser's line and column,
    and so does a tree beyond ``MAX_NODES``, ``MAX_BYTES`` or ``MAX_DEPTH``
    once its aliases are expanded.
    """
    try:
        loader = _BoundedLoader(text)  # the reader checks the characters here
        try:
            return loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        line = mark.line + 1 if mark else None
        column = f" at column {mark.column + 1}" if mark else ""
        raise Invalid(line, "", f"invalid YAML{column}: {problem}") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise Invalid(line, "", f"invalid YAML: {exc.reason} (U+{code:04X})") from None
    except RecursionError:  # a thread with a small stack; the depth limit normally comes first
        raise Invalid(None, "", "invalid YAML: nested too deeply") from None


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader's composer, counting the tree it builds as if every alias were a copy.

    ``_shape`` holds, per finished node, its expanded node count, text length
    and height; an alias adds its anchor's, so counting costs one step per
    node written, however often aliases repeat.
    """

    def __init__(self, text: str):
        super().__init__(text)
        self._nodes = self._text = 0
        self._path: list[str | int] = []  # key path of the node being composed
        self._shape: dict[int, tuple[int, int, int]] = {}

    def compose_node(self, parent, index):
        event = self.peek_event()
        line = event.start_mark.line + 1
        step = index.value if isinstance(index, ScalarNode) else index  # a list index, a key, None for a key
        self._path.append(step)
        try:
            if isinstance(event, AliasEvent):
                node = super().compose_node(parent, index)
                if id(node) not in self._shape:
                    self._fail(line, f"the alias *{event.anchor} is inside its own anchor (a structure "
                                     "that contains itself)")
                self._count(*self._shape[id(node)], line)
                return node
            self._count(1, 0, 1, line)  # before its children, so a long list stops early
            node = super().compose_node(parent, index)
        finally:
            self._path.pop()
        if isinstance(node, ScalarNode):
            shape = (1, len(node.value), 1)
            self._count(0, len(node.value), 0, line)
        else:
            children = node.value if isinstance(node, SequenceNode) else [part for pair in node.value for part in pair]
            shapes = [self._shape[id(child)] for child in children]
            shape = (1 + sum(nodes for nodes, _, _ in shapes), sum(text for _, text, _ in shapes),
                     1 + max((height for _, _, height in shapes), default=0))
        self._shape[id(node)] = shape
        return node

    def _count(self, nodes: int, text: int, height: int, line: int) -> None:
        """Add ``nodes`` nodes holding ``text`` characters, reaching ``height`` levels below the current one."""
        self._nodes += nodes
        self._text += text
        if self._nodes > MAX_NODES:
            self._fail(line, f"the document holds more than {MAX_NODES:,} values with its aliases expanded; "
                             "a config needs far fewer")
        if self._text > MAX_BYTES:
            self._fail(line, f"the document holds more than {MAX_BYTES >> 20} MiB of text with its aliases "
                             "expanded")
        if len(self._path) - 1 + height > MAX_DEPTH:
            self._fail(line, f"nested too deeply (more than {MAX_DEPTH} levels, aliases expanded)", depth=2)

    def _fail(self, line: int, message: str, depth: int | None = None):
        path = ""
        for step in [step for step in self._path if step is not None][:depth]:
            path = join(path, step)
        raise Invalid(line, path, message)


def join(path: str, key: str | int) -> str:
    """``targets`` + 0 → ``targets[0]``; ``tor`` + ``mode`` → ``tor.mode``.  A key that is empty or
    holds a space, a quote, a bracket or an unprintable character is quoted and escaped (``tor`` +
    ``a\\nb`` → ``tor['a\\nb']``): a path is one line and names its key, whatever the key holds."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    if not key or not key.isprintable() or any(char in key for char in " []'\""):
        return f"{path}[{key!r}]"
    return f"{path}.{key}" if path else key


class Value:
    """One node of the document, read as the type the schema expects."""

    def __init__(self, node: Node, path: str):
        self.node = node
        self.path = path
        if self.kind not in _KINDS:
            self.fail(f"unsupported YAML tag {node.tag}")

    @property
    def line(self) -> int:
        return self.node.start_mark.line + 1

    def fail(self, message: str):
        raise Invalid(self.line, self.path, message)

    @property
    def kind(self) -> str:
        """The YAML type name: str, int, float, bool, null, seq, map, timestamp…"""
        tag = self.node.tag
        return tag.removeprefix(_TAG)

    def describe(self) -> str:
        names = {"seq": "a list", "map": "a mapping", "null": "nothing"}
        if self.kind in names:
            return names[self.kind]
        return f"{self.kind} {shown(repr(self.node.value))}"

    def expected(self, what: str):
        self.fail(f"expected {what}, got {self.describe()}")

    @property
    def is_null(self) -> bool:
        return self.kind == "null"

    def string(self, pattern: str | None = None, hint: str = "") -> str:
        """A non-empty scalar as written (``title: 2024`` is the string "2024")."""
        if not isinstance(self.node, ScalarNode) or self.is_null:
            self.expected("a string")
        text = self.node.value
        if not text:
            self.fail("must not be empty")
        if pattern and not re.fullmatch(pattern, text):
            self.fail(f"invalid value {text!r}{hint}")
        return text

    def choice(self, choices: tuple[str, ...], what: str = "value") -> str:
        text = self.string()
        if text not in choices:
            self.fail(f"unknown {what} {text!r}{suggest(text, choices)}")
        return text

    def boolean(self) -> bool:
        if self.kind != "bool":
            self.expected("true or false")
        return _CONSTRUCT["bool"](self.node)

    def integer(self, minimum: int | None = None, maximum: int | None = None) -> int:
        if self.kind != "int":
            self.expected("an integer")
        number = self._number()
        if minimum is not None and number < minimum or maximum is not None and number > maximum:
            if maximum is None:
                self.fail(f"must be at least {minimum}, got {shown(self.node.value)}")
            self.fail(f"must be between {minimum} and {maximum}, got {shown(self.node.value)}")
        return number

    def _number(self) -> int | float:
        """An int or float scalar; infinite, NaN or absurdly long numbers are refused, and so are
        YAML 1.1's base-60 numbers (``1:30`` is 90), which nobody means in a config."""
        if ":" in self.node.value:
            self.fail(f"{shown(self.node.value)} is a base-60 number in YAML 1.1 "
                      f"({shown(str(_CONSTRUCT[self.kind](self.node)))}); for a duration write e.g. 1m30s, "
                      "for text put it in quotes")
        try:
            number = _CONSTRUCT[self.kind](self.node)
            if math.isfinite(float(number)):
                return number
        except (ValueError, OverflowError):
            pass
        self.fail(f"must be a finite number of sensible size, got {shown(self.node.value)}")

    def _number_or_text(self) -> float | str:
        if self.kind in ("int", "float"):
            return float(self._number())
        if self.kind != "str":
            self.expected("a number or a string")
        return self.node.value

    def duration(self, minimum: float = 0.0, above: bool = False) -> float:
        """Seconds, from a number or a string like ``500ms``, ``30s``, ``1h30m``."""
        raw = self._number_or_text()
        try:
            seconds = raw if isinstance(raw, float) else parse_duration(raw)
        except ValueError as exc:
            self.fail(str(exc))
        if seconds > MAX_SECONDS:  # timers, sleeps and datetimes overflow long before float does
            self.fail(f"must be at most {format_duration(MAX_SECONDS)} (ten years), got {shown(self.node.value)}")
        if seconds < minimum or above and seconds == minimum:
            self.fail(f"must be {'more than' if above else 'at least'} {minimum:g} seconds, got {shown(self.node.value)}")
        return seconds

    def size(self, minimum: int = 0) -> int:
        """Bytes, from a number or a string like ``512KB``, ``5MiB``, ``1GB``."""
        raw = self._number_or_text()
        if isinstance(raw, float) and not raw.is_integer():
            self.fail(f"not a whole number of bytes: {shown(self.node.value)}")
        try:
            count = int(raw) if isinstance(raw, float) else parse_size(raw)
        except ValueError as exc:
            self.fail(str(exc))
        if count < minimum:
            self.fail(f"must be at least {minimum} bytes, got {shown(self.node.value)}")
        return count

    def host_port(self) -> tuple[str, int]:
        """``host:port``; an IPv6 host goes in brackets (``[::1]:9050``)."""
        text = self.string()
        match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^\s:\[\]/]+):(\d{1,5})", text)
        if not match:
            self.fail(f"expected host:port, got {text!r}")
        host = match.group(1) or match.group(3)
        port = int(match.group(2) or match.group(4))
        if not 1 <= port <= 65535:
            self.fail(f"port must be between 1 and 65535, got {port}")
        return host, port

    def file_path(self, base_dir: Path, must_exist: str | None = None) -> Path:
        """A filesystem path; relative ones are relative to ``base_dir``.

        ``must_exist`` is ``"file"`` or ``"directory"`` when the thing must be there now.
        """
        path = base_dir / self._local_path()
        if must_exist is None:
            return path
        try:
            found = path.is_file() if must_exist == "file" else path.is_dir()
            present = found or path.exists()
        except OSError as exc:  # e.g. a name too long, a directory we may not search
            self.fail(f"cannot look at {shown(str(path), 100)}: {exc.strerror or exc}")
        if not found and must_exist == "file":
            self.fail(f"not a regular file: {path}" if present else f"no such file: {path}")
        if not found:
            self.fail(f"no such directory: {path}")
        return path

    def command(self, base_dir: Path) -> str:
        """An executable: a bare name is looked up on PATH later, a path is resolved now."""
        text = self.string()
        return str(base_dir / self._local_path()) if "/" in text else text

    def _local_path(self) -> Path:
        """The value as a path, ``~`` and ``~user`` expanded."""
        text = self.string()
        if "\0" in text:
            self.fail("a path cannot contain a NUL character")
        try:
            return Path(text).expanduser()
        except RuntimeError:  # no such user, or no home directory
            user = text[1:].split("/", 1)[0]
            self.fail(f"cannot expand {shown(text)!r}: " + (f"no user {shown(user)!r}" if user else "no home directory"))

    def items(self) -> list[Value]:
        if not isinstance(self.node, SequenceNode):
            self.expected("a list")
        return [Value(item, join(self.path, index)) for index, item in enumerate(self.node.value)]

    def mapping(self, known: tuple[str, ...] | None = None) -> Mapping:
        return Mapping.parse(self, known)

    def plain(self) -> Any:
        """The value as plain Python data (lists, dicts, scalars), aliases shared."""
        return _plain(self.node, self.path, {})


def _plain(node: Node, path: str, built: dict[int, Any]) -> Any:
    if id(node) in built:
        return built[id(node)]
    value = Value(node, path)
    if isinstance(node, SequenceNode):
        built[id(node)] = result = []
        result.extend(_plain(item, join(path, index), built) for index, item in enumerate(node.value))
    elif isinstance(node, MappingNode):
        built[id(node)] = result = {}
        for key, item in value.mapping():
            result[key] = _plain(item.node, item.path, built)
    else:
        result = _CONSTRUCT.get(value.kind, lambda node: node.value)(node)
    return result


class Mapping:
    """A YAML mapping whose keys are strings, each given once and (if ``known``) expected."""

    def __init__(self, path: str, line: int, keys: dict[str, Value], values: dict[str, Value]):
        self.path = path
        self.line = line
        self._keys = keys
        self._values = values

    @classmethod
    def parse(cls, value: Value, known: tuple[str, ...] | None = None) -> Mapping:
        if not isinstance(value.node, MappingNode):
            value.expected("a mapping")
        keys: dict[str, Value] = {}
        values: dict[str, Value] = {}
        for key_node, item_node in value.node.value:
            key = Value(key_node, value.path)
            if key.kind == "merge":
                key.fail("merge keys (<<) are not supported")
            if not isinstance(key_node, ScalarNode) or key.kind != "str":
                key.expected("a string key")
            name = key_node.value
            key.path = join(value.path, name)
            if name in keys:
                key.fail(f"duplicate key {name!r} (first given at line {keys[name].line})")
            if known is not None and name not in known:
                key.fail(f"unknown key {name!r}{suggest(name, known)}")
            keys[name] = key
            values[name] = Value(item_node, key.path)
        return cls(value.path, value.line, keys, values)

    def __iter__(self) -> Iterator[tuple[str, Value]]:
        return iter(self._values.items())

    def get(self, key: str) -> Value | None:
        """The value under ``key``; an explicit ``null`` counts as not given."""
        value = self._values.get(key)
        return None if value is None or value.is_null else value

    def read(self, key: str, convert: Callable[[Value], T], default: T) -> T:
        """``convert(value)`` of a given key, else ``default``."""
        value = self.get(key)
        return default if value is None else convert(value)

    def require(self, key: str) -> Value:
        value = self._values.get(key)
        if value is None:
            raise Invalid(self.line, join(self.path, key), "required key is missing")
        return value

    def fail_at_key(self, key: str, message: str):
        """An error about the key itself (placed where the key is written)."""
        self._keys[key].fail(message)

    def section(self, key: str, known: tuple[str, ...]) -> Mapping:
        """A nested mapping; an absent or null one reads as empty."""
        value = self.get(key)
        if value is None:
            return Mapping(join(self.path, key), self.line, {}, {})
        return value.mapping(known)

    def exclusive(self, *keys: str) -> None:
        """Refuse a mapping that gives more than one of ``keys``."""
        given = [key for key in keys if self.get(key) is not None]
        if len(given) > 1:
            self.fail_at_key(given[-1], f"{' and '.join(given)} are mutually exclusive; give only one")


def regex_problem(pattern: str) -> str | None:
    """Why Python cannot compile ``pattern``, in words that do not depend on the thread or the
    stack it was compiled on (a RecursionError's own text does), or None."""
    try:
        re.compile(pattern)
    except (re.error, OverflowError) as exc:  # a{99999999999999999999}
        return str(exc)
    except RecursionError:  # 1,000 nested groups
        return "nested too deeply"
    return None


def shown(text: str, limit: int = 40) -> str:
    """``text`` cut to ``limit`` characters for an error message."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def printable(text: str) -> str:
    """``text`` with control characters and lone surrogates escaped, safe for any terminal, log or
    HTTP answer."""
    text = CONTROL_CHARACTER.sub(lambda match: f"\\x{ord(match.group()):02x}", text)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def suggest(word: str, choices) -> str:
    """``" (did you mean 'interval'?)"`` when a choice is close to ``word``, else the choices."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if not close:
        close = [choice for choice in choices if choice.lower() == word.lower()]
    return f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(choices)})"


_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(text: str) -> float:
    """Seconds in ``"90"``, ``"500ms"``, ``"30s"``, ``"5m"``, ``"1h30m"``, ``"1d"``."""
    compact = text.strip()
    parts = [(compact, "s")] if re.fullmatch(r"\d+(?:\.\d+)?", compact) else _DURATION_PART.findall(compact)
    if not parts or "".join(number + unit for number, unit in parts) not in (compact, compact + "s"):
        raise ValueError(f"invalid duration {shown(repr(text))}: use seconds or e.g. 500ms, 30s, 5m, 1h30m, 1d")
    seconds = sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)
    if not math.isfinite(seconds):
        raise ValueError(f"invalid duration {shown(repr(text))}: too large")
    return seconds


def format_duration(seconds: float) -> str:
    """The largest unit that divides ``seconds`` evenly: 600 → ``10m``, 90 → ``90s``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


_SIZE_UNITS = {"": 1, "b": 1}
_SIZE_UNITS.update({f"{prefix}b": 1000 ** power for power, prefix in enumerate("kmgt", start=1)})
_SIZE_UNITS.update({f"{prefix}ib": 1024 ** power for power, prefix in enumerate("kmgt", start=1)})


def parse_size(text: str) -> int:
    """Bytes in ``"1024"``, ``"512KB"`` (10³), ``"5MiB"`` (2²⁰), ``"1.5GB"``."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([A-Za-z]*)", text.strip())
    unit = match.group(2).lower() if match else None
    if unit not in _SIZE_UNITS:
        raise ValueError(f"invalid size {shown(repr(text))}: use bytes or e.g. 512KB, 5MiB, 1GB")
    count = float(match.group(1)) * _SIZE_UNITS[unit]
    if not math.isfinite(count):
        raise ValueError(f"invalid size {shown(repr(text))}: too large")
    if count != int(count):
        raise ValueError(f"invalid size {shown(repr(text))}: not a whole number of bytes")
    return int(count)


def format_size(count: int) -> str | int:
    """The largest unit that divides ``count`` evenly (``5242880`` → ``5MiB``), else the count."""
    for power in (4, 3, 2, 1):
        for base, unit in ((1024, "iB"), (1000, "B")):
            if count and count % base**power == 0 and count // base**power < 2**53:
                return f"{count // base**power}{'KMGT'[power - 1]}{unit}"
    return count
