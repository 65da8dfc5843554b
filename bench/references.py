"""In-process references: what the signing primitives cost on this core.

Each returns operations per second over a fixed time budget. The caller pins
this process to the server core first, so these compare with the HTTP cases.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

MESSAGE = (b"eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0."
           b"eyJpc3MiOiJodHRwczovL2FwcC5leGFtcGxlLmNvbS8uYXV0aCIsInN1YiI6InUxIiwiYXVkIjoiYXBpIiwi"
           b"ZXhwIjoxOTAwMDAwMDAwLCJpYXQiOjE3MDAwMDAwMDAsImp0aSI6ImFiY2RlZmdoaWprbG1ub3AifQ")


def rate(op: Callable[[], object], seconds: float, batch: int = 200) -> float:
    """Calls of ``op`` per second, run in batches until ``seconds`` have passed."""
    for _ in range(batch // 10):  # warm caches
        op()
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(batch):
            op()
        done += batch
    return done / (time.perf_counter() - start)


def es256_sign(seconds: float) -> float:
    key = ec.generate_private_key(ec.SECP256R1())
    algorithm = ec.ECDSA(hashes.SHA256())
    return rate(lambda: key.sign(MESSAGE, algorithm), seconds)


def es256_verify(seconds: float) -> float:
    key = ec.generate_private_key(ec.SECP256R1())
    algorithm = ec.ECDSA(hashes.SHA256())
    signature = key.sign(MESSAGE, algorithm)
    public = key.public_key()
    return rate(lambda: public.verify(signature, MESSAGE, algorithm), seconds)


def joserfc_jwt_verify(seconds: float) -> float:
    """A whole ES256 JWT decode + signature check, as authgate's JWT library does it."""
    from joserfc import jwt
    from joserfc.jwk import ECKey

    key = ECKey.generate_key("P-256")
    now = int(time.time())
    token = jwt.encode({"alg": "ES256"}, {"iss": "https://app.example.com/.auth", "sub": "u1",
                                          "aud": "api", "iat": now, "exp": now + 3600}, key)
    return rate(lambda: jwt.decode(token, key, algorithms=["ES256"]), seconds)
