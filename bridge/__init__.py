"""ami-bridge: publish Asterisk Manager Interface events to RabbitMQ."""

__version__ = "0.1.0"
