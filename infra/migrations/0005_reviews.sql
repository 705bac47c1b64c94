-- 0005: transactions the stream held for an analyst's review (/v1/reviews).
-- Written by the API from `reviews.requested`; the decision (an analyst's, or the timeout's
-- DECLINE) is published on `reviews.decisions` while the row is locked, then recorded here.

CREATE TABLE transaction_reviews (
    transaction_id UUID PRIMARY KEY,
    client_id UUID NOT NULL,
    wallet_id UUID NOT NULL,
    transaction_type VARCHAR(50) NOT NULL,
    amount DECIMAL(19, 4) NOT NULL,
    currency_code VARCHAR(3) NOT NULL,
    risk_score DECIMAL(5, 2) NOT NULL,
    status VARCHAR(20) NOT NULL DEFAULT 'PENDING'
        CHECK (status IN ('PENDING', 'APPROVED', 'DECLINED', 'EXPIRED')),
    record JSONB NOT NULL,
    review_deadline TIMESTAMP WITH TIME ZONE NOT NULL,
    decided_by VARCHAR(100),
    decided_at TIMESTAMP WITH TIME ZONE,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL
);
CREATE INDEX transaction_reviews_pending ON transaction_reviews (review_deadline)
    WHERE status = 'PENDING';
