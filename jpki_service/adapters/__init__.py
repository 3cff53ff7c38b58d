"""The adapters: the database, the CA (its API and its OCSP answers, verified), the service's keys."""
