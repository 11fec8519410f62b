"""Bounded fuzzing by default, long runs on request.

Every fuzz test runs its default Hypothesis example count on every push.
EDGECORE_FUZZ_SECONDS=N (CI's scheduled job, or by hand) makes each test
wrapped in `long_run` keep drawing fresh examples for N seconds:

    EDGECORE_FUZZ_SECONDS=600 pytest tests/weights/test_fuzz.py
"""

from __future__ import annotations

import os
import time

LONG_SECONDS = float(os.environ.get("EDGECORE_FUZZ_SECONDS", "0") or 0)


def long_run(test):
    """Run a Hypothesis test once (default) or, with EDGECORE_FUZZ_SECONDS,
    again and again with fresh seeds until the time is up."""
    def run():
        deadline = time.monotonic() + LONG_SECONDS
        test()
        while time.monotonic() < deadline:
            test()

    # name and doc only: functools.wraps would expose the Hypothesis test's
    # signature, and pytest would look for fixtures named after its arguments
    run.__name__ = test.__name__
    run.__doc__ = test.__doc__
    return run
