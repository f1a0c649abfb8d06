"""The report of a quantization run: ``report.json``, the model card and its figures."""
