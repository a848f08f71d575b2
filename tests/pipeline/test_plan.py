"""Planning: rules, only/except, workflow, parallel naming, needs DAG, variables, JSON."""

from __future__ import annotations

import hashlib
import json
import textwrap
from pathlib import Path

import pytest

from pipeline import Plan, PlanError, TriggerContext, load, loads, plan
from pipeline.plan import Job
from pipeline.predefined import environment_slug

MAIN = TriggerContext(source="push", branch="main", commit_sha="0123456789abcdef" * 2 + "01234567")


def _plan(text: str, context: TriggerContext = MAIN) -> Plan:
    return plan(loads(text), context)


def _names(result: Plan) -> list[str]:
    return [job.name for job in result.runnable_jobs()]


def test_parallel_instances_are_named_like_gitlab() -> None:
    result = _plan("test:\n  script: t\n  parallel: 3\n")
    assert _names(result) == ["test 1/3", "test 2/3", "test 3/3"]
    second = result.job("test 2/3")
    assert (second.variable("CI_NODE_INDEX"), second.variable("CI_NODE_TOTAL")) == ("2", "3")
    assert second.base_name == "test"


def test_matrix_instances_are_named_with_their_values_in_order() -> None:
    result = _plan(
        "test:\n  script: t\n  variables: {PY: job}\n  parallel:\n    matrix:\n"
        "      - PY: ['3.11', '3.12']\n        DB: [pg, mysql]\n      - PY: '3.13'\n"
    )
    assert _names(result) == [
        "test: [3.11, pg]",
        "test: [3.11, mysql]",
        "test: [3.12, pg]",
        "test: [3.12, mysql]",
        "test: [3.13]",
    ]
    job = result.job("test: [3.12, mysql]")
    assert job.variable("PY") == "3.12"  # matrix beats job variables
    assert job.variable("DB") == "mysql"


def test_needs_on_a_parallel_job_means_every_instance() -> None:
    result = _plan(
        "stages: [build, test]\nb:\n  stage: build\n  script: s\n  parallel: 2\n"
        "t:\n  script: s\n  needs: [b]\n"
    )
    t = result.job("t")
    assert t.needs is not None
    assert [n.job for n in t.needs] == ["b 1/2", "b 2/2"]
    assert t.waits_for == ("b 1/2", "b 2/2")


def test_needs_matrix_selects_instances() -> None:
    result = _plan(
        "g:\n  stage: build\n  script: s\n  parallel:\n    matrix:\n      - A: [x, y]\n"
        "r:\n  script: s\n  needs:\n    - job: g\n      parallel:\n        matrix:\n"
        "          - A: y\n"
    )
    assert result.job("r").waits_for == ("g: [y]",)


def test_needs_matrix_without_a_match_says_what_was_asked_and_what_exists() -> None:
    text = (
        "g:\n  stage: build\n  script: s\n  parallel:\n    matrix:\n"
        "      - A: [x, y]\n        B: [z]\n"
        "r:\n  script: s\n  needs:\n    - job: g\n      parallel:\n        matrix:\n"
        "          - A: y\n"
    )
    with pytest.raises(PlanError) as caught:
        _plan(text)
    assert caught.value.message == (
        "r: needs: no instance of 'g' has the matrix values asked for (A=y); "
        "its instances are g: [x, z], g: [y, z]; name every variable of its matrix (A, B)"
    )
    with pytest.raises(PlanError) as caught:
        _plan(text.replace("          - A: y\n", "          - A: w\n            B: z\n"))
    assert caught.value.message == (
        "r: needs: no instance of 'g' has the matrix values asked for (A=w, B=z); "
        "its instances are g: [x, z], g: [y, z]"
    )
    assert _plan(text + "            B: z\n").job("r").waits_for == ("g: [y, z]",)
    plain = text.replace("  parallel:\n    matrix:\n      - A: [x, y]\n        B: [z]\n", "")
    with pytest.raises(PlanError, match=r"\(A=y\), and it has no `parallel: matrix`$"):
        _plan(plain)


