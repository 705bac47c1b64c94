"""Every setting of the notification service, read once from the environment."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from domain.topics import REVIEWS_REQUESTED, TRANSACTIONS_REJECTED, WALLET_COMMANDS
from domain.webhooks import AddressPolicy, RetryPolicy

#: The topics whose records become events (domain.webhooks.EVENT_OF_KIND), and the kinds
#: read from each: ``wallet.commands`` carries the ledger's outcomes (in each wallet's
#: order) and the review decisions; the stream's rejections and review requests have
#: topics of their own. A new event source adds its topic and kinds here.
EVENT_SOURCES: dict[str, tuple[str, ...]] = {
    WALLET_COMMANDS.name: ("TransactionPosted", "TransactionFailed", "ReviewDecided"),
    TRANSACTIONS_REJECTED.name: ("TransactionRejected",),
    REVIEWS_REQUESTED.name: ("ReviewRequested",),
}


class NotificationSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", env_prefix="WEBHOOK_")

    database_url: str = Field(validation_alias="DATABASE_URL")
    kafka_bootstrap: str = Field(validation_alias="KAFKA_BOOTSTRAP")
    consumer_group: str = "notifications"
    #: Records read per batch; one PostgreSQL transaction stores a batch's deliveries.
    batch_size_max: int = Field(default=1_000, ge=1, le=100_000)
    #: Which (client, event type) pairs have an endpoint is re-read this often; a new
    #: subscription receives the events read after that.
    subscriptions_refresh_ms: int = Field(default=1_000, ge=50, le=60_000)

    #: Retries: the first waits about ``retry_base_ms``, each next one twice as long up to
    #: ``retry_delay_max_ms``, with up to ``retry_jitter`` of it taken off at random; after
    #: ``retry_window_s`` from the first attempt the delivery is dead-lettered.
    retry_base_ms: int = Field(default=10_000, ge=1, le=3_600_000)
    retry_delay_max_ms: int = Field(default=3_600_000, ge=1, le=86_400_000)
    retry_window_s: float = Field(default=86_400, gt=0, le=30 * 86_400)
    retry_jitter: float = Field(default=0.5, ge=0, lt=1)

    #: One attempt's bound: connect, send, answer (a slow endpoint fails its attempt).
    delivery_timeout_ms: int = Field(default=10_000, ge=100, le=120_000)
    #: Attempts in flight at once, in all, and to one endpoint: an endpoint that hangs holds
    #: at most ``endpoint_concurrency_max`` of them, and the others go on.
    concurrency_max: int = Field(default=64, ge=1, le=10_000)
    endpoint_concurrency_max: int = Field(default=4, ge=1, le=1_000)
    #: Deliveries one endpoint may have waiting; past that its new events are dead-lettered
    #: at once (an endpoint dead for hours must not grow the table without bound).
    endpoint_pending_max: int = Field(default=100_000, ge=1, le=10_000_000)
    #: How often due deliveries are looked for when nothing else wakes the scheduler.
    poll_interval_ms: int = Field(default=200, ge=10, le=60_000)
    #: Bytes of an endpoint's answer kept for `walletpipe webhooks deliveries`.
    answer_bytes_max: int = Field(default=500, ge=0, le=10_000)

    #: Endpoint addresses: public ones only unless the operator allows more (a comma list of
    #: networks, e.g. "10.20.0.0/16"); loopback only with ``allow_loopback`` (tests).
    allow_loopback: bool = False
    allowed_networks: str = ""

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            base_s=self.retry_base_ms / 1000,
            delay_max_s=max(self.retry_delay_max_ms, self.retry_base_ms) / 1000,
            window_s=self.retry_window_s,
            jitter=self.retry_jitter,
        )

    def address_policy(self) -> AddressPolicy:
        return AddressPolicy.parse(self.allow_loopback, self.allowed_networks)
