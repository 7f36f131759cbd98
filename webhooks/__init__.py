"""Signed webhooks per team: a team's receivers hear of versions, aliases, deployments and rollouts
(docs/webhooks.md)."""
