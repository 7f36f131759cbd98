"""The workers: Celery tasks, runtimes, the model cache and the batcher that serves inference."""

