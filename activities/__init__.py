"""Plain async functions and the @activity.defn classes that wrap them for the worker."""
