"""Issue 8 item 13: protected secrets, none for forks, masking that a terminal cannot undo, and
secret build args kept out of image history.

What a terminal shows is checked with pyte, a VT terminal emulator independent of kapal's masker:
a secret counts as shown when it appears on a row of the emulated screen.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import string
import urllib.parse
from pathlib import Path

import pyte
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pipeline
from runner.engine.recorder import JobStatus
from runner.errors import SecretsError
from runner.images.reference import Reference
from runner.images.store import ImageStore, namespaced
from runner.job_images import StoreImageProvider, embedded_builder
from runner.masking import LineMasker, SecretMasker, encoded_forms
from runner.owners import local_owner
from runner.secrets import (
    PipelineAccess,
    Secret,
    load_secrets,
    parse_secrets_file,
    ref_matches,
    secrets_for,
)
from tests.e2e.conftest import kapal
from tests.security.pipelines import backend_fixture, run_pipeline  # noqa: F401
from tests.support.runtime_leftovers import RecordingBackend

SECRET = "sup3rS3cretValue42"
URL_SECRET = "p@ss w0rd/with+plus&more"


def screen_rows(lines: list[str], columns: int = 400) -> list[str]:
    """What a terminal shows after printing `lines` (each followed by a newline)."""
    screen = pyte.Screen(columns, len(lines) + 2)
    stream = pyte.Stream(screen)
    for line in lines:
        stream.feed(line + "\r\n")
    return [row.rstrip() for row in screen.display]


def shows(secret: str, lines: list[str]) -> bool:
    """Whether a terminal printing `lines` shows `secret` on one of its rows."""
    return any(secret in row for row in screen_rows(lines))


def decodes_to(secret: str, text: str) -> bool:
    """Whether some base64 run in `text` (either alphabet, any offset) decodes to hold `secret`."""
    wanted = secret.encode()
    for run in re.findall(r"[A-Za-z0-9+/_-]{4,}", text):
        run = run.translate(str.maketrans("-_", "+/"))
        for offset in range(4):
            chunk = run[offset:]
            chunk = chunk[: len(chunk) // 4 * 4]
            try:
                if wanted in base64.b64decode(chunk):
                    return True
            except binascii.Error:
                continue
    return False


# -- which secrets a pipeline gets ---------------------------------------------------------

SECRETS = {"OPEN": Secret("open-value-1"), "DEPLOY": Secret("deploy-value-2", protected=True)}


@pytest.mark.parametrize(
    ("access", "expected"),
    [
        (PipelineAccess(ref="main"), {"OPEN", "DEPLOY"}),
        (PipelineAccess(ref="feature"), {"OPEN"}),
        (PipelineAccess(ref="release/1.2", protected_branches=("release/*",)), {"OPEN", "DEPLOY"}),
        (PipelineAccess(ref="v1.0", is_tag=True), {"OPEN"}),
        (PipelineAccess(ref="v1.0", is_tag=True, protected_tags=("v*",)), {"OPEN", "DEPLOY"}),
        # a tag named like the default branch is not the default branch
        (PipelineAccess(ref="main", is_tag=True), {"OPEN"}),
        (PipelineAccess(ref="main", from_fork=True), set()),
        (PipelineAccess(ref="feature", from_fork=True), set()),
        (PipelineAccess(ref=""), {"OPEN"}),
    ],
)
def test_protected_secrets_reach_protected_refs_only(
    access: PipelineAccess, expected: set[str]
) -> None:
    assert set(secrets_for(access, SECRETS)) == expected


def test_access_of_a_trigger() -> None:
    tag = pipeline.TriggerContext(tag="v2", branch=None, default_branch="trunk")
    assert not PipelineAccess.of_trigger(tag).protected
    assert PipelineAccess.of_trigger(tag, protected_tags=("v*",)).protected
    assert PipelineAccess.of_trigger(
        pipeline.TriggerContext(branch="trunk", default_branch="trunk")
    ).protected
    assert not PipelineAccess.of_trigger(
        pipeline.TriggerContext(branch="trunk", default_branch="trunk"), from_fork=True
    ).protected


@pytest.mark.parametrize(
    ("pattern", "ref", "matches"),
    [
        ("main", "main", True),
        ("main", "main2", False),
        ("release/*", "release/1.0", True),
        ("release/*", "release/", True),
        ("release/*", "xrelease/1", False),
        ("*-stable", "16-stable", True),
        ("*-stable", "16-stable-x", False),
        ("a*b*c", "aXbYc", True),
        ("a*b*c", "ac", False),
        ("a*a", "a", False),
        ("*", "", True),
        ("v[0-9]", "v1", False),  # only `*` is special, as in GitLab
        ("v.*", "vX", False),
    ],
)
def test_ref_patterns(pattern: str, ref: str, matches: bool) -> None:
    assert ref_matches(pattern, ref) is matches


@given(st.text("ab*/", max_size=8), st.text("ab/", max_size=12))
def test_ref_patterns_agree_with_a_regex(pattern: str, ref: str) -> None:
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    assert ref_matches(pattern, ref) is (re.fullmatch(regex, ref, re.DOTALL) is not None)


def test_the_secrets_file_marks_protected_secrets(tmp_path: Path) -> None:
    path = tmp_path / "secrets"
    path.write_text(
        "OPEN=open-value\nprotected DEPLOY=deploy-value\nexport protected KEY='k e y s'\n"
        "protected = a-secret-named-protected\n"
    )
    assert parse_secrets_file(path) == {
        "OPEN": Secret("open-value"),
        "DEPLOY": Secret("deploy-value", protected=True),
        "KEY": Secret("k e y s", protected=True),
        "protected": Secret("a-secret-named-protected"),
    }
    env = {"KAPAL_PROTECTED_SECRET_ENVP": "env-protected", "KAPAL_SECRET_ENVO": "env-open"}
    loaded = load_secrets(env, path)
    assert loaded["ENVP"] == Secret("env-protected", protected=True)
    assert loaded["ENVO"] == Secret("env-open")
    path.write_text("protected NOT A NAME=x\n")
    with pytest.raises(SecretsError, match=r"secrets:1: expected NAME=value or protected NAME"):
        parse_secrets_file(path)


# -- masking: what a terminal shows --------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "token: sup3rS3cr\033[0metValue42!",
        "sup3r\033[1;31mS3cr\033[0metV\033]0;title\007alue42",
        "sup3r\033]8;;https://example.test\033\\S3cretValue42",
        "sup3rS3crZ\033[1DetValue42",
        "sup3rS3crZ\betValue42",
        "XXXXXXXXXetValue42\rsup3rS3cr",
        "sup3rS3cr\0337QQ\0338etValue42",
        "sup3rS3crQQetValue42\033[10G\033[2P",
        "sup3rS3etValue42\033[8G\033[2@cr",
        "\033[?25lsup3rS3cretValue42\033[?25h",
    ],
)
def test_a_secret_interleaved_with_control_sequences_is_never_shown(line: str) -> None:
    assert shows(SECRET, [line])  # the attack works on a terminal...
    masked = SecretMasker([SECRET]).mask(line)
    assert not shows(SECRET, [masked]), repr(masked)  # ...not through the masker
    assert "[MASKED]" in masked or "\0338" in line  # restoring the cursor is removed instead


@pytest.mark.parametrize(
    "lines",
    [
        ["sup3rS3cr", "hello", "\033[2A\033[10GetValue42"],
        ["sup3rS3cr", "hello", "\033[2F\033[9CetValue42"],
        ["sup3rS3cr", "hello", "\033M\033M\033[9CetValue42"],
        ["\0337sup3rS3cr", "hello", "\0338\033[9CetValue42"],
        ["sup3rS3cr", "\033[1;10HetValue42"],
        # tab stops cleared, and one set where the secret continues
        ["sup3rS3cr\033[3g\033HZZZZ\r\tetValue42"],
    ],
)
def test_a_secret_assembled_across_rows_is_never_shown(lines: list[str]) -> None:
    assert shows(SECRET, lines)
    masker = LineMasker(SecretMasker([SECRET]))
    out = [shown for line in lines for shown in masker.push(line)] + masker.flush()
    assert not shows(SECRET, out), out


JUMPS = st.one_of(
    st.builds("\033[{}{}".format, st.integers(0, 4), st.sampled_from("AFd")),
    st.builds("\033[{};{}H".format, st.integers(0, 4), st.integers(0, 20)),
    st.builds("\033[{}{}".format, st.integers(0, 20), st.sampled_from("CGD")),
    st.sampled_from(["\033M", "\0338", "\0337", "\r", "\033[2L", "\033[1T"]),
)


@st.composite
def rows_of_pieces(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A secret printed piece by piece on separate lines, jumping between rows and columns."""
    secret = draw(st.text(string.ascii_letters + string.digits, min_size=8, max_size=20))
    cuts = sorted(draw(st.sets(st.integers(1, len(secret) - 1), min_size=1, max_size=3)))
    lines = []
    for a, b in zip([0, *cuts], [*cuts, len(secret)], strict=True):
        lines += draw(st.lists(st.text("xyz ", max_size=5), max_size=2))
        lines.append("".join(draw(st.lists(JUMPS, max_size=3))) + secret[a:b])
    return secret, lines


