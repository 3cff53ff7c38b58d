"""The operator web console: server-rendered pages for the call centre (docs/console.md)."""
