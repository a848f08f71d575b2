"""Report parsers: XML without entities, Cobertura coverage, dotenv files with GitLab's rules."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.artifacts import parse_junit
from runner.reports import (
    MAX_DOTENV_BYTES,
    MAX_DOTENV_VARIABLES,
    ReportError,
    parse_cobertura,
    parse_dotenv,
    parse_xml,
)

COBERTURA = b"""<?xml version="1.0" ?>
<!DOCTYPE coverage SYSTEM "http://cobertura.sourceforge.net/xml/coverage-04.dtd">
<coverage version="7.4" timestamp="1" lines-valid="200" lines-covered="167" line-rate="0.835"
          branches-covered="0" branches-valid="0" branch-rate="0" complexity="0">
  <sources><source>/builds/project</source></sources>
  <packages/>
</coverage>
"""

LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<coverage line-rate="0.5">&lol3;</coverage>
"""

EXTERNAL = b"""<?xml version="1.0"?>
<!DOCTYPE coverage [<!ENTITY host SYSTEM "file:///etc/passwd">]>
<coverage line-rate="0.5">&host;</coverage>
"""

PARAMETER = b"""<?xml version="1.0"?>
<!DOCTYPE coverage [<!ENTITY % remote SYSTEM "http://127.0.0.1:1/evil.dtd"> %remote;]>
<coverage line-rate="0.5"/>
"""


def test_cobertura_line_rate_and_lines() -> None:
    coverage = parse_cobertura(COBERTURA)
    assert coverage.line_rate == 0.835 and coverage.percent == 83.5
    assert (coverage.lines_covered, coverage.lines_valid) == (167, 200)
    assert coverage.branch_rate == 0.0


@pytest.mark.parametrize("document", [LAUGHS, EXTERNAL, PARAMETER])
def test_entity_declarations_are_refused(document: bytes) -> None:
    with pytest.raises(ReportError, match="entit"):
        parse_cobertura(document)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b"<testsuite/>", "root element is <testsuite>"),
        (b"<coverage/>", "no line-rate"),
        (b'<coverage line-rate="1.5"/>', "not between 0 and 1"),
        (b'<coverage line-rate="nan"/>', "not between 0 and 1"),
        (b'<coverage line-rate="most"/>', "not a number"),
        (b"<coverage", "not well-formed"),
        (b"", "not well-formed"),
    ],
)
def test_bad_cobertura_reports_say_what_is_wrong(document: bytes, message: str) -> None:
    with pytest.raises(ReportError, match=message):
        parse_cobertura(document)


def test_xml_keeps_elements_and_text() -> None:
    root = parse_xml(b'<a x="1"><b>text</b><b/></a>')
    assert root.tag == "a" and root.get("x") == "1"
    assert [child.text for child in root] == ["text", None]


@given(st.binary(max_size=300))
def test_xml_parser_fails_only_with_report_errors(data: bytes) -> None:
    with contextlib.suppress(ReportError):
        parse_cobertura(data)


# -- dotenv ----------------------------------------------------------------------------------


def test_dotenv_as_gitlab_reads_it() -> None:
    text = b'\xef\xbb\xbfVERSION=1.2.3\nURL = https://x.test/a=b \nQUOTED="kept as written"\n'
    assert parse_dotenv(text + b"VERSION=2\r\n") == {
        "URL": "https://x.test/a=b",
        "QUOTED": '"kept as written"',
        "VERSION": "2",  # the last value wins
    }
    assert parse_dotenv(b"EMPTY=") == {"EMPTY": ""}
    assert parse_dotenv(b"") == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"A=1\n\nB=2\n", "line 2: expected NAME=value"),
        (b"# comment\n", "line 1: expected NAME=value"),
        (b"export A=1\n", "'export A' is not a variable name"),
        (b"MY-VAR=1\n", "'MY-VAR' is not a variable name"),
        ("CAF\u00c9=1\n".encode(), "is not a variable name"),
        (b"=1\n", "'' is not a variable name"),
        (b"A=1\0\n", "NUL"),
    ],
)
def test_dotenv_lines_gitlab_refuses(text: bytes, message: str) -> None:
    with pytest.raises(ReportError, match=message):
        parse_dotenv(text)


def test_dotenv_limits() -> None:
    many = b"".join(b"V%d=1\n" % i for i in range(MAX_DOTENV_VARIABLES))
    assert len(parse_dotenv(many)) == MAX_DOTENV_VARIABLES
    with pytest.raises(ReportError, match=f"limit is {MAX_DOTENV_VARIABLES}"):
        parse_dotenv(many + b"ONE_MORE=1\n")
    big = b"A=" + b"x" * (MAX_DOTENV_BYTES - 2)
    assert len(parse_dotenv(big)["A"]) == MAX_DOTENV_BYTES - 2
    with pytest.raises(
        ReportError, match=f"larger than GitLab's limit of {MAX_DOTENV_BYTES} bytes"
    ):
        parse_dotenv(big + b"x")


@given(st.binary(max_size=400))
def test_dotenv_parser_fails_only_with_report_errors(data: bytes) -> None:
    try:
        found = parse_dotenv(data)
    except ReportError:
        return
    assert len(found) <= MAX_DOTENV_VARIABLES
    assert all(name and all(c.isascii() for c in name) for name in found)


def test_junit_reports_refuse_entities_too() -> None:
    with pytest.raises(ValueError, match="declares entities"):
        parse_junit(
            LAUGHS.replace(b"<coverage", b"<testsuite").replace(b"</coverage", b"</testsuite")
        )
    (case,) = parse_junit(b'<testsuite><testcase classname="c" name="n" time="1"/></testsuite>')
    assert (case.classname, case.name, case.status) == ("c", "n", "passed")
