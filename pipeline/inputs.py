"""`spec: inputs` and `$[[ inputs.NAME ]]`: GitLab's configuration inputs.

A file may start with a header document declaring its inputs, then `---` and the
configuration::

    spec:
      inputs:
        stage: {default: test}
        version: {type: number, default: 3}
        environment: {options: [staging, production]}    # no default: the input is required
    ---
    job:
      stage: $[[ inputs.stage ]]

`read_spec()` checks the header, `input_values()` settles each input from what was given (or
its default) and checks its type, options and regex, and `interpolate()` replaces every
`$[[ inputs.NAME | function ]]` block in the keys and strings of the configuration. A string
that is exactly one block takes the input's own type (a number, a boolean, a list), as in
GitLab. Functions: `truncate(offset, length)`, `posix_escape`, and `expand_vars`, which leaves
`$VARIABLE` references for the job to expand when it runs.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from pipeline.document import YList, YMap, describe, shown_value
from pipeline.errors import ExpressionError, LoadError, Location, PipelineError
from pipeline.records import record
from pipeline.regex import compile_regex

INPUT_TYPES = ("string", "number", "boolean", "array")
MAX_INPUTS = 50
MAX_FUNCTIONS = 3
_BLOCK = re.compile(r"\$\[\[(.*?)\]\]", re.DOTALL)
_ACCESS = re.compile(r"\s*inputs\.([A-Za-z0-9_-]+)\s*")
_TRUNCATE = re.compile(r"truncate\(\s*(\d+)\s*,\s*(\d+)\s*\)")


@record
class InputSpec:
    """One declared input: its type, default (None: required), options and regex."""

    name: str
    location: Location
    type: str = "string"
    default: Any = None
    has_default: bool = False
    options: tuple[Any, ...] | None = None
    regex: str | None = None


def read_spec(header: Any, filename: str) -> dict[str, InputSpec]:
    """The inputs a header document declares; LoadError listing every problem otherwise."""
    problems: list[PipelineError] = []
    where = getattr(header, "location", Location(filename, 1, 1))
    spec = header.get("spec") if isinstance(header, YMap) else None
    if not isinstance(header, YMap) or set(header) != {"spec"} or not isinstance(spec, YMap):
        raise LoadError(
            "the header document before '---' must be `spec:` with `inputs:`, found "
            + describe(header),
            where,
        )
    for key in spec:
        if key not in ("inputs", "description", "component"):
            problems.append(
                LoadError(
                    f"spec: unknown keyword {shown_value(key)}; the header takes `spec: inputs:`",
                    spec.key_at(key),
                )
            )
    declared = spec.get("inputs")
    found: dict[str, InputSpec] = {}
    if declared is not None and not isinstance(declared, YMap):
        problems.append(
            LoadError(
                f"spec: inputs: expected a mapping of input names, found {describe(declared)}",
                spec.value_at("inputs"),
            )
        )
        declared = None
    if isinstance(declared, YMap) and len(declared) > MAX_INPUTS:
        problems.append(
            LoadError(f"spec: inputs: at most {MAX_INPUTS} inputs", spec.value_at("inputs"))
        )
    if isinstance(declared, YMap):
        for name in declared:
            item = _input_spec(declared, name, problems)
            if item is not None:
                found[item.name] = item
    _raise(problems)
    return found


def _input_spec(declared: YMap, name: Any, problems: list[PipelineError]) -> InputSpec | None:
    where = declared.key_at(name)
    path = f"spec: inputs: {name}"
    if not isinstance(name, str) or not _ACCESS.fullmatch(f"inputs.{name}"):
        problems.append(
            LoadError(f"spec: inputs: {shown_value(name)} is not a valid input name", where)
        )
        return None
    body = declared[name]
    if body is None:
        return InputSpec(name, where)
    if not isinstance(body, YMap):
        problems.append(
            LoadError(
                f"{path}: expected a mapping (default:, type:, ...), found {describe(body)}", where
            )
        )
        return None
    for key in body:
        if key not in ("default", "description", "options", "regex", "type"):
            problems.append(
                LoadError(
                    f"{path}: unknown keyword {shown_value(key)} (it takes default, "
                    "description, options, regex, type)",
                    body.key_at(key),
                )
            )
    kind = body.get("type", "string")
    if kind not in INPUT_TYPES:
        problems.append(
            LoadError(
                f"{path}: type {shown_value(kind)} is not one of {', '.join(INPUT_TYPES)}",
                body.value_at("type"),
            )
        )
        return None
    options = body.get("options")
    if options is not None and not (isinstance(options, YList) and options):
        problems.append(
            LoadError(f"{path}: options: expected a non-empty list", body.value_at("options"))
        )
        options = None
    regex = body.get("regex")
    if regex is not None and (not isinstance(regex, str) or kind != "string"):
        problems.append(
            LoadError(
                f"{path}: regex: expected a pattern string, for a string input",
                body.value_at("regex"),
            )
        )
        regex = None
    spec = InputSpec(
        name,
        where,
        kind,
        body.get("default"),
        "default" in body,
        tuple(_plain(o) for o in options) if isinstance(options, YList) else None,
        regex,
    )
    if spec.has_default:
        # GitLab checks defaults like given values.
        problem = _check_value(spec, spec.default, body.value_at("default"))
        if problem is not None:
            problems.append(problem)
    return spec


def parse_given(spec: InputSpec, text: str) -> Any:
    """A value given as text (`kapal plan --input NAME=VALUE`) in the input's type."""
    if spec.type == "number":
        try:
            number = float(text)
        except ValueError:
            return text
        return int(number) if number.is_integer() and "." not in text else number
    if spec.type == "boolean":
        return {"true": True, "false": False}.get(text.lower(), text)
    if spec.type == "array":
        try:
            value = json.loads(text)
        except ValueError:
            return text
        return value
    return text


