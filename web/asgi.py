"""The ASGI entry point hypercorn serves (`hypercorn web.asgi:app`): logging, then the app."""

import logging

from settings import get_settings
from web.app import create_app

settings = get_settings()
logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
# hypercorn has its own handler on this logger; don't print its lines twice.
logging.getLogger("hypercorn.error").propagate = False
app = create_app(settings)