@settings(max_examples=300, deadline=None)
@given(rows_of_pieces())
def test_no_jump_between_rows_shows_a_secret(case: tuple[str, list[str]]) -> None:
    secret, lines = case
    masker = LineMasker(SecretMasker([secret]))
    out = [shown for line in lines for shown in masker.push(line)] + masker.flush()
    assert not shows(secret, out), out


def test_sequences_that_print_or_move_elsewhere_go_from_jobs_with_secrets() -> None:
    masker = SecretMasker(["p@ssword-1"])
    assert masker.mask("p@s\033[1bword-1") == "p@sword-1"  # REP would print the second s
    assert masker.mask("x\033[?1049l\033[?25ly") == "x\033[?25ly"
    assert masker.mask("\033[31mred\033[0m") == "\033[31mred\033[0m"
    assert SecretMasker([]).mask("up\033[2Adown") == "up\033[2Adown"  # no secret, no change


def test_a_secret_of_wide_characters_is_masked_where_it_lands() -> None:
    secret = "ab秘密cd"  # 秘 and 密 take two columns each on a terminal
    line = "ab秘Q\033[5G密cd"  # column 5 is where Q is, after the wide 秘
    assert shows(secret, [line])
    assert not shows(secret, [SecretMasker([secret]).mask(line)])