def test_stage_order_jobs_wait_for_all_earlier_running_jobs() -> None:
    result = _plan(
        "stages: [a, b, c]\nj1:\n  stage: a\n  script: s\nj2:\n  stage: b\n  script: s\n"
        "j3:\n  stage: c\n  script: s\nfree:\n  stage: c\n  script: s\n  needs: []\n"
    )
    assert result.job("j3").waits_for == ("j1", "j2")
    assert result.job("j3").needs is None
    assert result.job("free").needs == ()
    assert result.job("free").waits_for == ()
    assert set(result.edges()) == {("j1", "j2"), ("j1", "j3"), ("j2", "j3")}


def test_needs_cycle_in_same_stage_is_named() -> None:
    with pytest.raises(PlanError, match="needs cycle: a → b → c → a"):
        _plan(
            "a:\n  script: s\n  needs: [b]\nb:\n  script: s\n  needs: [c]\n"
            "c:\n  script: s\n  needs: [a]\n"
        )


def test_need_of_a_skipped_job_is_an_error_unless_optional() -> None:
    text = (
        "b:\n  stage: build\n  script: s\n  rules:\n    - if: $CI_COMMIT_TAG\n"
        "t:\n  script: s\n  needs: [{job: b, optional: OPT}]\n"
    )
    with pytest.raises(PlanError, match="needs 'b', which is not in this pipeline"):
        _plan(text.replace("OPT", "false"))
    result = _plan(text.replace("OPT", "true"))
    assert result.job("t").needs == ()


def test_workflow_rules_decide_whether_there_is_a_pipeline() -> None:
    text = (
        "variables: {WHERE: file}\nworkflow:\n  rules:\n"
        "    - if: $CI_COMMIT_BRANCH == 'main'\n      variables: {WHERE: workflow}\n"
        "    - if: $CI_COMMIT_TAG\n      when: never\n"
        "job:\n  script: s\n"
    )
    main = _plan(text)
    assert main.created
    assert main.job("job").variable("WHERE") == "workflow"
    tag = _plan(text, TriggerContext(tag="v1"))
    assert not tag.created
    assert (
        tag.skip_reason is not None and "rule 2" in tag.skip_reason and "never" in tag.skip_reason
    )
    assert not tag.runnable_jobs()
    other = _plan(text, TriggerContext(branch="feature"))
    assert other.skip_reason == (
        "workflow: rules: no rule matched (rule 1: if $CI_COMMIT_BRANCH == 'main' is false; "
        "rule 2: if $CI_COMMIT_TAG is false)"
    )


def test_rules_first_match_wins_with_when_allow_failure_and_variables() -> None:
    text = (
        "job:\n  script: s\n  variables: {V: job}\n  rules:\n"
        "    - if: $CI_COMMIT_BRANCH == 'main'\n      when: manual\n      allow_failure: true\n"
        "      variables: {V: rule}\n"
        "    - if: $CI_COMMIT_BRANCH =~ /^release-/\n      when: never\n"
        "    - if: $CI_COMMIT_BRANCH\n"
    )
    main = _plan(text).job("job")
    assert (main.when, main.manual, main.allow_failure, main.variable("V")) == (
        "manual",
        True,
        True,
        "rule",
    )
    assert main.variable("CI_JOB_MANUAL") == "true"
    release = _plan(text, TriggerContext(branch="release-1")).job("job")
    assert not release.runs
    assert release.skip_reason is not None
    assert release.skip_reason.startswith("rules: rule 2 (if: $CI_COMMIT_BRANCH =~ /^release-/)")
    feature = _plan(text, TriggerContext(branch="feature")).job("job")
    assert (feature.when, feature.allow_failure, feature.variable("V")) == (
        "on_success",
        False,
        "job",
    )
    tag = _plan(text, TriggerContext(tag="v1")).job("job")
    assert tag.skip_reason == (
        "rules: no rule matched (rule 1: if $CI_COMMIT_BRANCH == 'main' is false; "
        "rule 2: if $CI_COMMIT_BRANCH =~ /^release-/ is false; "
        "rule 3: if $CI_COMMIT_BRANCH is false)"
    )


