"""The built-in plugins: one package per device family or integration, registered like any plugin."""
