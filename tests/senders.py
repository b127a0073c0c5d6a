"""Verification senders for tests: keep what was sent where a test can read it."""

import json
import os

SENT: list[dict] = []


class RecordingSender:
    """In-process: appends to ``SENT``."""

    def send(self, *, channel: str, destination: str, code: str) -> None:
        SENT.append({"channel": channel, "destination": destination, "code": code})


class FileSender:
    """Across processes (a real Celery worker): appends a JSON line to $TEST_SENDER_FILE."""

    def send(self, *, channel: str, destination: str, code: str) -> None:
        with open(os.environ["TEST_SENDER_FILE"], "a") as fh:
            fh.write(
                json.dumps({"channel": channel, "destination": destination, "code": code, "pid": os.getpid()})
                + "\n"
            )