def test_manual_job_level_may_fail_but_manual_from_a_rule_may_not() -> None:
    plain = _plan("job:\n  script: s\n  when: manual\n").job("job")
    assert plain.manual and plain.allow_failure
    ruled = _plan("job:\n  script: s\n  rules:\n    - when: manual\n").job("job")
    assert ruled.manual and not ruled.allow_failure
    # Job-level `when: manual` with rules: the rule without `when` keeps the job's, optional.
    both = _plan("job:\n  script: s\n  when: manual\n  rules:\n    - if: $CI\n").job("job")
    assert both.manual and both.allow_failure
    forced = _plan(
        "job:\n  script: s\n  when: manual\n  allow_failure: false\n  rules:\n    - if: $CI\n"
    ).job("job")
    assert forced.manual and not forced.allow_failure


def test_rules_changes_and_exists() -> None:
    text = (
        "docs:\n  script: s\n  rules:\n    - changes: ['docs/**/*']\n"
        "docker:\n  script: s\n  rules:\n    - exists: [Dockerfile]\n"
    )
    ctx = TriggerContext(
        branch="main", changed_files=("src/app.py",), project_files=("Dockerfile", "src/app.py")
    )
    result = _plan(text, ctx)
    assert _names(result) == ["docker"]
    assert result.job("docs").skip_reason == (
        "rules: no rule matched (rule 1: changes ['docs/**/*'] match no changed file)"
    )
    unknown_changes = _plan(text, TriggerContext(branch="main", changed_files=None))
    assert "docs" in _names(unknown_changes)  # GitLab: no change list means changes match
    assert unknown_changes.job("docs").run_reason == (
        "rules: rule 1 (changes: ['docs/**/*']) matched "
        "(the changed files are unknown, so `changes` counts as matched)"
    )
    known = _plan(text, TriggerContext(branch="main", changed_files=("docs/a/b.md",)))
    assert known.job("docs").run_reason == "rules: rule 1 (changes: ['docs/**/*']) matched"
    only = _plan("docs:\n  script: s\n  only:\n    changes: ['docs/*']\n")
    assert only.job("docs").run_reason is not None
    assert only.job("docs").run_reason.endswith(
        "changes ['docs/*'] match (the changed files are unknown, so `changes` counts as matched)"
    )


def test_no_rule_matched_names_what_was_tried_up_to_three_rules() -> None:
    text = (
        "job:\n  script: s\n  rules:\n"
        "    - if: $A\n    - changes: [docs/*]\n    - exists: [nope]\n"
        "    - if: $B\n      changes: [x]\n    - if: $C\n"
    )
    ctx = TriggerContext(branch="main", changed_files=("src/a.py",), project_files=("src/a.py",))
    result = _plan(text, ctx)
    assert result.job("job").skip_reason == (
        "rules: no rule matched (rule 1: if $A is false; "
        "rule 2: changes ['docs/*'] match no changed file; "
        "rule 3: exists ['nope'] match no file; … 2 more)"
    )
    # a rule whose `if` holds but whose `changes` do not names the failing condition
    pair = "job:\n  script: s\n  rules:\n    - if: $B\n      changes: [x]\n"
    both = _plan(pair, TriggerContext(branch="main", changed_files=(), variables=(("B", "1"),)))
    assert both.job("job").skip_reason == (
        "rules: no rule matched (rule 1: changes ['x'] match no changed file)"
    )


def test_rules_changes_and_exists_expand_variables() -> None:
    """GitLab replaces a defined `$VAR` in `changes`/`exists` paths with its value."""
    text = (
        "variables:\n  SERVICE: api\n"
        "api:\n  script: s\n  rules:\n    - changes: ['$SERVICE/**/*']\n"
        "img:\n  script: s\n  rules:\n    - exists: ['$SERVICE/Dockerfile']\n"
    )
    ctx = TriggerContext(
        branch="main", changed_files=("api/app.py",), project_files=("api/Dockerfile",)
    )
    assert _names(_plan(text, ctx)) == ["api", "img"]
    other = TriggerContext(branch="main", changed_files=("web/app.py",), project_files=())
    assert _names(_plan(text, other)) == []


