"""One base class for every error garbseg raises on purpose, so callers (the CLI, the app) can tell
a problem to explain in one line from a bug to report."""

from __future__ import annotations


class GarbsegError(Exception):
    """A problem with the user's input, files or machine; the message says what and how to fix it."""
