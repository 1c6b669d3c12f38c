"""Where results go: the terminal dashboard, JSON lines, MQTT."""
