"""The allocscope HTTP service: a WSGI app on granian (built on the library), and its launcher."""
