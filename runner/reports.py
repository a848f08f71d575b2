"""Job reports read on the host: XML parsed without entities, Cobertura coverage, dotenv files.

Every report is written by the job, so by whoever wrote the pipeline: the XML parser refuses
entity declarations (no "billion laughs", no external entity reaching the host's files or
network), as defusedxml does; sizes are bounded before anything is parsed; dotenv files follow
GitLab's rules and limits.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from xml.parsers import expat

from pipeline.records import record

MAX_XML_BYTES = 30 * 1024 * 1024  # a report larger than this is not read
# GitLab's default limits for `artifacts: reports: dotenv` (the `dotenv_size` and
# `dotenv_variables` application limits of a self-managed instance; gitlab.com allows 50+
# variables): the file's size and how many variables it holds; a variable name's length
MAX_DOTENV_BYTES = 5 * 1024
MAX_DOTENV_VARIABLES = 20
MAX_DOTENV_NAME = 255
_DOTENV_NAME = re.compile(r"[A-Za-z0-9_]+")


class ReportError(ValueError):
    """A report is not what its type says (bad XML, a forbidden construct, a bad dotenv line)."""


def parse_xml(data: bytes | str) -> ElementTree.Element:
    """The root element of an XML document, refusing any entity declaration (in the document or
    in its DTD) and external entity reference; raises `ReportError` with what is wrong."""
    if len(data) > MAX_XML_BYTES:
        raise ReportError(f"larger than {MAX_XML_BYTES // (1024 * 1024)} MB")
    builder = ElementTree.TreeBuilder()
    parser = expat.ParserCreate()

    def refuse(*_: object) -> None:
        raise ReportError("declares entities, which kapal refuses (they can expand without end)")

    def refuse_external(*_: object) -> int:
        raise ReportError("references an external entity, which kapal refuses")

    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse_external
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(data, True)
        return builder.close()
    except expat.ExpatError as exc:
        raise ReportError(f"not well-formed XML: {exc}") from None
    except AssertionError:  # TreeBuilder: no root element
        raise ReportError("not well-formed XML: no element") from None


@record
class Coverage:
    """The figures of a Cobertura report: line rate (0 to 1), lines covered and valid."""

    line_rate: float
    lines_covered: int | None = None
    lines_valid: int | None = None
    branch_rate: float | None = None

    @property
    def percent(self) -> float:
        """The line coverage in percent, as GitLab shows it."""
        return round(self.line_rate * 100, 2)


def parse_cobertura(data: bytes | str) -> Coverage:
    """The coverage figure of a Cobertura XML report (its root's `line-rate`).

    Raises `ReportError` when the text is not a Cobertura report.
    """
    root = parse_xml(data)
    if root.tag != "coverage":
        raise ReportError(f"not a Cobertura report: its root element is <{root.tag}>")
    line_rate = _rate(root.get("line-rate"), "line-rate")
    if line_rate is None:
        raise ReportError("not a Cobertura report: <coverage> has no line-rate")
    return Coverage(
        line_rate=line_rate,
        lines_covered=_count(root.get("lines-covered")),
        lines_valid=_count(root.get("lines-valid")),
        branch_rate=_rate(root.get("branch-rate"), "branch-rate"),
    )


def _rate(text: str | None, name: str) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ReportError(f"{name} {text[:40]!r} is not a number") from None
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise ReportError(f"{name} {text[:40]!r} is not between 0 and 1")
    return value


def _count(text: str | None) -> int | None:
    if text is None or not text.strip().isdigit():
        return None
    return int(text)


def parse_dotenv(data: bytes) -> dict[str, str]:
    """The variables of a dotenv report, read as GitLab reads them.

    Every line is `NAME=value` (split at the first `=`, both sides stripped of blanks; quotes
    are kept as written; no comments, blank lines, `export` or multi-line values); names are
    ASCII letters, digits and `_`; a name given twice keeps its last value; at most
    `MAX_DOTENV_BYTES` bytes and `MAX_DOTENV_VARIABLES` variables (GitLab's default limits).
    Raises `ReportError` naming the line.
    """
    if len(data) > MAX_DOTENV_BYTES:
        raise ReportError(f"is larger than GitLab's limit of {MAX_DOTENV_BYTES} bytes")
    text = data.decode("utf-8", errors="replace").removeprefix("\ufeff")
    found: dict[str, str] = {}
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the file's last newline
    for number, line in enumerate(lines, 1):
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep:
            raise ReportError(f"line {number}: expected NAME=value, found {line[:40]!r}")
        if not _DOTENV_NAME.fullmatch(name) or len(name) > MAX_DOTENV_NAME:
            raise ReportError(
                f"line {number}: {name[:40]!r} is not a variable name (ASCII letters, digits "
                "and _ only)"
            )
        if "\0" in value:
            raise ReportError(f"line {number}: the value of {name} holds a NUL character")
        found.pop(name, None)
        found[name] = value.strip()
    if len(found) > MAX_DOTENV_VARIABLES:
        raise ReportError(f"holds {len(found)} variables; GitLab's limit is {MAX_DOTENV_VARIABLES}")
    return found
