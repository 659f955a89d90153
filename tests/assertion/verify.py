"""Verify doorman's identity assertions with PyJWT, as an app would (tests/assertion.rs).

Run with Debian's Python, which has python3-jwt and python3-cryptography:

    /usr/bin/python3 tests/assertion/verify.py verify < request.json
    /usr/bin/python3 tests/assertion/verify.py forge < request.json

verify: {"jwks": <doorman's jwks.json>, "issuer": ..., "audience": ..., "tokens": [...]}
  prints one JSON line per token: {"valid": true, "claims": {...}} or
  {"valid": false, "error": "<PyJWT exception class>"}.
  The verifier pins alg to EdDSA, checks iss and aud, and picks the key by the token's kid from
  the JWKS given, as the README's example does (which fetches the JWKS itself).

forge: {"token": <a valid token>, "jwks": ...}
  prints {"tampered": ..., "alg_none": ..., "hs256": ...}: the same token with its payload
  changed (sub = "mallory") and the old signature kept; an unsigned "alg": "none" token with that
  payload; and an HS256 token signed with the public key's bytes as the HMAC secret (the classic
  algorithm-confusion forgery).
"""

import base64
import hashlib
import hmac
import json
import sys

import jwt


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify(req):
    keys = {k["kid"]: k for k in req["jwks"]["keys"]}
    for token in req["tokens"]:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            if kid not in keys:
                raise jwt.InvalidKeyError("no key with this kid in the JWKS")
            key = jwt.PyJWK(keys[kid], algorithm="EdDSA")
            claims = jwt.decode(
                token,
                key=key.key,
                algorithms=["EdDSA"],
                issuer=req["issuer"],
                audience=req["audience"],
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
            print(json.dumps({"valid": True, "claims": claims}))
        except jwt.PyJWTError as e:
            print(json.dumps({"valid": False, "error": type(e).__name__}))


def forge(req):
    header, payload, signature = req["token"].split(".")
    claims = json.loads(unb64(payload))
    claims["sub"] = "mallory"
    evil = b64(json.dumps(claims, separators=(",", ":")).encode())
    kid = jwt.get_unverified_header(req["token"])["kid"]
    x = unb64(next(k["x"] for k in req["jwks"]["keys"] if k["kid"] == kid))

    none_header = b64(json.dumps({"alg": "none", "typ": "JWT", "kid": kid}).encode())
    hs_header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    hs_input = f"{hs_header}.{evil}".encode()
    hs_sig = b64(hmac.new(x, hs_input, hashlib.sha256).digest())
    print(
        json.dumps(
            {
                "tampered": f"{header}.{evil}.{signature}",
                "alg_none": f"{none_header}.{evil}.",
                "hs256": f"{hs_header}.{evil}.{hs_sig}",
            }
        )
    )


if __name__ == "__main__":
    {"verify": verify, "forge": forge}[sys.argv[1]](json.load(sys.stdin))
