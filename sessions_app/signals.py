"""What other apps can hear of a session's life (webhooks, privacy).

Both are sent inside the transaction that stores the change, so rows a receiver writes (a queued
task) commit with it or not at all.
"""

from django.dispatch import Signal

# A session's status moved: `session` (its row as it is being saved) and `previous` (the old status).
status_changed = Signal()
# Reconciliation changed a transcript after the end: `session`.
transcript_reconciled = Signal()
