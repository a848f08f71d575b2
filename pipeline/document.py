"""Loading pipeline files into plain values that remember where each came from.

`load(path)` parses YAML into `YMap` (a dict), `YList` (a list) and scalars (str, int, float,
bool, None). Each container keeps the `Location` of itself, of each key and of each value, so
every later error can name file:line:col even after `include`/`extends` moved values around.
Anchors, aliases and merge keys (`<<`) are resolved while loading; recursive aliases and
alias bombs are rejected. GitLab's `!reference [job, keyword]` tag becomes a `Reference`,
replaced by `resolve()`.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from pipeline.errors import (
    LoadError,
    Location,
    PipelineError,
    PipelineWarning,
)
from pipeline.records import record

MAX_NODES = 200_000
MAX_FILE_BYTES = 4 * 1024 * 1024
PIPELINE_FILE_NAMES = (".kapal.yml", ".gitlab-ci.yml")

_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"
_SCALAR_TAGS = {
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    _STR_TAG,
    "tag:yaml.org,2002:timestamp",
    "tag:yaml.org,2002:value",
    _MERGE_TAG,
}
# Plain scalars PyYAML would turn into dates, or resolves to YAML 1.1's `=` and `<<` tags, are
# text for GitLab.
_TEXT_TAGS = {"tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value", _MERGE_TAG}

# Where `parse_yaml` puts the warnings of the files it reads (set by `collect_warnings`).
_WARNINGS: contextvars.ContextVar[list[PipelineError] | None] = contextvars.ContextVar(
    "pipeline_load_warnings", default=None
)


# The inputs given for the file being parsed (`load(..., inputs=...)`); included files get none.
_INPUTS: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "pipeline_inputs", default=None
)


@contextlib.contextmanager
def given_inputs(values: dict[str, Any] | None) -> Iterator[None]:
    """Parse the files read inside the `with` block with these `spec: inputs` values.

    For `include: {local: x.yml, inputs: {...}}`: the include reader wraps its read of x.yml.
    """
    token = _INPUTS.set(values)
    try:
        yield
    finally:
        _INPUTS.reset(token)


@contextlib.contextmanager
def collect_warnings() -> Iterator[list[PipelineError]]:
    """Gather the warnings (duplicate keys) of every file parsed inside the `with` block."""
    found: list[PipelineError] = []
    token = _WARNINGS.set(found)
    try:
        yield found
    finally:
        _WARNINGS.reset(token)


class YMap(dict[Any, Any]):
    """A YAML mapping: a dict that also knows where it, its keys and its values are."""

    def __init__(self, location: Location) -> None:
        super().__init__()
        self.location = location
        self.key_locations: dict[Any, Location] = {}
        self.value_locations: dict[Any, Location] = {}
        # For one-line scalars whose text sits verbatim in the file: how many columns after the
        # value's position the text starts (1 past an opening quote), to point inside it.
        self.text_offsets: dict[Any, int] = {}

    def set(self, key: Any, value: Any, key_location: Location, value_location: Location) -> None:
        """Set `key` to `value`, remembering both positions."""
        self[key] = value
        self.key_locations[key] = key_location
        self.value_locations[key] = value_location

    def key_at(self, key: Any) -> Location:
        """Where `key` is written (the mapping's own location when unknown)."""
        return self.key_locations.get(key, self.location)

    def value_at(self, key: Any) -> Location:
        """Where the value of `key` is written (the key's location when unknown)."""
        return self.value_locations.get(key, self.key_at(key))

    def copy_entry(self, source: YMap, key: Any) -> None:
        """Copy `key` from `source` with its positions."""
        self.set(key, source[key], source.key_at(key), source.value_at(key))
        if key in source.text_offsets:
            self.text_offsets[key] = source.text_offsets[key]
        else:
            self.text_offsets.pop(key, None)

    def text_at(self, key: Any, column: int) -> Location:
        """Where the 1-based `column` of the string value of `key` is, when it can be known."""
        where = self.value_at(key)
        offset = self.text_offsets.get(key)
        if offset is None or column < 1:
            return where
        return Location(where.file, where.line, where.column + offset + column - 1, where.keyword)

    def shallow_copy(self) -> YMap:
        """A new YMap with the same entries and positions."""
        out = YMap(self.location)
        for key in self:
            out.copy_entry(self, key)
        return out


class YList(list[Any]):
    """A YAML sequence: a list that also knows where it and each item are."""

    def __init__(self, location: Location) -> None:
        super().__init__()
        self.location = location
        self.item_locations: list[Location] = []

    def add(self, value: Any, location: Location) -> None:
        """Append `value`, remembering its position."""
        self.append(value)
        self.item_locations.append(location)

    def item_at(self, index: int) -> Location:
        """Where item `index` is written (the list's own location when unknown)."""
        if 0 <= index < len(self.item_locations):
            return self.item_locations[index]
        return self.location


@record
class Reference:
    """GitLab's `!reference [job, keyword, ...]`: a value to copy from elsewhere in the file."""

    path: tuple[str, ...]
    location: Location


@dataclass
class Document:
    """A loaded pipeline file: its top-level mapping, where it lives, and what resolve() did."""

    path: str
    root_dir: str
    data: YMap
    resolved: bool = False
    included_files: tuple[str, ...] = field(default_factory=tuple)
    warnings: tuple[PipelineError, ...] = field(default_factory=tuple)


def find_pipeline_file(directory: str | Path) -> Path:
    """The pipeline file of a project: `.kapal.yml`, else `.gitlab-ci.yml`; LoadError if none."""
    base = Path(directory)
    for name in PIPELINE_FILE_NAMES:
        candidate = base / name
        if candidate.is_file():
            return candidate
    raise LoadError(
        f"no pipeline file in {base}: create .kapal.yml (or .gitlab-ci.yml)",
        Location(str(base)),
    )


def read_text(path: Path, shown: str) -> str:
    """Read a pipeline file as UTF-8 text; LoadError with an actionable message otherwise."""
    try:
        # Read at most one byte past the limit: /dev/zero or a huge file must not fill memory.
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except ValueError:  # a NUL byte in the path
        raise LoadError(
            f"cannot read {shown!r}: the path contains a NUL byte", Location(shown)
        ) from None
    except FileNotFoundError:
        raise LoadError(f"file not found: {shown}", Location(shown)) from None
    except IsADirectoryError:
        raise LoadError(f"{shown} is a directory, not a pipeline file", Location(shown)) from None
    except OSError as exc:
        raise LoadError(f"cannot read {shown}: {exc.strerror}", Location(shown)) from None
    if len(raw) > MAX_FILE_BYTES:
        raise LoadError(
            f"{shown} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB; "
            "a pipeline file that big is a mistake",
            Location(shown),
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LoadError(
            f"{shown} is not UTF-8 text (byte {exc.start}); save it as UTF-8", Location(shown)
        ) from None


def load(
    path: str | Path,
    *,
    root_dir: str | Path | None = None,
    inputs: dict[str, Any] | None = None,
) -> Document:
    """Load a pipeline file (or the pipeline file of a directory) without resolving it.

    `inputs` are values for the file's `spec: inputs` (text is read in each input's type).
    """
    try:
        with given_inputs(inputs):
            return _load(Path(path), root_dir)
    except ValueError as exc:  # a path with a NUL byte, say
        raise LoadError(f"cannot read {str(path)!r}: {exc}", Location(repr(str(path)))) from None


def _load(path: Path, root_dir: str | Path | None) -> Document:
    target = Path(path)
    try:
        is_dir = target.is_dir()
    except OSError:  # e.g. ENAMETOOLONG: read_text below reports it as a LoadError
        is_dir = False
    if is_dir:
        target = find_pipeline_file(target)
    shown = str(target) if is_dir else str(path)
    text = read_text(target, shown)
    root = Path(root_dir) if root_dir is not None else target.resolve().parent
    return _document(text, shown, root)


def _document(text: str, filename: str, root_dir: str | Path) -> Document:
    """The Document of a main file's text, with the warnings found while parsing it."""
    with collect_warnings() as warnings:
        data = parse_yaml(text, filename)
    return Document(
        path=filename,
        root_dir=str(root_dir),
        data=as_top_level(data, filename),
        warnings=tuple(warnings),
    )


def loads(
    text: str,
    filename: str = ".kapal.yml",
    root_dir: str | Path = ".",
    *,
    inputs: dict[str, Any] | None = None,
) -> Document:
    """Load a pipeline from text (for tests and tools); `filename` is used in messages."""
    with given_inputs(inputs):
        return _document(text, filename, root_dir)


def as_top_level(data: Any, filename: str) -> YMap:
    """Check that a parsed file is a mapping (an empty file is an empty mapping)."""
    if data is None:
        return YMap(Location(filename, 1, 1))
    if not isinstance(data, YMap):
        where = getattr(data, "location", Location(filename, 1, 1))
        raise LoadError(
            "the top level of a pipeline file must be a mapping of keywords and jobs "
            f"(found {describe(data)})",
            where,
        )
    return data


def describe(value: Any) -> str:
    """A short human name for the type of a loaded value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, YMap | dict):
        return "a mapping"
    if isinstance(value, YList | list):
        return "a list"
    if isinstance(value, Reference):
        return "a !reference"
    return type(value).__name__


def shown_value(value: Any) -> str:
    """A loaded value as a message quotes it, in YAML's words: null, true, 'text', 3."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, YMap | YList | Reference | dict | list):
        return describe(value)
    return repr(value)


def parse_yaml(text: str, filename: str) -> Any:
    """Parse one YAML document into YMap/YList/scalars with positions; LoadError on any problem."""
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(filename, mark.line + 1, mark.column + 1) if mark else Location(filename)
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.problem and exc.context and exc.context_mark is not None:
            cm = exc.context_mark
            problem += f" ({exc.context} at line {cm.line + 1}, column {cm.column + 1})"
        if "'\\t'" in problem:
            problem += "; indent with spaces, YAML does not allow tabs there"
        if problem.startswith("mapping values are not allowed"):
            problem += (
                "; a value that contains ': ' must be quoted as a whole "
                "(script: 'echo \"a: b\"'), or else this line is indented too far"
            )
        raise LoadError(f"invalid YAML: {problem}", loc) from None
    except yaml.YAMLError as exc:
        raise LoadError(f"invalid YAML: {exc}", Location(filename)) from None
    except RecursionError:
        raise LoadError("invalid YAML: nested too deeply", Location(filename)) from None
    if not nodes:
        return None
    first = nodes[0]
    loc = Location(filename, first.start_mark.line + 1, first.start_mark.column + 1)
    has_header = isinstance(first, MappingNode) and any(
        isinstance(k, ScalarNode) and k.value == "spec" for k, _ in first.value
    )
    if len(nodes) > 2 or (len(nodes) == 2 and not has_header):
        raise LoadError(
            f"a pipeline file holds one YAML document (after an optional `spec:` header), found "
            f"{len(nodes)}; remove the extra '---' lines",
            loc,
        )
    given = _INPUTS.get()
    if len(nodes) == 1:
        if given:
            raise LoadError(
                "inputs were given, but the file declares none: start it with a "
                "`spec: inputs:` header and a '---' line",
                loc,
            )
        return _build(nodes[0], filename)
    # GitLab's `spec: inputs` header, then the configuration its inputs are interpolated into.
    from pipeline.inputs import input_values, interpolate, read_spec

    specs = read_spec(_build(nodes[0], filename), filename)
    values = input_values(specs, given or {}, loc)
    return interpolate(_build(nodes[1], filename), values, filename)


def _build(node: Node, filename: str) -> Any:
    builder = _Builder(filename)
    data = builder.build(node)
    collector = _WARNINGS.get()
    if collector is not None:
        collector.extend(builder.duplicates)
    return data


def _text_offset(node: Node) -> int | None:
    """Columns from a scalar's position to its text, when the text is written verbatim."""
    if not isinstance(node, ScalarNode) or node.start_mark.line != node.end_mark.line:
        return None
    text = node.value
    if node.style is None:
        return 0
    if node.style == "'" and "'" not in text:
        return 1
    if node.style == '"' and "\\" not in text and '"' not in text:
        return 1
    return None


class _Builder:
    """Turns a composed node graph into positioned values, once per node (aliases share)."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.done: dict[int, Any] = {}
        self.sizes: dict[int, int] = {}
        self.active: set[int] = set()
        self.constructor = yaml.SafeLoader("")
        self.duplicates: list[PipelineError] = []

    def loc(self, node: Node) -> Location:
        """The 1-based position of a node in this file."""
        return Location(self.filename, node.start_mark.line + 1, node.start_mark.column + 1)

    def build(self, node: Node) -> Any:
        """Positioned values for a document's root node (size checked first)."""
        if self._size(node, 0) > MAX_NODES:
            raise LoadError(
                f"the document expands to more than {MAX_NODES} values (an alias bomb?)",
                self.loc(node),
            )
        return self._value(node, 0)

    def _size(self, node: Node, depth: int) -> int:
        # Counted with aliases expanded, so `&a [*b, *b, ...]` chains cannot blow up memory later.
        key = id(node)
        if key in self.sizes:
            return self.sizes[key]
        if key in self.active:
            raise LoadError("a YAML alias refers to itself (recursive anchor)", self.loc(node))
        if depth > 200:
            raise LoadError("the document is nested too deeply (over 200 levels)", self.loc(node))
        self.active.add(key)
        try:
            total = 1
            if isinstance(node, SequenceNode):
                for child in node.value:
                    total += self._size(child, depth + 1)
                    if total > MAX_NODES:
                        break
            elif isinstance(node, MappingNode):
                for k, v in node.value:
                    total += self._size(k, depth + 1) + self._size(v, depth + 1)
                    if total > MAX_NODES:
                        break
        finally:
            self.active.discard(key)
        self.sizes[key] = total
        return total

    def _value(self, node: Node, depth: int) -> Any:
        key = id(node)
        if key in self.done:
            return self.done[key]
        if isinstance(node, ScalarNode):
            value = self._scalar(node)
        elif isinstance(node, SequenceNode):
            value = self._sequence(node, depth)
        elif isinstance(node, MappingNode):
            value = self._mapping(node, depth)
        else:  # pragma: no cover - composer yields only these three
            raise LoadError("unexpected YAML node", self.loc(node))
        self.done[key] = value
        return value

    def _scalar(self, node: ScalarNode) -> Any:
        tag = node.tag
        if tag == "!reference":
            raise LoadError(
                "!reference takes a list like !reference [.template, script]", self.loc(node)
            )
        if tag not in _SCALAR_TAGS:
            raise LoadError(
                f"unsupported YAML tag {tag!r}: kapal reads plain YAML plus !reference",
                self.loc(node),
            )
        if tag in _TEXT_TAGS:
            return node.value
        try:
            value = self.constructor.construct_object(node, deep=True)
        except (ConstructorError, ValueError, OverflowError) as exc:
            raise LoadError(f"invalid YAML value {node.value!r}: {exc}", self.loc(node)) from None
        if isinstance(value, datetime.date):  # pragma: no cover - handled by the tag check
            return node.value
        return value

    def _sequence(self, node: SequenceNode, depth: int) -> Any:
        if node.tag == "!reference":
            parts: list[str] = []
            for child in node.value:
                if not isinstance(child, ScalarNode) or child.tag != _STR_TAG:
                    raise LoadError(
                        "!reference items must be plain names, like !reference [.setup, script]",
                        self.loc(child),
                    )
                parts.append(child.value)
            if not parts:
                raise LoadError("!reference needs at least a job name", self.loc(node))
            return Reference(tuple(parts), self.loc(node))
        if node.tag != "tag:yaml.org,2002:seq":
            raise LoadError(f"unsupported YAML tag {node.tag!r} on a list", self.loc(node))
        out = YList(self.loc(node))
        for child in node.value:
            out.add(self._value(child, depth + 1), self.loc(child))
        return out

    def _mapping(self, node: MappingNode, depth: int) -> Any:
        if node.tag != "tag:yaml.org,2002:map":
            raise LoadError(f"unsupported YAML tag {node.tag!r} on a mapping", self.loc(node))
        out = YMap(self.loc(node))
        merged: list[YMap] = []
        # YAML requires unique keys; GitLab (like PyYAML) keeps the last one, which may hide a
        # job or keyword the author believes is there: a warning, the last value kept. Keys
        # arriving through a merge key (<<) are not counted: overriding them is what merge keys
        # are for. The type is part of the identity so `1` and `true` (equal in Python) stay
        # apart.
        seen: dict[tuple[type, Any], Location] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.extend(self._merge_sources(value_node, key_node, depth))
                continue
            if not isinstance(key_node, ScalarNode):
                raise LoadError(
                    "a mapping key must be a plain name, not a list or mapping", self.loc(key_node)
                )
            key = self._scalar(key_node)
            where = self.loc(key_node)
            first = seen.get((type(key), key))
            seen[(type(key), key)] = where
            if first is not None:
                self.duplicates.append(
                    PipelineWarning(
                        f"duplicate key {key!r}: it is also written at line {first.line}, column "
                        f"{first.column}; the last one wins (as in GitLab), so the earlier value "
                        "is ignored: rename one of them or merge the two",
                        where,
                    )
                )
            value = self._value(value_node, depth + 1)
            out.set(key, value, where, self.loc(value_node))
            offset = _text_offset(value_node)
            if offset is not None:
                out.text_offsets[key] = offset
        if not merged:
            return out
        # `<<` keys: the mapping's own keys win, then earlier merge sources win over later ones.
        result = YMap(out.location)
        for source in reversed(merged):
            for key in source:
                result.copy_entry(source, key)
        for key in out:
            result.copy_entry(out, key)
        return result

    def _merge_sources(self, node: Node, key: Node, depth: int) -> list[YMap]:
        value = self._value(node, depth + 1)
        if isinstance(value, YMap):
            return [value]
        if isinstance(value, YList) and all(isinstance(item, YMap) for item in value):
            return list(value)
        raise LoadError(
            "a merge key (<<) takes a mapping or a list of mappings, like <<: *defaults",
            self.loc(key),
        )
