"""One declaration per config key: a dataclass field says which YAML key fills it, and how.

``key(kind, ...)`` makes a field whose metadata is a :class:`Key`: the YAML key
(the field's name unless told), the :class:`Kind` that reads the key's node and
writes the value back, and the few rules a key may have (a default taken from
elsewhere, a mode it belongs to, another spelling).  One generic builder,
:func:`build`, reads a YAML mapping into such a dataclass, and one renderer,
:func:`render`, writes the dataclass back as the YAML an operator would write,
so that building what was rendered gives an equal value.

Errors keep the reader's promise (``exporter.config_yaml``): unknown keys are
refused with a did-you-mean, every failure names its key path and line.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from exporter.config_yaml import Mapping, Value, join


@dataclass(frozen=True)
class Context:
    """What a kind may need besides its node: the directory relative paths start from, and the
    values built so far (a target's defaults come from ``schedule``)."""

    base_dir: Path
    built: dict[str, Any] = dataclasses.field(default_factory=dict)
    parent: Context | None = None

    def find(self, name: str) -> Any:
        """The value built under ``name`` in this section or an enclosing one."""
        context = self
        while context is not None:
            if name in context.built:
                return context.built[name]
            context = context.parent
        raise KeyError(name)


@dataclass(frozen=True)
class Kind:
    """How a key's node is read (``read(value, context)``) and its value written back as YAML data."""

    read: Callable[[Value, Context], Any]
    write: Callable[[Any], Any] = lambda value: value


def kind(read: Callable[[Value], Any], write: Callable[[Any], Any] = lambda value: value) -> Kind:
    """A kind that needs nothing but the node."""
    return Kind(lambda value, context: read(value), write)


@dataclass(frozen=True)
class Key:
    kind: Kind
    name: str | None = None  # the YAML key; dotted for a key of a sub-mapping ("detect.signatures")
    part: int | None = None  # the key's value is a tuple and this field holds this item (host:port)
    alias: tuple[str, Kind] | None = None  # another key that fills this field instead; never written
    when: tuple[str, str] | None = None  # only allowed when that field (read first) has that value
    fallback: Callable[[Context], Any] | None = None  # the value of an absent key, when not the field's default
    write_if: Callable[[Any], bool] | None = None  # written only when this holds for the whole object


def key(kind: Kind, default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING,
        repr: bool = True, **rules: Any) -> Any:
    """A dataclass field filled from a YAML key (see :class:`Key` for the ``rules``)."""
    return dataclasses.field(default=default, default_factory=default_factory, repr=repr,
                             metadata={"key": Key(kind, **rules)})


def derived(compute: Callable[[Mapping, Context], Any], default: Any = None) -> Any:
    """A field no YAML key fills: ``compute(mapping, context)`` gives it from the other keys."""
    return dataclasses.field(default=default, metadata={"derived": compute})


def section(cls: type, **rules: Any) -> Any:
    """A field holding a nested mapping read into ``cls``; absent, it is ``cls()``."""
    return key(section_kind(cls), default_factory=cls, **rules)


def section_kind(cls: type) -> Kind:
    return Kind(lambda value, context: build(cls, value.mapping(yaml_keys(cls)), context),
                lambda obj: None if obj is None else render(obj))


class Schema:
    """Optional class attributes of a config dataclass."""

    READ_FIRST: ClassVar[tuple[str, ...]] = ()  # fields read before the others (defaults and modes hang on them)
    EXCLUSIVE: ClassVar[tuple[tuple[str, ...], ...]] = ()  # groups of keys of which at most one may be given


def yaml_keys(cls: type) -> tuple[str, ...]:
    """The keys a mapping read into ``cls`` may hold, in declaration order."""
    names: list[str] = []
    for field, rule in _keyed(cls):
        for name in (_name(field, rule).split(".")[0], rule.alias[0] if rule.alias else None):
            if name and name not in names:
                names.append(name)
    return tuple(names)


def build(cls: type, mapping: Mapping, context: Context) -> Any:
    """Read ``mapping`` (already checked against ``yaml_keys(cls)``) into ``cls``."""
    context = Context(context.base_dir, {}, context)
    keyed, whole = _keyed(cls), {}
    first = getattr(cls, "READ_FIRST", ())
    for name in first:
        field, rule = next(pair for pair in keyed if pair[0].name == name)
        _read(cls, field, rule, mapping, context, whole)
    for field, rule in keyed:  # the rules that hang on more than one key, before any other value
        names = (_name(field, rule), *(rule.alias[:1] if rule.alias else ()))
        for name in names:
            if rule.when and mapping.get(name) is not None and context.built[rule.when[0]] != rule.when[1]:
                other, wanted = rule.when
                mapping.fail_at_key(name, f"only used with {other}: {wanted} "
                                          f"({join(mapping.path, other)} is {context.built[other]})")
        if rule.alias:
            mapping.exclusive(*names)
    for group in getattr(cls, "EXCLUSIVE", ()):
        mapping.exclusive(*group)
    for field, rule in keyed:
        if field.name not in context.built:
            _read(cls, field, rule, mapping, context, whole)
    values = dict(context.built)
    for field in dataclasses.fields(cls):
        if "derived" in field.metadata:
            values[field.name] = field.metadata["derived"](mapping, context)
    return cls(**values)


def render(obj: Any) -> dict[str, Any]:
    """``obj`` as the YAML data an operator would write (keys not set are left out)."""
    data: dict[str, Any] = {}
    written: dict[str, bool] = {}
    for field, rule in _keyed(type(obj)):
        name = _name(field, rule)
        if name in written or rule.write_if and not rule.write_if(obj):
            continue
        if rule.when and getattr(obj, rule.when[0]) != rule.when[1]:
            continue
        value = getattr(obj, field.name)
        if rule.part is not None:  # the key's whole tuple, from every field that holds a part of it
            value = tuple(getattr(obj, f.name) for f, r in _keyed(type(obj)) if _name(f, r) == name)
        written[name] = value == _default(field)
        text = rule.kind.write(value)
        if text is None:  # not set
            continue
        *sections, last = name.split(".")
        place = data
        for part in sections:
            place = place.setdefault(part, {})
        place[last] = _yaml_data(text)
    for group in getattr(type(obj), "EXCLUSIVE", ()):  # a default that would clash with a given key goes
        given = [name for name in group if name in data]
        if len(given) > 1:
            for name in given:
                if written[name]:
                    del data[name]
    return data


def _keyed(cls: type) -> list[tuple[dataclasses.Field, Key]]:
    return [(field, field.metadata["key"]) for field in dataclasses.fields(cls) if "key" in field.metadata]


def _name(field: dataclasses.Field, rule: Key) -> str:
    return rule.name or field.name


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def _read(cls: type, field: dataclasses.Field, rule: Key, mapping: Mapping, context: Context,
          whole: dict[str, Any]) -> None:
    """Put the field's value in ``context.built``; ``whole`` keeps the tuples of keys read in parts."""
    name = _name(field, rule)
    *sections, last = name.split(".")
    if sections:  # a key of a sub-mapping, which may hold only the keys declared under it
        prefix = sections[0] + "."
        names = [_name(other, other_rule) for other, other_rule in _keyed(cls)]
        mapping = mapping.section(sections[0], tuple(n.removeprefix(prefix) for n in names if n.startswith(prefix)))
    if rule.part is not None and name in whole:  # another part of a key already read
        context.built[field.name] = whole[name][rule.part]
        return
    value = mapping.get(last)
    default = _default(field)
    if value is not None:
        result = rule.kind.read(value, context)
    elif rule.alias and mapping.get(rule.alias[0]) is not None:
        result = rule.alias[1].read(mapping.get(rule.alias[0]), context)
    elif rule.fallback is not None:
        result = rule.fallback(context)
    elif default is not dataclasses.MISSING:
        result = default
    else:  # required: a missing key says so, a null one is read (and refused) by its kind
        result = rule.kind.read(mapping.require(last), context)
    if rule.part is not None:
        if value is None:  # the default is the field's own part
            result = tuple(_default(other) for other, other_rule in _keyed(cls) if _name(other, other_rule) == name)
        whole[name] = result
        result = result[rule.part]
    context.built[field.name] = result


def _yaml_data(value: Any) -> Any:
    """Tuples as lists, paths as text: what ``yaml.safe_dump`` writes."""
    if isinstance(value, dict):
        return {str(k): _yaml_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, frozenset, set)):
        return [_yaml_data(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
