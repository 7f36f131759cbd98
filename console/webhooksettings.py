"""Webhook settings (docs/webhooks.md), read from the environment (.env.example lists them).
console.settings imports every name here; they live apart only because that module is at the
size every module is held to (tests/test_structure.py)."""

from console.env import env_bool, env_float, env_int

__all__ = [
    "PADDOCK_WEBHOOK_ALLOW_PRIVATE", "PADDOCK_WEBHOOK_BACKOFF_MAX_SECONDS", "PADDOCK_WEBHOOK_DELIVERY_RETENTION_DAYS",
    "PADDOCK_WEBHOOK_MAX_ATTEMPTS", "PADDOCK_WEBHOOK_SENDERS", "PADDOCK_WEBHOOK_TIMEOUT_SECONDS",
]

# Each delivery is tried this many times, 1, 2, 4, ... s apart (at most the cap), each attempt cut
# off at the timeout.
PADDOCK_WEBHOOK_MAX_ATTEMPTS = env_int("PADDOCK_WEBHOOK_MAX_ATTEMPTS", 5, minimum=1)
PADDOCK_WEBHOOK_TIMEOUT_SECONDS = env_float("PADDOCK_WEBHOOK_TIMEOUT_SECONDS", 5.0, minimum=0.1)
PADDOCK_WEBHOOK_BACKOFF_MAX_SECONDS = env_float("PADDOCK_WEBHOOK_BACKOFF_MAX_SECONDS", 300.0, minimum=1.0)
# Targets on loopback, private or link-local addresses are refused unless allowed here (a receiver
# on the operator's own network; the tests).
PADDOCK_WEBHOOK_ALLOW_PRIVATE = env_bool("PADDOCK_WEBHOOK_ALLOW_PRIVATE", False)
# Threads of each worker process that make delivery attempts, beside the Celery pool (never on it:
# a receiver that hangs holds one of these, not validations or rollout gates); 0: this worker
# sends none. One team holds at most half of them (at least one) at a time (workers/webhook_sender.py).
PADDOCK_WEBHOOK_SENDERS = env_int("PADDOCK_WEBHOOK_SENDERS", 2, minimum=0)
# Beat removes ended deliveries (succeeded, failed) older than this from the log.
PADDOCK_WEBHOOK_DELIVERY_RETENTION_DAYS = env_int("PADDOCK_WEBHOOK_DELIVERY_RETENTION_DAYS", 30, minimum=1)
