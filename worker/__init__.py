"""The Celery worker: runs one quantization job per GPU, from pre-flight to the Hub commit."""
