"""Hot reload of the analysts' fraud policy from a file (``STREAMS_POLICY_FILE``).

The worker reads the file every ``STREAMS_POLICY_CHECK_INTERVAL_S`` (1 s; at most 256 KiB)
and loads it when its content changed. A new policy must parse,
pass every check of ``models.policy`` and carry a higher ``version``; otherwise it is
logged and refused, and the running policy stays in force. Write the new file beside the
old one and rename it over (``mv``), so a half-written file is never seen; one that is seen
anyway is refused and loaded at the next change.

Why a file and not a compacted Kafka topic: the policy is configuration an analyst
reviews and ships like code (a file in version control, deployed with the worker), the
worker needs it before it decides anything (a file is there at start-up, a topic needs
a consumer to catch up first), and refusing a bad one is local and immediate. With workers
on several machines the same file is deployed to each; each logs the version it runs.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from models.exceptions import PolicyError
from models.policy import POLICY_BYTES_MAX, FraudPolicy, load_policy

log = logging.getLogger("streams.policy")


def read_policy_bytes(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.read(POLICY_BYTES_MAX + 1)  # bounded: never a whole huge file
    except OSError as error:
        raise PolicyError(f"cannot read the policy file {path}: {error.strerror}") from None


def read_policy_file(path: Path, feature_names: Iterable[str]) -> FraudPolicy:
    """Load a policy file; every problem (missing, too big, malformed) is a PolicyError."""
    return _load(path, read_policy_bytes(path), feature_names)


def _load(path: Path, raw: bytes, feature_names: Iterable[str]) -> FraudPolicy:
    try:
        return load_policy(raw, feature_names)
    except PolicyError as error:
        raise PolicyError(f"{path}: {error}") from None


class PolicyWatcher:
    """Holds the policy in force; ``poll`` swaps in a changed file's policy if it is valid.

    Without a path the fallback (today's thresholds) is in force for good. With one, the
    file must be valid at start-up: a worker never starts on a policy it cannot read.
    """

    def __init__(
        self,
        path: Path | None,
        fallback: FraudPolicy,
        feature_names: Iterable[str],
        check_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.feature_names = tuple(feature_names)
        self.check_interval_s = check_interval_s
        self.clock = clock
        self.policy = fallback
        self.refused: str | None = None  # why the file's current content is not in force
        self._seen = b""  # sha256 of the content judged last
        self._checked_at = clock()
        if path is not None:
            self.policy = read_policy_file(path, self.feature_names)
            self._seen = bytes.fromhex(self.policy.sha256)
            log.warning(
                "fraud policy v%s in force from %s (sha256 %s, %d rules)",
                self.policy.version,
                path,
                self.policy.sha256[:12],
                len(self.policy.rules),
            )

    def poll(self) -> bool:
        """Check the file if the interval passed; True when a new policy came into force.

        The content is compared, not the mtime: an edit within one timestamp tick is seen
        too, and reading at most 256 KiB a second costs nothing."""
        if self.path is None or self.clock() - self._checked_at < self.check_interval_s:
            return False
        self._checked_at = self.clock()
        try:
            raw = read_policy_bytes(self.path)
        except PolicyError as error:
            return self._refuse(error, b"")  # gone for now: judged again when it is back
        digest = hashlib.sha256(raw).digest()
        if digest == self._seen:
            return False
        self._seen = digest  # each content is judged once (and logged once)
        if digest.hex() == self.policy.sha256:  # back to what runs (after a bad edit)
            self.refused = None
            return False
        try:
            candidate = _load(self.path, raw, self.feature_names)
            if candidate.version <= self.policy.version:
                raise PolicyError(
                    f"{self.path}: version {candidate.version} is not newer than the running "
                    f"version {self.policy.version}; raise 'version' to ship a change"
                )
        except PolicyError as error:
            return self._refuse(error, digest)
        self.refused = None
        log.warning(
            "fraud policy v%s in force (was v%s; sha256 %s, %d rules)",
            candidate.version,
            self.policy.version,
            candidate.sha256[:12],
            len(candidate.rules),
        )
        self.policy = candidate
        return True

    def _refuse(self, error: PolicyError, digest: bytes) -> bool:
        if self.refused != str(error):
            log.error("fraud policy refused, v%s stays in force: %s", self.policy.version, error)
        self.refused = str(error)
        self._seen = digest
        return False
