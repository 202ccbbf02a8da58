"""The audit log, findings and drift baselines are not in the Django admin:
auditors and approvers read them in the portal (/audit/, /findings/), where
the chain is verified and exported, and nothing anywhere edits them (on
PostgreSQL a trigger refuses UPDATE and DELETE on the log). Users and roles
are shown read-only by accounts.admin."""
