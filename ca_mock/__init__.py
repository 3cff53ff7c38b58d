"""A real X.509 certification authority standing in for J-LIS.

Real keys, real signatures, real CRLs (RFC 5280) and OCSP (RFC 6960); a mock only in that it
is not the real operator. Public entry points: :func:`ca_mock.app.create_app` and the
``jpki-ca`` command (:mod:`ca_mock.cli`).
"""
