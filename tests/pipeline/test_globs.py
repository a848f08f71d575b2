"""`rules: changes` / `rules: exists` globs, against Ruby's File.fnmatch and GitLab's docs.

GitLab's doc/ci/yaml/index.md (`rules:changes`, `rules:exists`) says the patterns are read by
Ruby's `File.fnmatch` with `File::FNM_PATHNAME | File::FNM_DOTMATCH | File::FNM_EXTGLOB`; the cases
below come from that page and from the examples in Ruby's File.fnmatch documentation.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pipeline.errors import PipelineError, ValidationError
from pipeline.globs import (
    MAX_BRACE_ALTERNATIVES,
    MAX_EXISTS_COMPARISONS,
    compile_glob,
    matches_changes,
    matches_exists,
)

FNMATCH_CASES = [
    # Ruby docs: whole-string match.
    ("cat", "cat", True),
    ("cat", "category", False),
    # Ruby docs: `{}` with FNM_EXTGLOB.
    ("c{at,ub}s", "cats", True),
    ("c{at,ub}s", "cubs", True),
    ("c{at,ub}s", "cots", False),
    # Ruby docs: `?` is one character, `*` zero or more.
    ("c?t", "cat", True),
    ("c??t", "cat", False),
    ("c*", "cats", True),
    # Ruby docs: with FNM_PATHNAME, wildcards do not match `/`.
    ("c*t", "c/a/b/t", False),
    ("*", "dave/.profile", False),
    ("c?t", "c/t", False),
    # Ruby docs: with FNM_DOTMATCH, `*` matches a leading dot.
    ("*", ".profile", True),
    ("*/*", "dave/.profile", True),
    # Ruby docs: sets.
    ("ca[a-z]", "cat", True),
    ("ca[^t]", "cat", False),
    ("ca[!t]", "cab", True),
    ("[a-z]", "/", False),
    # Ruby docs: backslash escapes the next metacharacter.
    ("\\?", "?", True),
    ("\\?", "a", False),
    ("\\*", "*", True),
    ("\\{a,b}", "{a,b}", True),
    ("\\{a,b}", "a", False),
    # Ruby docs: `**/` with FNM_PATHNAME matches directories recursively, dot ones with
    # FNM_DOTMATCH.
    ("**/foo", "a/b/c/foo", True),
    ("**/foo", "/a/b/c/foo", True),
    ("**/foo", "foo", True),
    ("**/foo", "a/.b/c/foo", True),
    ("**/foo", "a/b/c/foox", False),
    # Ruby: `**` not followed by `/` is a `*`.
    ("**.rb", "main.rb", True),
    ("**.rb", "lib/song.rb", False),
    ("lib/**", "lib/a", True),
    ("lib/**", "lib/a/b", False),
    ("lib/**/*.rb", "lib/a.rb", True),
    ("lib/**/*.rb", "lib/a/b/c.rb", True),
    ("**/b/**/*", "c/a/b/c/t", True),
    ("a/**/**/b", "a/x/y/b", True),
    # Case matters (no FNM_CASEFOLD).
    ("Dockerfile", "dockerfile", False),
    # Found by the Ruby comparison below: a trailing backslash is dropped, `\/` is a `/`, and
    # a bracket expression may hold a `/` (it still never matches the separator).
    ("\\", "", True),
    ("a\\", "a", True),
    ("a\\/b", "a/b", True),
    # only a literal `**/` recurses: before an escaped slash `**` is a plain `*`
    ("**\\/**", "", False),
    ("**\\/**", "a", False),
    ("**\\/**", "a/b", True),
    ("a/**\\/b", "a/x/b", True),
    ("a/**\\/b", "a/x/y/b", False),
    ("[a/**/b]*", "a[x", True),
    ("\\a[a/**/b[!]", "ab", True),
    ("[.-0]", "/", False),
    ("[\\]", "\\", False),
    # A `{` never closed, or an unclosed `[`, matches nothing; a lone `}` is literal.
    ("{a", "{a", False),
    ("{a", "a", False),
    ("a{b}c{", "abc{", False),
    ("a}", "a}", True),
    ("{a}}", "a}", True),
    ("{a\\,b}", "a,b", True),
    ("{}", "", True),
    ("[a", "[a", False),
    ("x[]", "x]", False),
    ("[!]", "x", True),
    # Nested braces and empty alternatives.
    ("a/{b,c/{d,e}}/f", "a/c/e/f", True),
    ("a/{b,c/{d,e}}/f", "a/c/f", False),
    ("file{,.bak}", "file", True),
    ("file{,.bak}", "file.bak", True),
    # Escapes and ranges inside a set.
    ("[\\]]", "]", True),
    ("[a\\-z]", "-", True),
    ("[a\\-z]", "b", False),
    ("[a-]", "-", True),
    ("[z-a]", "m", False),
    # Regex metacharacters in a glob are plain characters.
    ("a+b(c).txt", "a+b(c).txt", True),
    ("a.txt", "abtxt", False),
]


@pytest.mark.parametrize(("pattern", "path", "expected"), FNMATCH_CASES)
def test_fnmatch_semantics(pattern: str, path: str, expected: bool) -> None:
    """Each case mirrors `File.fnmatch?(pattern, path, PATHNAME | DOTMATCH | EXTGLOB)`."""
    assert compile_glob(pattern).matches(path) is expected


def test_changes_docs_example() -> None:
    """GitLab docs (`rules:changes`): `Dockerfile`, `docker/scripts/**/*`, `dockerfiles/**/*`,
    `more_scripts/*.{rb,py,sh}`, `"**/*.json"`; any matching changed file makes it true."""
    patterns = [
        "Dockerfile",
        "docker/scripts/**/*",
        "dockerfiles/**/*",
        "more_scripts/*.{rb,py,sh}",
        "**/*.json",
    ]
    assert matches_changes(patterns, ["README.md", "Dockerfile"])
    assert matches_changes(patterns, ["docker/scripts/build/run.sh"])
    assert matches_changes(patterns, ["docker/scripts/run.sh"])
    assert matches_changes(patterns, ["more_scripts/deploy.py"])
    assert not matches_changes(patterns, ["more_scripts/deploy.js"])
    assert not matches_changes(patterns, ["more_scripts/sub/deploy.py"])
    assert matches_changes(patterns, ["package.json"])
    assert matches_changes(patterns, ["web/config/app.json"])
    assert not matches_changes(patterns, ["docs/index.md", "src/app.py"])


def test_changes_job_rules_example() -> None:
    """GitLab docs "Complex rules": `docker/scripts/**/*` covers any file under the directory."""
    assert matches_changes(["docker/scripts/**/*"], ["docker/scripts/a/b/c.sh"])
    assert not matches_changes(["docker/scripts/**/*"], ["docker/other.sh"])


def test_changes_everything_pattern() -> None:
    """GitLab docs "Skip jobs if the branch is empty": `'**/*'` matches any changed file, so
    an empty change list is false."""
    assert matches_changes(["**/*"], ["a"])
    assert matches_changes(["**/*"], ["deep/ly/nested/.file"])
    assert not matches_changes(["**/*"], [])


def test_changes_without_a_change_list_is_true() -> None:
    """GitLab docs (`rules:changes`): with no Git push to compare (tags, schedules, web and API
    pipelines) `changes` always evaluates to true; kapal passes None for "no list"."""
    assert matches_changes(["src/**/*"], None)
    assert matches_changes([], None)


def test_no_patterns_match_nothing() -> None:
    """An empty pattern list matches no path."""
    assert not matches_changes([], ["a"])
    assert not matches_exists([], ["a"])


def test_exists_docs_example() -> None:
    """GitLab docs (`rules:exists`): `exists: [Dockerfile]` runs when a Dockerfile is in the
    repository; globs such as `**/*.gemspec` search the whole project."""
    files = ["Dockerfile", "app/main.py", "gems/a/b/tool.gemspec", ".gitlab-ci.yml"]
    assert matches_exists(["Dockerfile"], files)
    assert not matches_exists(["docker/Dockerfile"], files)
    assert matches_exists(["**/*.gemspec"], files)
    assert matches_exists(["*.yml"], files)
    assert not matches_exists(["*.py"], files)
    assert matches_exists(["app/*.py", "nothing"], files)


def test_variables_in_patterns_are_expanded_when_defined() -> None:
    """GitLab's Changes and Exists clauses expand the paths with ExpandVariables.expand_existing:
    defined variables are replaced, the others left as written."""
    variables = {"SERVICE": "api", "DIR": "docs"}
    assert matches_changes(["$SERVICE/**/*"], ["api/main.go"], variables=variables)
    assert matches_changes(["${DIR}/*.md"], ["docs/a.md"], variables=variables)
    assert not matches_changes(["$SERVICE/**/*"], ["web/main.go"], variables=variables)
    assert matches_changes(["$UNDEFINED/x"], ["$UNDEFINED/x"], variables=variables)
    assert matches_exists(["$SERVICE/go.mod"], ["api/go.mod"], variables=variables)
    assert not matches_exists(["$SERVICE/go.mod"], ["api/go.mod"])


def test_exists_exact_and_ending_patterns() -> None:
    """GitLab's Exists clause: a pattern without wildcards is an exact path, `**/*.ext` is
    answered by the file name's ending; both give the same answers fnmatch would."""
    files = ["Dockerfile", "lib/deep/x.tar.gz", ".env"]
    assert matches_exists(["Dockerfile"], files)
    assert not matches_exists(["dockerfile"], files)
    assert matches_exists(["**/*.tar.gz"], files)
    assert matches_exists([".env"], files)
    assert not matches_exists(["**/*.zip"], files)


