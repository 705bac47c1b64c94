"""Analytics: every pipeline event into ClickHouse, and the reports read from it."""