def test_only_except_refs_keywords_and_regex() -> None:
    text = (
        "branches-only:\n  script: s\n  only: [branches]\n"
        "tags-only:\n  script: s\n  only: [tags]\n"
        "release:\n  script: s\n  only: ['/^release-.*$/']\n"
        "not-main:\n  script: s\n  except: [main]\n"
        "nightly:\n  script: s\n  only: [schedules]\n"
        "mr:\n  script: s\n  only: [merge_requests]\n"
        "plain:\n  script: s\n"
    )
    assert _names(_plan(text)) == ["branches-only", "plain"]
    assert _names(_plan(text, TriggerContext(branch="release-2"))) == [
        "branches-only",
        "release",
        "not-main",
        "plain",
    ]
    assert _names(_plan(text, TriggerContext(tag="v1"))) == ["tags-only", "not-main", "plain"]
    scheduled = _plan(text, TriggerContext(source="schedule", branch="main"))
    assert "nightly" in _names(scheduled)
    mr = _plan(text, TriggerContext(source="merge_request_event", branch="feature"))
    # Jobs without rules/only do not run in merge request pipelines, as in GitLab.
    assert _names(mr) == ["mr"]
    plain = mr.job("plain")
    assert plain.skip_reason == (
        "jobs without rules/only run for branches and tags, and this is a merge request "
        "pipeline (from branch 'feature'); add `rules:` to run it here"
    )
    assert mr.job("not-main").skip_reason is not None


def test_only_refs_take_one_character_and_empty_regexes_like_gitlab() -> None:
    """Refs use GitLab's `/body/flags` shape, not the `if:` lexer's: `/a/` is a regex."""
    text = (
        "a:\n  script: s\n  only: ['/a/']\n"
        "every:\n  script: s\n  only: ['//']\n"
        "ci:\n  script: s\n  only: ['/^FEAT\\/x$/i']\n"
        "literal:\n  script: s\n  only: ['/nope/x']\n"
    )
    assert _names(_plan(text, TriggerContext(branch="dev"))) == ["every"]
    assert _names(_plan(text, TriggerContext(branch="data"))) == ["a", "every"]
    assert _names(_plan(text, TriggerContext(branch="feat/x"))) == ["a", "every", "ci"]
    assert _names(_plan(text, TriggerContext(branch="/nope/x"))) == ["every", "literal"]
    skipped = _plan(text, TriggerContext(branch="dev")).job("a").skip_reason
    assert skipped == "only: refs ['/a/'] do not match branch 'dev'"
    # patterns are shown as written: no doubled backslashes, quotes kept readable
    ci_skipped = _plan(text, TriggerContext(branch="dev")).job("ci").skip_reason
    assert ci_skipped == "only: refs ['/^FEAT\\/x$/i'] do not match branch 'dev'"
    quoted = "job:\n  script: s\n  rules:\n    - changes: [\"it's/*\", 'a\\b']\n"
    assert _plan(quoted, TriggerContext(branch="m", changed_files=())).job("job").skip_reason == (
        "rules: no rule matched (rule 1: changes [\"it's/*\", 'a\\b'] match no changed file)"
    )


def test_ref_names_and_patterns_never_match_a_merge_request_pipeline() -> None:
    """GitLab compares names and patterns only in branch and tag pipelines."""
    text = (
        "by-name:\n  script: s\n  only: [feature]\n"
        "by-regex:\n  script: s\n  only: ['/^feat/']\n"
        "by-source:\n  script: s\n  only: [merge_requests]\n"
    )
    mr = TriggerContext(source="merge_request_event", branch="feature")
    assert _names(_plan(text, mr)) == ["by-source"]
    assert _plan(text, mr).job("by-name").skip_reason == (
        "only: refs ['feature'] do not match a merge request pipeline (from branch 'feature')"
    )
    assert _names(_plan(text, TriggerContext(branch="feature"))) == ["by-name", "by-regex"]