def test_exists_stops_after_10000_comparisons() -> None:
    """GitLab's Exists clause (MAX_PATTERN_COMPARISONS = 10_000): after 10,000 comparisons
    against wildcard patterns the rule is taken as matching."""
    many = [f"src/module_{index}.py" for index in range(MAX_EXISTS_COMPARISONS + 1)]
    assert matches_exists(["src/missing_*.rs"], many)
    assert not matches_exists(["src/missing_*.rs"], many[:MAX_EXISTS_COMPARISONS])
    assert not matches_exists(["missing.rs", "**/*.rs"], many)  # exact and ending: no limit


def test_brace_explosion_is_a_pipeline_error() -> None:
    """A pattern whose braces expand beyond reason is refused with a kapal error, not hung on."""
    pattern = "{a,b}" * 11  # 2048 alternatives
    assert MAX_BRACE_ALTERNATIVES < 2**11
    with pytest.raises(ValidationError, match="more than 1024 alternatives"):
        compile_glob(pattern)
    assert compile_glob("{a,b}" * 10).matches("ab" * 5)


_RUBY_FNMATCH = r"""
flags = File::FNM_PATHNAME | File::FNM_DOTMATCH | File::FNM_EXTGLOB
STDOUT.sync = true
STDIN.each_line do |line|
  pattern, path = line.chomp.split("\t", -1).map { |hex| [hex].pack("H*").force_encoding("UTF-8") }
  puts(File.fnmatch?(pattern, path, flags) ? "1" : "0")
end
"""


