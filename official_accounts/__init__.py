"""Brand accounts, broadcasts, webhooks, dashboard. Not built yet."""