def test_only_variables_and_except_reason() -> None:
    text = (
        "deploy:\n  script: s\n  only:\n    refs: [main]\n    variables: ['$DEPLOY == \"yes\"']\n"
    )
    assert _names(_plan(text)) == []
    skipped = _plan(text).job("deploy").skip_reason
    assert skipped is not None and skipped.startswith("only: variables")
    with_var = TriggerContext(branch="main", variables=(("DEPLOY", "yes"),))
    assert _names(_plan(text, with_var)) == ["deploy"]


def test_except_excludes_when_any_of_its_keys_matches() -> None:
    text = (
        "job:\n  script: s\n  except:\n    refs: [main]\n"
        "    variables: ['$CI_COMMIT_MESSAGE =~ /skip-ci/']\n"
    )
    assert _names(_plan(text, TriggerContext(branch="dev"))) == ["job"]
    skipped = _plan(text, TriggerContext(branch="dev", commit_message="x skip-ci")).job("job")
    assert skipped.skip_reason == "except: variables: $CI_COMMIT_MESSAGE =~ /skip-ci/ is true"
    assert _plan(text).job("job").skip_reason == "except: refs ['main'] match branch 'main'"


def test_refs_reasons_name_the_pipeline_source_when_refs_name_sources() -> None:
    """`schedules` matches the source, not the branch: the reason must not say "branch 'main'"."""
    text = (
        "nightly:\n  script: s\n  only: [schedules]\nbuild:\n  script: s\n  except: [schedules]\n"
    )
    scheduled = _plan(text, TriggerContext(source="schedule", branch="main"))
    assert scheduled.job("nightly").run_reason == (
        "only: refs ['schedules'] match a schedule pipeline for branch 'main'"
    )
    assert scheduled.job("build").skip_reason == (
        "except: refs ['schedules'] match a schedule pipeline for branch 'main'"
    )
    pushed = _plan(text, TriggerContext(branch="main"))
    assert pushed.job("nightly").skip_reason == (
        "only: refs ['schedules'] do not match a push pipeline for branch 'main'"
    )
    assert pushed.job("build").run_reason == (
        "except: nothing in it matches a push pipeline for branch 'main'"
    )


def test_variable_precedence_and_sources() -> None:
    text = (
        "variables: {A: global, B: global, C: global, D: global}\n"
        "job:\n  script: s\n  variables: {B: job, C: job, D: job}\n"
        "  rules:\n    - variables: {C: rule, D: rule}\n"
    )
    ctx = TriggerContext(branch="main", variables=(("D", "trigger"),))
    job = _plan(text, ctx).job("job")
    assert job.variables_dict()["A"] == "global"
    assert job.variables_dict()["B"] == "job"
    assert job.variables_dict()["C"] == "rule"
    assert job.variables_dict()["D"] == "trigger"
    sources = {(v.name, v.source) for v in job.variables}
    assert {("A", "pipeline"), ("B", "job"), ("C", "rule"), ("D", "trigger")} <= sources
    assert ("CI_JOB_NAME", "predefined") in sources


def test_predefined_variables_follow_gitlab() -> None:
    job = _plan("job:\n  stage: test\n  script: s\n").job("job")
    v = job.variables_dict()
    assert v["CI"] == "true"
    assert v["CI_COMMIT_SHA"] == MAIN.commit_sha
    assert v["CI_COMMIT_SHORT_SHA"] == MAIN.commit_sha[:8]
    assert v["CI_COMMIT_BRANCH"] == "main"
    assert v["CI_COMMIT_REF_NAME"] == "main"
    assert "CI_COMMIT_TAG" not in v
    assert (v["CI_JOB_NAME"], v["CI_JOB_STAGE"], v["CI_PIPELINE_SOURCE"]) == ("job", "test", "push")
    tag = _plan("job:\n  script: s\n", TriggerContext(tag="v1.2/rc")).job("job").variables_dict()
    assert tag["CI_COMMIT_TAG"] == "v1.2/rc"
    assert tag["CI_COMMIT_REF_SLUG"] == "v1-2-rc"
    assert "CI_COMMIT_BRANCH" not in tag
    mr_ctx = TriggerContext(
        source="merge_request_event",
        branch="feat",
        variables=(("CI_MERGE_REQUEST_IID", "7"),),
    )
    mr = _plan("job:\n  script: s\n  rules:\n    - if: $CI_MERGE_REQUEST_IID\n", mr_ctx)
    mr_vars = mr.job("job").variables_dict()
    assert "CI_COMMIT_BRANCH" not in mr_vars
    assert mr_vars["CI_MERGE_REQUEST_IID"] == "7"