def input_values(
    specs: dict[str, InputSpec], given: dict[str, Any], where: Location
) -> dict[str, Any]:
    """Each declared input's value: given, else its default; LoadError for what does not fit."""
    problems: list[PipelineError] = []
    for name in given:
        if name not in specs:
            declared = ", ".join(sorted(specs)) or "none"
            problems.append(
                LoadError(f"unknown input {name!r}: the file declares {declared}", where)
            )
    values: dict[str, Any] = {}
    for name, spec in specs.items():
        if name in given:
            value = given[name]
            if isinstance(value, str):
                value = parse_given(spec, value)
        elif spec.has_default:
            value = _plain(spec.default)
        else:
            problems.append(
                LoadError(
                    f"input {name!r} is required (it has no default) and was not given; "
                    "pass it with `inputs:` where the file is included, or --input "
                    f"{name}=VALUE",
                    spec.location,
                )
            )
            continue
        problem = _check_value(spec, value, spec.location)
        if problem is not None:
            problems.append(problem)
        values[name] = value
    _raise(problems)
    return values


def _check_value(spec: InputSpec, value: Any, where: Location) -> PipelineError | None:
    label = f"`{spec.name}` input"
    kinds = {
        "string": (str,),
        "number": (int, float),
        "boolean": (bool,),
        "array": (list,),
    }[spec.type]
    if (isinstance(value, bool) and spec.type == "number") or not isinstance(value, kinds):
        return LoadError(f"{label}: provided value is not a {spec.type}", where)
    if spec.options is not None and _plain(value) not in spec.options:
        shown = ", ".join(str(o) for o in spec.options)
        return LoadError(
            f"{label}: `{value}` cannot be used because it is not in the list of allowed "
            f"options ({shown})",
            where,
        )
    if spec.regex is not None:
        try:
            matched = bool(compile_regex(spec.regex).search(str(value)))
        except ExpressionError as exc:
            return LoadError(f"{label}: invalid regex: {exc.message}", where)
        if not matched:
            return LoadError(
                f"{label}: provided value does not match required RegEx pattern", where
            )
    return None


def interpolate(data: Any, values: dict[str, Any], filename: str) -> Any:
    """`data` with every `$[[ inputs.NAME ]]` block replaced; LoadError for the bad blocks."""
    problems: list[PipelineError] = []
    out = _walk(data, values, problems, Location(filename, 1, 1))
    _raise(problems)
    return out


