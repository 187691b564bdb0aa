"""Helpers every Python test shares: the environment a program under test starts with, and
whether a test failed (for printing diagnostics from its tearDown)."""

import os
import sys
import traceback


def clean_environment(extra=None):
    """The test's environment without any setting of the director's programs (DIRECTOR_*,
    SPAWNER_*, CONTAINER_*), plus `extra`: a program under test reads only what the test gives."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIRECTOR_", "SPAWNER_", "CONTAINER_"))}
    env.update(extra or {})
    return env


def failure_text(test):
    """The traceback of each failure or error of `test` (or of one of its subTests) so far, as
    asked from its tearDown; "" when it has none. Python 3.11 and later record them in the
    result before tearDown; earlier versions keep them in the outcome (as exc_info) until
    after it. A tearDown that prints logs prints this first: unittest prints it only at the end
    of the run, after those logs, where an excerpt of the output (a CI summary keeps its
    beginning) no longer shows it."""
    def of_test(case):
        return case is test or getattr(case, "test_case", None) is test  # a _SubTest's test
    outcome = test._outcome
    result = outcome.result
    texts = [text for case, text in result.failures + result.errors if of_test(case)]
    for case, exc_info in getattr(outcome, "errors", []):  # before Python 3.11
        if exc_info is not None and of_test(case):
            texts.append("".join(traceback.format_exception(*exc_info)))
    return "\n".join(texts)


def test_failed(test):
    """True when `test` (a unittest.TestCase, asked from its tearDown) has failed or raised so
    far, itself or in a subTest (failure_text)."""
    return not test._outcome.success or bool(failure_text(test))


def report_failure(test, logs=lambda: ""):
    """From `test`'s tearDown: when it has failed so far (test_failed), prints to stderr its
    tracebacks (failure_text), then what logs() returns (called only then; if it raises, what
    it raised), and returns True."""
    if not test_failed(test):
        return False
    print("\n" + failure_text(test), file=sys.stderr, flush=True)
    try:
        print(logs(), file=sys.stderr, flush=True)
    except Exception as error:  # the report must not hide the failure it reports
        print(f"logs: {error!r}", file=sys.stderr, flush=True)
    return True
