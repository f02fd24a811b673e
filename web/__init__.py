"""The HTTP API (Quart): one blueprint per resource."""

from web.app import create_app

__all__ = ["create_app"]
