"""The registry's champion decides, its challengers score in shadow; reloaded within seconds.

At start the worker loads the champion and the challengers of ``STREAMS_MODEL_NAME`` from
the registry folder ``STREAMS_MODELS_DIR`` (``models/registry.py``: ``walletpipe models
train``, ``promote``, ``challengers`` write it). Without a folder, or without a champion in
it, the online scorer (``models.simple.RulesAndTrees``) decides, and the log says so. A
champion that cannot be loaded at start stops the worker with the reason (as a policy
file does: a worker never decides with a model it was not meant to run); a challenger
that cannot be loaded is left out, logged.

The worker's clock tick calls ``poll``, which looks every ``STREAMS_MODELS_CHECK_INTERVAL_S``:
when ``CHAMPION`` or ``CHALLENGERS`` (or the files of a version they name) changed, the new
set is loaded whole; if any of it is malformed (``ArtifactError``: checksum, features of
another build, a label delay other than the stream's, arrays that are not trees) the change
is refused, logged with the reason, and the running champion and challengers stay in
force. A refused change is judged again when the pointers or the artifact files change.

Scores are in [0, 1]; the records carry them 0-100 (``to_risk_score``): ``risk_score`` is
the champion's, ``scored_by`` is ``"<name> v<N>"`` (or the online scorer's name) and
``shadow_scores`` maps each challenger's ``"<name> v<N>"`` to its score of the same features.
The online scorer learns only while it decides: with a champion in force it is not run.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from domain.records import SHADOW_SCORES_MAX
from models.exceptions import ArtifactError
from models.protocol import Features, Scorer
from models.registry import Artifact, Registry
from models.thresholds import ReviewBudget
from streams.labels import ONLINE_LABELS_NAME

log = logging.getLogger("streams.models")

#: ``scored_by`` when the online scorer decides (no champion in the registry).
ONLINE_SCORER_NAME = "online RulesAndTrees"
HUNDREDTH = Decimal("0.01")


def to_risk_score(score: float) -> Decimal:
    """A score in [0, 1] as the records carry it: 0-100 with two decimals (DECIMAL(5,2)).
    Not finite counts as the riskiest: a broken model must not wave money through."""
    bounded = min(max(score, 0.0), 1.0) if math.isfinite(score) else 1.0
    return (Decimal(repr(bounded)) * 100).quantize(HUNDREDTH, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class ServingModel:
    name: str  # "<registry name> v<N>", as the records carry it
    model: Scorer
    #: (review from, decline from) on the score in [0, 1], chosen on the model's validation
    #: scores when it was trained (``models.thresholds``); None for older artifacts.
    thresholds: tuple[float, float] | None = None


@dataclass(frozen=True)
class Scores:
    score: float  # the deciding model's, in [0, 1]
    scored_by: str
    shadow_scores: dict[str, Decimal] = field(default_factory=dict)
    #: The deciding model's own (review, decline) thresholds, if it has them: they replace
    #: the stream's default thresholds (never an analyst's policy file).
    thresholds: tuple[float, float] | None = None
    #: Review only above this score: the live review budget (``ReviewBudget``).
    review_floor: float = 0.0


def artifact_name(artifact: Artifact) -> str:
    return f"{artifact.name} v{artifact.version}"


class ModelWatcher:
    """Holds the models in force; ``score`` scores one transaction's features with them."""

    def __init__(
        self,
        root: Path | None,
        name: str,
        fallback: Scorer,
        label_delay_days: int,
        check_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        review_budget: float = 1.0,
        online_challenger: Scorer | None = None,
    ) -> None:
        self.registry = None if root is None else Registry(root)
        self.name = name
        self.fallback = fallback
        self.label_delay_days = label_delay_days
        self.check_interval_s = check_interval_s
        self.clock = clock
        #: Guards the review share of whichever model decides (1.0: no guard).
        self.budget = ReviewBudget(review_budget)
        #: Scored in shadow while a champion decides (the label-trained classifier).
        self.online_challenger = online_challenger
        self.champion: ServingModel | None = None
        self.challengers: tuple[ServingModel, ...] = ()
        self.refused: str | None = None  # why the registry's current pointers are not in force
        self._seen: tuple = ()
        #: version -> its files' (mtime, size) when loaded: a version whose files did not
        #: change is not read again when the pointers move.
        self._loaded_stats: dict[int, tuple] = {}
        self._checked_at = clock()
        if self.registry is None:
            log.warning("no model registry (STREAMS_MODELS_DIR): %s decides", ONLINE_SCORER_NAME)
            return
        self._seen = self._fingerprint()
        champion = self.registry.champion_version(name)
        if champion is None:
            log.warning(
                "no champion for model %r in %s: %s decides until one is promoted",
                name,
                self.registry.root,
                ONLINE_SCORER_NAME,
            )
        else:
            self.champion = self._load(champion)  # refused: the worker does not start
        challengers = []
        try:
            versions = self._challenger_versions(champion)
        except ArtifactError as error:
            log.error("no challenger scores in shadow: %s", error)
            versions = []
        for version in versions:
            try:
                challengers.append(self._load(version))
            except ArtifactError as error:
                log.error("challenger %s v%s left out: %s", name, version, error)
        self.challengers = tuple(challengers)
        self._log_in_force()

    @property
    def scored_by(self) -> str:
        if self.champion is None:
            return getattr(self.fallback, "name", ONLINE_SCORER_NAME)
        return self.champion.name

    def score(self, x: Features) -> Scores:
        """The champion's score (or the online scorer's, which then learns from ``x``:
        test-then-train) and every challenger's, of the same features; with a champion,
        the online challenger's too."""
        thresholds = None
        shadow = {c.name: to_risk_score(c.model.score_one(x)) for c in self.challengers}
        if self.champion is None:
            scored_by = self.scored_by
            score = self.fallback.score_one(x)
            self.fallback.learn_one(x)
        else:
            scored_by = self.champion.name
            score = self.champion.model.score_one(x)
            thresholds = self.champion.thresholds
            online = self.online_challenger
            if online is not None and len(shadow) < SHADOW_SCORES_MAX:
                shadow[ONLINE_LABELS_NAME] = to_risk_score(online.score_one(x))
        score = score if math.isfinite(score) else 1.0
        self.budget.observe(score)
        return Scores(score, scored_by, shadow, thresholds, self.budget.floor)

    def poll(self) -> bool:
        """Check the registry if the interval passed; True when a new set came into force."""
        if self.registry is None or self.clock() - self._checked_at < self.check_interval_s:
            return False
        self._checked_at = self.clock()
        seen = self._fingerprint()
        if seen == self._seen:
            return False
        self._seen = seen  # each state of the registry is judged once (and logged once)
        try:
            champion_version = self.registry.champion_version(self.name)
            champion = None if champion_version is None else self._load(champion_version)
            challengers = tuple(self._load(v) for v in self._challenger_versions(champion_version))
        except (ArtifactError, OSError, ValueError) as error:
            if self.refused != str(error):
                log.error(
                    "model change refused, %s and %d challenger(s) stay in force: %s",
                    self.scored_by,
                    len(self.challengers),
                    error,
                )
            self.refused = str(error)
            return False
        self.refused = None
        if champion == self.champion and challengers == self.challengers:
            return False
        self.champion, self.challengers = champion, challengers
        self._log_in_force()
        return True

    def _challenger_versions(self, champion: int | None) -> list[int]:
        assert self.registry is not None
        versions = [v for v in self.registry.challengers(self.name) if v != champion]
        if len(versions) > SHADOW_SCORES_MAX:
            raise ArtifactError(
                f"{len(versions)} challengers of {self.name!r}; at most {SHADOW_SCORES_MAX} "
                "score in shadow (the records carry that many)"
            )
        return versions

    def _load(self, version: int) -> ServingModel:
        """One version, checked against this stream's features and label delay; a version
        already in force is kept as it is (not read again)."""
        assert self.registry is not None
        name = f"{self.name} v{version}"
        for running in (self.champion, *self.challengers):
            if running is not None and running.name == name and self._unchanged(version):
                return running
        artifact = self.registry.load(self.name, version)
        window = artifact.metadata.get("training_window") or {}
        delay = window.get("label_delay_days")
        if delay != self.label_delay_days:
            raise ArtifactError(
                f"{name}: trained with a label delay of {delay} days, the stream computes "
                f"features with {self.label_delay_days} (STREAMS_LABEL_DELAY_DAYS): re-train "
                "it with --delay-days matching, or change the setting"
            )
        self._loaded_stats[version] = self._artifact_stat(version)
        chosen = artifact.metadata.get("thresholds") or {}
        thresholds = None
        if "review_at" in chosen and "decline_at" in chosen:
            decline_at = min(float(chosen["decline_at"]), 1.0)  # 1.0: all trees say fraud
            thresholds = (min(float(chosen["review_at"]), decline_at), decline_at)
        return ServingModel(artifact_name(artifact), artifact.model, thresholds)

    def _unchanged(self, version: int) -> bool:
        return self._loaded_stats.get(version) == self._artifact_stat(version)

    def _artifact_stat(self, version: int) -> tuple:
        assert self.registry is not None
        folder = self.registry.root / self.name / f"v{version}"
        stat = []
        for file in ("metadata.json", "forest.npz"):
            try:
                info = (folder / file).stat()
                stat.append((info.st_mtime_ns, info.st_size))
            except OSError:
                stat.append(None)
        return tuple(stat)

    def _fingerprint(self) -> tuple:
        """What the registry says now: the pointer files' text and the files they name."""
        assert self.registry is not None
        folder = self.registry.root / self.name
        texts = []
        for pointer in ("CHAMPION", "CHALLENGERS"):
            try:
                with (folder / pointer).open("rb") as handle:
                    texts.append(handle.read(4096))  # bounded: a pointer file is a few lines
            except OSError:
                texts.append(None)
        champion = self.registry.champion_version(self.name)
        versions = [] if champion is None else [champion]
        versions += self.registry.challengers(self.name)
        return (*texts, *(self._artifact_stat(v) for v in versions[: SHADOW_SCORES_MAX + 1]))

    def _log_in_force(self) -> None:
        log.warning(
            "fraud model in force: %s decides; in shadow: %s",
            self.scored_by,
            ", ".join(c.name for c in self.challengers) or "none",
        )
