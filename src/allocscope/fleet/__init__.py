"""The fleet audit: what every node agent's series, as Prometheus holds them, say."""
