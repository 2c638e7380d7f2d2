"""Small real applications the integration tests serve with gunicorn and uvicorn."""
