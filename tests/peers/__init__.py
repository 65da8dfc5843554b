"""Independent protocol peers that authgate's tests (and benchmarks) run against.

``oidc_provider``: node-oidc-provider as an upstream OpenID Connect provider.
"""
