"""Inbound webhooks: Standard Webhooks signatures (:mod:`.signatures`), the tenants' signing
secrets (:mod:`.secrets`), the inbox every accepted post is committed to before its answer
(:mod:`.inbox`), the drainer that ingests it just after (:mod:`.drain`), and the commands
(:mod:`.commands`). The API is :mod:`gateway.api.webhooks`."""
