"""The Mynaportal-style phone app with its simulated secure element and NFC card reader.

Layers, each in its own small module:

- ``secure_element``: the phone's SE (keys made and used inside it, password/PIN with retry counters);
- ``card_reader``: the NFC reader for a simulated My Number card file;
- ``service_client``: the lifecycle service's HTTP API (docs/service-api.md);
- ``app_data``: what the app itself remembers (erased by factory reset and uninstall);
- ``flows``: the owner's use cases, wiring the four together;
- ``pdf``: PAdES signing with the SE key, and verification;
- ``cli``: the ``jpki-app`` command.
"""