class RubyFnmatch:
    """A Ruby process answering File.fnmatch? with GitLab's flags, one query per line."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process

    def __call__(self, pattern: str, path: str) -> bool:
        assert self.process.stdin is not None and self.process.stdout is not None
        query = f"{pattern.encode().hex()}\t{path.encode().hex()}\n"
        self.process.stdin.write(query)
        self.process.stdin.flush()
        return self.process.stdout.readline().strip() == "1"


@pytest.fixture(scope="module")
def ruby_fnmatch() -> Iterator[RubyFnmatch]:
    """The real File.fnmatch (Debian's ruby, installed by .ci/setup)."""
    ruby = shutil.which("ruby")
    if ruby is None:
        pytest.fail("ruby is not installed: run .ci/setup (it installs Debian's ruby)")
    process = subprocess.Popen(
        [ruby, "-e", _RUBY_FNMATCH],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield RubyFnmatch(process)
    finally:
        with process:  # closes both pipes and waits for ruby to exit
            assert process.stdin is not None
            process.stdin.close()


def test_fnmatch_cases_agree_with_ruby(ruby_fnmatch: RubyFnmatch) -> None:
    """Every hand-written case above gives what Ruby itself answers."""
    for pattern, path, expected in FNMATCH_CASES:
        assert ruby_fnmatch(pattern, path) is expected, (pattern, path)


_PEER_PIECES = st.sampled_from(
    ["*", "**", "**/", "/**", "?", "/", "a", "b", ".", "..", "[a-b]", "[!a]", "[^.]", "[", "]",
     "[]", "[!]", "[]a]", "[a-]", "[/]", "[\\]]", "{a,b}", "{,a/}", "{a,{b,c}}", "{", "}", ",",
     "\\", "\\*", "-", "ab", "x", "é", "*.a", "a/**/b"]
)  # fmt: skip


@pytest.mark.slow
@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(_PEER_PIECES, max_size=10).map("".join), st.text("ab./x*-é[", max_size=10))
def test_agrees_with_ruby_on_random_globs(
    ruby_fnmatch: RubyFnmatch, pattern: str, path: str
) -> None:
    """Random patterns and paths: kapal answers exactly what Ruby's File.fnmatch answers.

    Patterns whose braces expand past kapal's bound are refused on purpose (a `ValidationError`,
    tested elsewhere): there is no answer of kapal's to compare with Ruby's.
    """
    try:
        glob = compile_glob(pattern)
    except ValidationError:
        assume(False)
        return
    assert glob.matches(path) is ruby_fnmatch(pattern, path)


_GLOB_PIECES = st.sampled_from(
    ["*", "**", "**/", "?", "/", "a", "b", ".", "[", "]", "!", "^", "-", "{", "}", ",", "\\"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_GLOB_PIECES, max_size=16).map("".join), st.text("ab./", max_size=12))
def test_any_pattern_compiles_and_answers(pattern: str, path: str) -> None:
    """Whatever the pattern, matching answers a bool (or a PipelineError for brace explosions)."""
    try:
        glob = compile_glob(pattern)
    except PipelineError:
        return
    assert isinstance(glob.matches(path), bool)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text("abc.", min_size=1, max_size=4), min_size=1, max_size=4))
def test_literal_paths_match_themselves_only(parts: list[str]) -> None:
    """A glob without metacharacters matches exactly that path."""
    path = "/".join(parts)
    assert compile_glob(path).matches(path)
    assert not compile_glob(path).matches(path + "x")
    assert not compile_glob(path).matches("x/" + path)
