-- Webhooks: endpoints an API client subscribed to event types, and one delivery per event
-- and endpoint, scheduled from here by the notification service (notifications/).

CREATE TABLE webhook_subscriptions (
    subscription_id UUID PRIMARY KEY,
    client_id UUID NOT NULL REFERENCES api_clients(client_id),
    url TEXT NOT NULL CHECK (length(url) <= 2000),
    event_types TEXT[] NOT NULL CHECK (cardinality(event_types) >= 1),
    -- The HMAC key: needed in clear to sign; shown to the client once, when made.
    secret TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '' CHECK (length(description) <= 200),
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
    deleted_at TIMESTAMP WITH TIME ZONE
);
CREATE INDEX idx_webhook_subscriptions_client ON webhook_subscriptions(client_id)
    WHERE deleted_at IS NULL;

-- status: PENDING (due at next_attempt_at; also the lease of an attempt in flight),
-- DELIVERED, DEAD (retries ran out, or the endpoint was deleted), until redelivered.
CREATE TABLE webhook_deliveries (
    delivery_id BIGSERIAL PRIMARY KEY,
    subscription_id UUID NOT NULL REFERENCES webhook_subscriptions(subscription_id),
    event_id UUID NOT NULL,
    event_type TEXT NOT NULL,
    -- Events of one transaction reach an endpoint in delivery_id order.
    transaction_id UUID,
    body BYTEA NOT NULL,
    status TEXT NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'DELIVERED', 'DEAD')),
    attempts INT NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
    -- When the current run of retries started (the first attempt, or a redelivery).
    first_attempt_at TIMESTAMP WITH TIME ZONE,
    next_attempt_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
    last_attempt_at TIMESTAMP WITH TIME ZONE,
    last_status_code INT,
    last_error TEXT,
    finished_at TIMESTAMP WITH TIME ZONE,
    UNIQUE (subscription_id, event_id)
);
CREATE INDEX idx_webhook_deliveries_order ON webhook_deliveries(subscription_id, transaction_id, delivery_id)
    WHERE status = 'PENDING';
CREATE INDEX idx_webhook_deliveries_listing ON webhook_deliveries(subscription_id, delivery_id);
CREATE INDEX idx_webhook_deliveries_due_by_endpoint
    ON webhook_deliveries(subscription_id, next_attempt_at, delivery_id) WHERE status = 'PENDING';
