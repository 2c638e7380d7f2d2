"""The allocscope HTTP service: a WSGI app on granian, its metrics, and its launcher."""
