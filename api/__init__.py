"""The HTTP API and web form of the quantization service. Never imports torch."""
