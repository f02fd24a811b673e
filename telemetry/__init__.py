"""What Headwater tells its operators about itself: structured logs (logs.py)."""
