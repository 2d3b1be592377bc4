"""The Asterisk Manager Interface: a sans-I/O protocol (``protocol``) and the asyncio
connection (``client``) and robust session (``session``) around it."""
