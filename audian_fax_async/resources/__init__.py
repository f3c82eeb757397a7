"""Resource namespaces that mirror the API: ``client.received``, ``.webhooks``, ``.routing``, ``.numbers``."""
