"""Loopback stand-ins for the Azure side, started by pytest fixtures (tests/harness/fixtures.py).

Real components wherever they can run here: Mosquitto over TLS plays edgeHub's MQTT endpoint, a
small paho-mqtt responder plays IoT Hub's twin and method service behind it, Azurite plays Blob
Storage, and a TLS HTTP server plays the two IoT Hub file-upload endpoints. Only the Azure cloud
itself is imitated.
"""
