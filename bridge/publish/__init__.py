"""Publishing: routing AMI events to RabbitMQ, with a durable local journal behind it."""