def test_zero_width_characters_inside_a_secret_are_masked() -> None:
    masked = SecretMasker([SECRET]).mask("sup3r\u200bS3cret\u00adValue42")
    assert masked == "[MASKED]"


CONTROLS = [
    "\033[0m",
    "\033[1;31m",
    "\033[38;5;208m",
    "\033[?25l",
    "\033[?2004h",
    "\033]0;a title\007",
    "\033]8;;https://example.test/\033\\",
    "\033(B",
    "\007",
    "\0",
    "\033[K",
    "Z\b",
    "YZ\033[2D",
    "\0337QQQ\0338",
    "\033[3C\033[3D",
    "W\033[1D\033[1P",
]


# moving the cursor within the row by any number of columns (those pyte emulates)
CURSOR_MOVES = st.one_of(
    st.builds("\033[{}{}".format, st.integers(0, 30), st.sampled_from("CDGPX@a")),
    st.builds("\033[{}K".format, st.integers(0, 2)),
    st.builds("\033[1;{}H".format, st.integers(0, 30)),
    st.sampled_from(["\r", "\b", "\t", "\0337", "\0338"]),
    st.text("abcXYZ", min_size=1, max_size=4),
)


@st.composite
def interleaved(draw: st.DrawFn, controls: st.SearchStrategy[str]) -> tuple[str, str]:
    """A secret, and a line printing it with control sequences between its characters."""
    alphabet = string.ascii_letters + string.digits + "-_.!@#%^&*+=/:,[]~éßΩ"
    secret = draw(st.text(alphabet, min_size=8, max_size=24))
    cuts = sorted(draw(st.sets(st.integers(1, len(secret) - 1), min_size=1, max_size=5)))
    pieces = [secret[a:b] for a, b in zip([0, *cuts], [*cuts, len(secret)], strict=True)]
    line = draw(st.text(alphabet + " ", max_size=10))
    for index, piece in enumerate(pieces):
        if index:
            line += "".join(draw(st.lists(controls, min_size=1, max_size=3)))
        line += piece
    return secret, line + draw(st.text(alphabet + " ", max_size=10))


@settings(max_examples=300, deadline=None)
@given(interleaved(st.one_of(st.sampled_from(CONTROLS), CURSOR_MOVES)))
def test_no_split_of_control_sequences_shows_a_secret(case: tuple[str, str]) -> None:
    secret, line = case
    assert not shows(secret, [SecretMasker([secret]).mask(line)])


@settings(max_examples=200, deadline=None)
@given(interleaved(st.sampled_from(CONTROLS)), st.integers(1, 40))
def test_nor_does_folding_that_line(case: tuple[str, str], width: int) -> None:
    secret, line = case
    masker = LineMasker(SecretMasker([secret]))
    out: list[str] = []
    for start in range(0, len(line), width):
        out += masker.push(line[start : start + width])
    out += masker.flush()
    # each piece on a row of its own: read across the rows, the secret must not appear
    assert secret not in "".join(screen_rows(out))


