"""The Django project (settings, urls, asgi, the Celery app) and the people's side of Paddock."""

from .celery import app as celery_app

__all__ = ("celery_app",)
