"""Secret masking in single strings and in streams of lines."""

from __future__ import annotations

from runner.masking import LineMasker, SecretMasker


def stream(masker: SecretMasker, lines: list[str]) -> list[str]:
    """Push `lines` through a `LineMasker`; return what it lets out."""
    line_masker = LineMasker(masker)
    out: list[str] = []
    for line in lines:
        out += line_masker.push(line)
    return out + line_masker.flush()


def test_mask_replaces_every_occurrence() -> None:
    masker = SecretMasker(["hunter22", "tok-123456"])
    assert masker.mask("pw=hunter22 and hunter22, t=tok-123456") == (
        "pw=[MASKED] and [MASKED], t=[MASKED]"
    )


def test_overlapping_secrets_mask_the_union() -> None:
    masker = SecretMasker(["abcdef", "defghi"])
    assert masker.mask("xabcdefghiy") == "x[MASKED]y"


def test_short_values_are_not_patterns() -> None:
    assert not SecretMasker(["abc", ""])


def test_a_secret_split_across_two_lines_is_masked_in_both() -> None:
    masker = SecretMasker(["correct-horse-battery"])
    assert stream(masker, ["key: correct-hor", "se-battery done", "next"]) == [
        "key: [MASKED]",
        "[MASKED] done",
        "next",
    ]


def test_lines_without_a_secret_prefix_pass_at_once() -> None:
    line_masker = LineMasker(SecretMasker(["correct-horse-battery"]))
    assert line_masker.push("nothing to hide") == ["nothing to hide"]
    assert line_masker.push("ends with corr") == []  # held: the secret may continue
    assert line_masker.push("oborated fact") == ["ends with corr", "oborated fact"]


def test_a_secret_folded_over_three_lines_is_masked() -> None:
    masker = SecretMasker(["e2e-secret-0123456789"])
    assert stream(masker, ["e2e-secr", "et-01234", "56789", "after"]) == [
        "[MASKED]",
        "[MASKED]",
        "[MASKED]",
        "after",
    ]


def test_a_false_start_is_released_when_the_secret_does_not_follow() -> None:
    line_masker = LineMasker(SecretMasker(["e2e-secret-0123456789"]))
    assert line_masker.push("x e2e-se") == []
    assert line_masker.push("cret-0") == []  # still a possible continuation
    assert line_masker.push("done!") == ["x e2e-se", "cret-0", "done!"]


def test_multi_line_secrets_are_masked_line_by_line() -> None:
    key = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END KEY-----"
    out = stream(SecretMasker([key]), [*key.splitlines(), "after"])
    assert out == ["[MASKED]", "[MASKED]", "[MASKED]", "after"]


def test_nothing_to_mask_is_a_passthrough() -> None:
    assert stream(SecretMasker([]), ["a", "b"]) == ["a", "b"]
