"""Patches of other libraries' models (docs/integrations.md): the top floor, beside the collators."""
