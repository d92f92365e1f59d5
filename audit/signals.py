"""What the audit layer tells the layers above it."""

from django.dispatch import Signal

# Sent at the end of every sync of sessions (audit.sync.sync_sessions), after its last commit,
# whatever it wrote. The sync's transactions run with `sessionhub.bulk_sync` on
# (transaction-local): upkeep of tables derived from audit_session may defer work to this
# signal — e.g. the per-(user, day) deltas analytics folds once a run (analytics.rollups).
sessions_synced = Signal()
