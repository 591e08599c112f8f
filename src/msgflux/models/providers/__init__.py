"""Providers: the data rows (``registry``), the OpenAI model class and the embedded engine."""