# -- masking: encoded forms ----------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=5), st.text(min_size=4, max_size=40), st.binary(max_size=5))
def test_base64_at_any_alignment_is_masked(before: bytes, secret: str, after: bytes) -> None:
    if len(secret.strip()) < 4:
        return
    encoded = base64.b64encode(before + secret.encode("utf-8", "surrogatepass") + after).decode()
    for text in (encoded, encoded.translate(str.maketrans("+/", "-_"))):
        assert not decodes_to(secret, SecretMasker([secret]).mask(text))


def test_base64_wrapped_over_lines_is_masked() -> None:
    secret = "a-long-deploy-token-" + "x9" * 40
    encoded = base64.b64encode(b"prefix:" + secret.encode()).decode()
    lines = [encoded[i : i + 76] for i in range(0, len(encoded), 76)]
    masker = LineMasker(SecretMasker([secret]))
    out = [shown for line in lines for shown in masker.push(line)] + masker.flush()
    assert not decodes_to(secret, "".join(out).replace("[MASKED]", ""))
    assert len(out) == len(lines)


@pytest.mark.parametrize(
    "encode",
    [
        lambda s: urllib.parse.quote(s, safe=""),
        lambda s: urllib.parse.quote(s),
        lambda s: urllib.parse.quote_plus(s),
        lambda s: urllib.parse.quote(s, safe="").lower(),
    ],
)
def test_url_encoded_forms_are_masked(encode: object) -> None:
    assert callable(encode)
    text = f"https://user:{encode(URL_SECRET)}@host.test/path"
    masked = SecretMasker([URL_SECRET]).mask(text)
    assert URL_SECRET not in urllib.parse.unquote_plus(masked)
    assert masked.startswith("https://user:[MASKED]")


def test_encoded_forms_leave_a_secret_that_needs_no_encoding_alone() -> None:
    forms = encoded_forms("abcdefgh")
    assert "abcdefgh" not in forms and "YWJjZGVmZ2" in forms
    assert SecretMasker(["abcdefgh"]).mask("plain words stay") == "plain words stay"


# -- in job logs, on the real runtime ------------------------------------------------------

LOG_PIPELINE = """
talks:
  image: busybox:latest
  script:
    - printf 'interleaved=sup3rS3cr\\033[0metValue42\\n'
    - printf 'overwritten=sup3rS3crZ\\bet\\033[1;31mValue42\\033[0m\\n'
    - printf 'osc=sup3r\\033]0;t\\007S3cretValue42\\n'
    - printf '%s' "$TOKEN" | base64
    - printf 'x%s' "$TOKEN" | base64
    - printf 'xy%s' "$TOKEN" | base64
    - printf '%s\\n' "$TOKEN" | base64 | tr '+/' '-_'
    - echo "url=$URL_FORM"
    - echo "done"
"""


def test_job_logs_never_show_a_secret_in_any_form(
    backend: RecordingBackend, image_store: ImageStore, busybox_image: str, tmp_path: Path
) -> None:
    run = run_pipeline(
        LOG_PIPELINE,
        tmp_path / "project",
        provider=StoreImageProvider(image_store, owner="repo:secrets"),
        backend=backend,
        secrets={"TOKEN": SECRET, "URL_SECRET": URL_SECRET},
        # the job prints the URL-encoded form it was given
        variables=(("URL_FORM", urllib.parse.quote(URL_SECRET, safe="")),),
    )
    log = run.log("talks")
    assert run.status("talks") == JobStatus.SUCCESS, (run.reason("talks"), log)
    assert "done" in log
    output = [line for line in log if not line.startswith("$ ")]
    # the control sequences reached the log: without masking, a terminal would show the secret
    assert any("\033[0m" in line for line in output)
    assert not shows(SECRET, log)
    assert not decodes_to(SECRET, "\n".join(output))
    assert all(URL_SECRET not in urllib.parse.unquote_plus(line) for line in log)
    assert sum("[MASKED]" in line for line in output) >= 8


# -- secret build args, on the real builder ------------------------------------------------

DOCKERFILE = """FROM busybox:latest
ARG TOKEN
ARG COPIED=$TOKEN
ARG PLAIN
RUN test "$TOKEN" = "$COPIED" && test -n "$TOKEN" && echo "built with $PLAIN"
"""


