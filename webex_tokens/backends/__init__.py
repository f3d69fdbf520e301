"""Built-in token store backends, one module each.

Open them through :func:`webex_tokens.open_store`.
"""
