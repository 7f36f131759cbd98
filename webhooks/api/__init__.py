"""The webhooks API under /api/v1/teams/{team}/webhooks/."""