def test_environment_variables() -> None:
    job = _plan(
        "deploy:\n  stage: deploy\n  script: s\n  environment:\n"
        "    name: review/$CI_COMMIT_REF_SLUG\n    url: https://x.test\n"
    ).job("deploy")
    # GitLab expands the name and url when it creates the job; the slug of a name that slugging
    # changes ('/') gets a hash suffix.
    assert job.environment is not None and job.environment.name == "review/main"
    assert job.variable("CI_ENVIRONMENT_NAME") == "review/main"
    assert job.variable("CI_ENVIRONMENT_URL") == "https://x.test"
    assert job.variable("CI_ENVIRONMENT_SLUG") == environment_slug("review/main")


def test_environment_name_and_url_expand_job_matrix_and_unknown_variables() -> None:
    """Job and matrix variables count; an unknown variable expands to nothing, as in GitLab."""
    result = _plan(
        "review:\n  stage: deploy\n  script: s\n  variables: {APP: web}\n"
        "  parallel: {matrix: [{REGION: [eu]}]}\n  environment:\n"
        "    name: $APP/${REGION}$NOPE\n    url: https://$APP.$REGION.test/$CI_JOB_NAME_SLUG\n"
    )
    env = result.job("review: [eu]").environment
    assert env is not None and env.name == "web/eu"
    assert env.url == "https://web.eu.test/review-eu"


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("production", "production"),
        ("staging-1234567890123456", "staging-1234567890123456"),
        ("foo-", "foo"),
    ],
)
def test_environment_slug_unchanged_names_keep_their_form(name: str, slug: str) -> None:
    assert environment_slug(name) == slug


