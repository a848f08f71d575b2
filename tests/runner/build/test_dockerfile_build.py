"""BuildKit's Dockerfile forms, built end to end on busybox (real runc, real image store).

The parser tests show how each form is read; these show that a build does what BuildKit's does
with it: heredoc openers, `${VAR/pattern/replacement}` and trimming, `--`, quoted flag values,
the legacy LABEL form, and an escaped escape at the end of a line.
"""

from __future__ import annotations

from tests.runner.build.conftest import BuildHelper

BASE = "busybox:latest"


def test_buildkit_forms_build(builds: BuildHelper, busybox_image: str) -> None:
    dockerfile = f"""
        FROM {BASE}
        ARG WHO=world
        RUN << EOF
        echo "spaced $WHO" > /spaced.txt
        EOF
        RUN <<- EOF
        \techo "tabs stripped" > /tabs.txt
        \tEOF
        RUN <<$EOF
        echo dollar > /dollar.txt
        $EOF
        COPY <<EO"F" /quoted.txt
        kept $WHO
        EOF
        COPY <<'one two' /two.txt
        two words
        one two
        ENV V=1.2.3 IMG=registry:5000/team/app:latest
        ENV MAJOR=${{V%%.*}} MINOR=${{V%.*}} REPO=${{IMG%:*}} SLUG=${{IMG//\\//_}} \\
            FIRST=${{IMG/r*\\//x}} BRACKETS=${{IMG/[a-z]*/x}}
        LABEL org.example.legacy a legacy value
        COPY -- app.txt /dash/
        COPY --chown="1000:1000"\tapp.txt /owned.txt
        ENV C=ends\\\\
        RUN echo "$C" > /c.txt
        """
    result = builds.build(builds.context(dockerfile, {"app.txt": "app\n"}))
    files = ["/spaced.txt", "/tabs.txt", "/dollar.txt", "/quoted.txt", "/two.txt", "/c.txt"]
    code, out = builds.run(result.image, "cat", *files)
    assert code == 0, out
    assert out.splitlines() == [
        "spaced world",
        "tabs stripped",
        "dollar",
        "kept $WHO",
        "two words",
        "ends\\",
    ]
    code, out = builds.run(result.image, "stat", "-c", "%u:%g %n", "/owned.txt", "/dash/app.txt")
    assert (code, out.splitlines()) == (0, ["1000:1000 /owned.txt", "0:0 /dash/app.txt"])
    config = result.image.config["config"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["MAJOR"] == "1" and env["MINOR"] == "1.2"
    assert env["REPO"] == "registry:5000/team/app"
    assert env["SLUG"] == "registry:5000_team_app:latest"
    assert env["FIRST"] == "xapp:latest"  # the longest match, then the rest kept
    assert env["BRACKETS"] == env["IMG"]  # brackets are literal in BuildKit patterns
    assert env["C"] == "ends\\"
    assert config["Labels"] == {"org.example.legacy": "a legacy value"}
    assert any("LABEL org.example.legacy" in note for note in builds.reporter.notes)
