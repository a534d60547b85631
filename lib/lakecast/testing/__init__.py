"""Test support that users and our own tests share, as ``bytewax.testing``: generators of
inputs and the checks on what the streaming path made of them. Product code never imports it.

- :mod:`~lakecast.testing.events`: synthetic ``events`` records and hand-written event rows
- :mod:`~lakecast.testing.features`: an ``entity_features`` snapshot, ``features`` rows
- :mod:`~lakecast.testing.models`, :mod:`~lakecast.testing.predictors`: registered test
  models, a served lake, predictors that fail on demand
- :mod:`~lakecast.testing.kafka`: produce, read back committed, a group's committed offsets,
  on the configured clients (:mod:`lakecast.kafka.clients`)
- :mod:`~lakecast.testing.clock`: wait for a condition
- :mod:`~lakecast.testing.samples`: synthetic ``kind=sample`` metrics records and fleets
- :mod:`~lakecast.testing.brokers`, :mod:`~lakecast.testing.tls`: throwaway brokers, test PKI
- :mod:`~lakecast.testing.workers`, :mod:`~lakecast.testing.traffic`: worker processes on a
  run's own topics, paced load and watched outputs
- fault and fuzz campaigns: :mod:`~lakecast.testing.faults`, :mod:`~lakecast.testing.fuzz`
  (with :mod:`~lakecast.testing.fuzz_cases` and :mod:`~lakecast.testing.ledger`),
  :mod:`~lakecast.testing.batch_faults`, :mod:`~lakecast.testing.registry_faults`
"""
