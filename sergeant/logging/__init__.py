"""Logging helpers, including handlers that ship records to Logstash."""
