"""What Headwater tells its operators about itself: structured logs (logs.py) and
Prometheus metrics (metrics.py)."""