@pytest.mark.parametrize(
    ("name", "prefix"),
    [
        ("PRODUCTION", "production-"),
        ("review/1-foo", "review-1-foo-"),
        ("1-foo", "env-1-foo-"),
        ("staging-12345678901234567", "staging-123456789-"),
        ("9-staging-123456789012345", "env-9-staging-123-"),
        ("staging-1234567890123456-", "staging-123456789-"),
    ],
)
def test_environment_slug_of_a_changed_name_is_shortened_with_a_hash(
    name: str, prefix: str
) -> None:
    """GitLab's rule: 17 characters, '-', the last 6 base-36 digits of the name's SHA-256."""
    slug = environment_slug(name)
    digest = int(hashlib.sha256(name.encode()).hexdigest(), 16)
    digits = ""
    while digest:
        digest, rest = divmod(digest, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[rest] + digits
    assert slug == prefix + digits[-6:]
    assert len(slug) <= 24 and slug[0].isalpha()


def _full_plan() -> Plan:
    return _plan(
        textwrap.dedent(
            """\
            stages: [build, test, deploy]
            variables: {G: '1'}
            default:
              image: {name: python:3.12, entrypoint: ['']}
              retry: {max: 2, when: [script_failure]}
            img:
              stage: build
              build:
                tags: ['demo:$CI_COMMIT_SHORT_SHA']
                build_args: {PY: '3.12'}
                push: true
            test:
              script: [pytest]
              services:
                - postgres:16
                - {name: registry.example.test/team/redis:7, alias: cache}
              timeout: 1h 30m
              parallel: 2
              needs: [img]
              network: host
              artifacts:
                paths: [out/]
                when: always
                expire_in: 1 week
                reports: {junit: report.xml}
              cache: [{key: {files: [poetry.lock]}, paths: [.venv], policy: pull}]
              allow_failure: {exit_codes: [3, 4]}
              interruptible: true
              tags: [big]
            ship:
              stage: deploy
              when: manual
              environment: {name: production, action: start}
              resource_group: prod
              deploy:
                image: 'demo:x'
                to: 'registry.example.test/demo:prod'
                service: {name: web, port: 8000, health: /healthz}
            """
        )
    )


def test_network_is_recorded_only_when_the_job_sets_it() -> None:
    """The runner gives script jobs no network and builds the host's unless the job says."""
    result = _plan("a:\n  script: s\nb:\n  script: s\n  network: none\n")
    assert result.job("a").network is None
    assert result.job("b").network == "none"
    assert Plan.from_json(result.to_json()) == result


def test_plan_carries_what_a_runner_needs() -> None:
    result = _full_plan()
    test: Job = result.job("test 1/2")
    assert test.image is not None and test.image.entrypoint == ("",)
    assert [s.aliases for s in test.services] == [("postgres",), ("cache",)]
    assert test.timeout_seconds == 5400
    assert test.retry.max == 2 and test.retry.when == ("script_failure",)
    assert test.artifacts is not None
    assert (test.artifacts.when, test.artifacts.expire_in_seconds) == ("always", 7 * 86400)
    assert test.artifacts.junit == ("report.xml",)
    assert test.caches[0].key_files == ("poetry.lock",) and test.caches[0].policy == "pull"
    assert test.allow_failure_exit_codes == (3, 4) and not test.allow_failure
    assert test.network == "host" and test.interruptible and test.tags == ("big",)
    img = result.job("img")
    assert img.build is not None and img.build.push and img.build.build_args == (("PY", "3.12"),)
    ship = result.job("ship")
    assert ship.deploy is not None and ship.deploy.service is not None
    assert ship.deploy.service.port == 8000
    assert ship.resource_group == "prod" and ship.manual


def test_default_service_aliases_follow_gitlab() -> None:
    job = _plan(
        "j:\n  script: s\n  services: ['registry.example.test/group/tutum-wordpress:latest']\n"
    )
    assert job.job("j").services[0].aliases == (
        "registry.example.test__group__tutum-wordpress",
        "registry.example.test-group-tutum-wordpress",
    )


def test_json_round_trip() -> None:
    result = _full_plan()
    text = result.to_json()
    again = Plan.from_json(text)
    assert again == result
    data = json.loads(text)
    job = next(j for j in data["jobs"] if j["name"] == "test 2/2")
    assert (job["stage"], job["when"], job["allow_failure"]) == ("test", "on_success", False)
    assert [n["job"] for n in job["needs"]] == ["img"]


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"format": 99}',
        '{"format": 1, "stages": "x", "jobs": []}',
        '{"format": 1, "stages": [], "jobs": [{"name": 1}]}',
    ],
)
def test_from_json_rejects_what_is_not_a_plan(text: str) -> None:
    with pytest.raises(PlanError):
        Plan.from_json(text)


def test_exists_without_a_file_list_looks_at_the_project_directory(tmp_path: Path) -> None:
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / ".kapal.yml").write_text(
        "image-build:\n  script: s\n  rules:\n    - exists: ['docker/Dockerfile']\n"
        "helm:\n  script: s\n  rules:\n    - exists: ['chart/**/*.yaml']\n"
    )
    result = plan(load(tmp_path), TriggerContext(branch="main"))
    assert _names(result) == ["image-build"]
    assert result.job("helm").skip_reason == (
        "rules: no rule matched (rule 1: exists ['chart/**/*.yaml'] match no file)"
    )


def test_jobs_wait_only_for_running_jobs_of_earlier_stages() -> None:
    result = _plan(
        "stages: [a, b, c, d]\n"
        "a1:\n  stage: a\n  script: s\n"
        "a2:\n  stage: a\n  script: s\n  rules:\n    - if: $CI_COMMIT_TAG\n"
        "c1:\n  stage: c\n  script: s\n"
        "c2:\n  stage: c\n  script: s\n"
        "d1:\n  stage: d\n  script: s\n"
    )
    assert [j.name for j in result.jobs] == ["a1", "a2", "c1", "c2", "d1"]
    assert result.job("c1").waits_for == ("a1",)
    assert result.job("c2").waits_for == ("a1",)
    assert result.job("d1").waits_for == ("a1", "c1", "c2")
    assert result.job("a2").waits_for == ()