def test_secret_build_args_stay_out_of_the_image(
    backend: RecordingBackend,
    image_store: ImageStore,
    busybox_image: str,
    kapal_env: dict[str, str],
    tmp_path: Path,
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "Dockerfile").write_text(DOCKERFILE)
    build = (
        "image-build:\n  build:\n    context: .\n    tags: [secret-args:1]\n"
        "    build_args: {TOKEN: $TOKEN, PLAIN: visible-arg}\n"
    )
    owner = f"repo:secret-args-{tmp_path.name}"
    provider = StoreImageProvider(
        image_store,
        embedded_builder(backend, tmp_path / "build-cache"),
        owner=owner,
        secrets=[SECRET],
    )
    run = run_pipeline(
        build, project, provider=provider, backend=backend, secrets={"TOKEN": SECRET}
    )
    log = run.log("image-build")
    assert run.status("image-build") == JobStatus.SUCCESS, (run.reason("image-build"), log)
    assert "built with visible-arg" in log  # the RUN step had the build args

    name = namespaced(owner, Reference.parse("secret-args:1")).familiar
    done = kapal("image", "inspect", name, env=kapal_env)
    assert done.returncode == 0, done.stderr
    inspected = json.loads(done.stdout)
    history = [entry["created_by"] for entry in inspected["History"]]
    assert any("|1 PLAIN=visible-arg " in entry for entry in history), history
    assert SECRET not in done.stdout
    image = image_store.for_owner(owner).resolve("secret-args:1")
    assert SECRET.encode() not in image_store.blobs.read_bytes(image.config_digest, "config")


def test_kapal_run_delivers_a_protected_secret_to_the_default_branch_only(
    kapal_env: dict[str, str], busybox_image: str, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / ".kapal.yml").write_text(
        "show:\n  image: busybox:latest\n  script:\n"
        '    - echo "deploy=${DEPLOY:-withheld} open=${OPEN:-withheld}"\n'
    )
    secrets = tmp_path / "secrets"
    secrets.write_text("OPEN=open-value-1\nprotected DEPLOY=deploy-value-2\n")
    done = kapal(
        "run", str(project), "--secrets-file", str(secrets), "--branch", "feature", env=kapal_env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "deploy=withheld open=[MASKED]" in done.stdout
    done = kapal(
        "run", str(project), "--secrets-file", str(secrets), "--branch", "main", env=kapal_env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "deploy=[MASKED] open=[MASKED]" in done.stdout
    assert "deploy-value-2" not in done.stdout


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(alphabet=st.characters(codec="utf-8"), max_size=8),
            st.from_regex(r"\x1b\[[0-9;?]{0,8}[ -/]?[@-~]", fullmatch=True),
            st.from_regex(r"\x1b[\]PX^_][^\x07]{0,6}(\x07|\x1b\\)?", fullmatch=True),
            st.sampled_from([*CONTROLS, "sup3rS3cret", "Value42", "\x9b", "\x1b"]),
        ),
        max_size=12,
    ).map("".join),
    st.integers(1, 20),
)
def test_any_output_goes_through_the_masker(text: str, width: int) -> None:
    """Fuzz: whatever a job prints, the masker answers (no error) with one line per line."""
    masker = SecretMasker(["sup3rS3cretValue42", "\033[1m-in-a-secret"])
    assert isinstance(masker.mask(text), str)
    lines = [text[i : i + width] for i in range(0, len(text), width)]
    stream = LineMasker(masker)
    out = [shown for line in lines for shown in stream.push(line)] + stream.flush()
    assert len(out) == len(lines)


def test_kapal_run_keeps_a_secret_build_arg_out_of_the_image(
    kapal_env: dict[str, str], busybox_image: str, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "Dockerfile").write_text(DOCKERFILE)
    (project / ".kapal.yml").write_text(
        "image-build:\n  build:\n    context: .\n    tags: [run-secret-args:1]\n"
        "    build_args: {TOKEN: $DEPLOY, PLAIN: visible-arg}\n"
    )
    secrets = tmp_path / "secrets"
    secrets.write_text("protected DEPLOY=deploy-value-2\n")
    done = kapal("run", str(project), "--secrets-file", str(secrets), env=kapal_env)
    assert done.returncode == 0, done.stdout + done.stderr
    name = namespaced(local_owner(project), Reference.parse("run-secret-args:1")).familiar
    inspected = kapal("image", "inspect", name, env=kapal_env)
    assert inspected.returncode == 0, inspected.stderr
    assert "|1 PLAIN=visible-arg " in inspected.stdout
    assert "deploy-value-2" not in inspected.stdout