def _walk(
    value: Any, values: dict[str, Any], problems: list[PipelineError], where: Location
) -> Any:
    if isinstance(value, YMap):
        out = YMap(value.location)
        for key in value:
            new_key = (
                _text(key, values, problems, value.key_at(key)) if isinstance(key, str) else key
            )
            if isinstance(new_key, YMap | YList):
                problems.append(
                    LoadError("a key cannot be a list or mapping input", value.key_at(key))
                )
                continue
            item = _walk(value[key], values, problems, value.value_at(key))
            out.set(new_key, item, value.key_at(key), value.value_at(key))
            if item is value[key] and key in value.text_offsets and new_key == key:
                out.text_offsets[key] = value.text_offsets[key]
        return out
    if isinstance(value, YList):
        items = YList(value.location)
        for i, item in enumerate(value):
            items.add(_walk(item, values, problems, value.item_at(i)), value.item_at(i))
        return items
    if isinstance(value, str):
        return _text(value, values, problems, where)
    return value


def _text(text: str, values: dict[str, Any], problems: list[PipelineError], where: Location) -> Any:
    if "$[[" not in text:
        return text
    whole = _BLOCK.fullmatch(text)
    if whole is not None:
        result = _block(whole[1], values, problems, where)
        return _positioned(result, where)
    pieces: list[str] = []
    last = 0
    for match in _BLOCK.finditer(text):
        pieces.append(text[last : match.start()])
        result = _block(match[1], values, problems, where)
        if isinstance(result, list | dict):
            problems.append(
                LoadError(
                    f"`{match[0]}`: an array input can only be the whole value, "
                    "not part of a string",
                    where,
                )
            )
            result = ""
        pieces.append(_as_text(result))
        last = match.end()
    pieces.append(text[last:])
    return "".join(pieces)


def _block(
    body: str, values: dict[str, Any], problems: list[PipelineError], where: Location
) -> Any:
    access, *functions = body.split("|")
    match = _ACCESS.fullmatch(access)
    if match is None or match[1] not in values:
        key = access.strip().removeprefix("inputs.").split(".")[0] or access.strip()
        problems.append(LoadError(f"unknown interpolation key: `{key}`", where))
        return ""
    if len(functions) > MAX_FUNCTIONS:
        problems.append(
            LoadError(f"too many functions in interpolation block (at most {MAX_FUNCTIONS})", where)
        )
        return ""
    value = values[match[1]]
    for function in (f.strip() for f in functions):
        if function == "expand_vars":
            # `$VARIABLE` references stay in the text; the job expands them when it runs.
            continue
        if function == "posix_escape":
            value = shlex.quote(_as_text(value))
            continue
        truncate = _TRUNCATE.fullmatch(function)
        if truncate is not None:
            offset, length = int(truncate[1]), int(truncate[2])
            value = _as_text(value)[offset : offset + length]
            continue
        problems.append(
            LoadError(
                f"no function matching `{function}`: GitLab has expand_vars, "
                "truncate(offset, length) and posix_escape",
                where,
            )
        )
        return ""
    return value


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def _plain(value: Any) -> Any:
    """A loaded value as plain Python data (lists and dicts, no positions)."""
    if isinstance(value, YList):
        return [_plain(v) for v in value]
    if isinstance(value, YMap):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _positioned(value: Any, where: Location) -> Any:
    """Plain data as YMap/YList placed where the interpolation block was."""
    if isinstance(value, list):
        out = YList(where)
        for item in value:
            out.add(_positioned(item, where), where)
        return out
    if isinstance(value, dict):
        mapping = YMap(where)
        for key, item in value.items():
            mapping.set(key, _positioned(item, where), where, where)
        return mapping
    return value


def _raise(problems: list[PipelineError]) -> None:
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise LoadError(
            f"{len(problems)} problems:\n" + "\n".join(str(p) for p in problems),
            problems[0].location,
            problems=problems,
        )
