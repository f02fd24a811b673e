"""The ASGI entry point hypercorn serves (`hypercorn web.asgi:app`): logging, then the app."""

from settings import get_settings
from telemetry import logs
from web.app import create_app

settings = get_settings()
logs.configure(settings.log_level, settings.log_format)
app = create_app(settings)
