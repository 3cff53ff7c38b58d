"""The entry points: the HTTP application, its /metrics, and the jpki-service command. Each room's
views.py and cli.py are entry points too (tests/test_import_rules.py)."""
