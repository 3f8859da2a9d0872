"""Points service: purchase amount in JPY -> points; balances and redemptions.

Public API: :func:`create_app` (Flask app factory), :class:`Config` / :class:`ConfigError`
(settings from the environment) and :func:`post_fork` (gunicorn worker start-up hook). The WSGI
entry point is ``sample_api.wsgi:app``; the gunicorn settings are ``sample_api/gunicorn.conf.py``.
"""

from sample_api.app import create_app
from sample_api.config import Config, ConfigError, RateLimitSettings
from sample_api.lifecycle import post_fork

__all__ = ["Config", "ConfigError", "RateLimitSettings", "create_app", "post_fork"]
