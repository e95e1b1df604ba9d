"""The built-in mapping plugins: AMI events in, TAPI signals out.

``tapi_userevent`` reads the dialplan's ``UserEvent(TAPI,...)`` lines;
``channel_events`` reads Asterisk's own channel events for device lines.
Both are ordinary plugins on the ``asttapi_map_ami_event`` hook, registered
by the plugin host (:mod:`asttapi_server.plugin_host`).
"""
