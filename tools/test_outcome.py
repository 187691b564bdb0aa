"""Whether a unittest test has failed, asked from its tearDown (for printing diagnostics)."""


def test_failed(test):
    """True when `test` (a unittest.TestCase, asked from its tearDown) has failed or raised so
    far. `_outcome.success` alone stays True in tearDown on Python 3.11 and later, so the
    result's failures and errors are asked too."""
    outcome = test._outcome
    if not outcome.success:
        return True
    result = outcome.result
    return any(case is test for case, _ in result.failures + result.errors)
