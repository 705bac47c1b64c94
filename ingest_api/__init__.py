"""The HTTP edge: validate, authenticate, rate-limit, publish to Kafka, answer 202."""
