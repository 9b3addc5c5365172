"""REST hooks (Zapier's subscribe / unsubscribe contract), outbound.

A subscription (:mod:`.store`) names an event type, a target URL and an optional filter; each
matching event is planned into the outbox in the transaction that wrote it (:mod:`.planning`,
rows of the ``deliveries`` table with connector ``hooks`` and the subscription's id as the
operation), and :mod:`.sender` claims those rows under leases (:mod:`gateway.relay.claim`) and
POSTs them, signed the Standard Webhooks way (:mod:`.signing`), through the private-address
guard (:mod:`gateway.netguard`). Timings are :mod:`.config`.
"""

#: The ``deliveries.connector`` of hook deliveries (not a connector of the registry).
HOOKS = "hooks"
