"""Points service: purchase amount in JPY -> points; balances and redemptions.

Public API: :func:`create_app` (Flask app factory), :class:`Config` / :class:`ConfigError`
(settings from the environment; ``ConfigError`` is :class:`points.settings.ConfigError`) and
:func:`post_fork` (gunicorn worker start-up hook). The WSGI entry point is ``sample_api.wsgi:app``;
the gunicorn settings are ``sample_api/gunicorn.conf.py``.

This package is the HTTP face of the ledger: views, problem details, the rate limiter and the app
factory. The ledger itself (domain rules and storage) is the :mod:`points` package.
"""

from points.settings import ConfigError
from sample_api.app import create_app
from sample_api.config import Config, RateLimitSettings
from sample_api.lifecycle import post_fork

__all__ = ["Config", "ConfigError", "RateLimitSettings", "create_app", "post_fork"]
