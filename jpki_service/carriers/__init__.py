"""Mobile carriers: their credentials (OAuth2 client credentials) and their lost-phone reports (docs/carriers.md)."""
