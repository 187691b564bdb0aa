"""Helpers every Python test shares: the environment a program under test starts with, and
whether a test failed (for printing diagnostics from its tearDown)."""

import os


def clean_environment(extra=None):
    """The test's environment without any setting of the director's programs (DIRECTOR_*,
    SPAWNER_*, CONTAINER_*), plus `extra`: a program under test reads only what the test gives."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIRECTOR_", "SPAWNER_", "CONTAINER_"))}
    env.update(extra or {})
    return env


def test_failed(test):
    """True when `test` (a unittest.TestCase, asked from its tearDown) has failed or raised so
    far. `_outcome.success` alone stays True in tearDown on Python 3.11 and later, so the
    result's failures and errors are asked too."""
    outcome = test._outcome
    if not outcome.success:
        return True
    result = outcome.result
    return any(case is test for case, _ in result.failures + result.errors)


def failure_text(test):
    """The traceback of each failure or error of `test` recorded so far ("" when none is, as
    before Python 3.11, which records them after tearDown). A tearDown that prints logs prints
    it first: unittest prints it only at the end of the run, after those logs, where an excerpt
    of the output (a CI summary keeps its beginning) no longer shows it."""
    result = test._outcome.result
    return "\n".join(text for case, text in result.failures + result.errors if case is test)
