# Mints an upload token (docs/keys-and-tokens.md). Python 3, standard library only.
import base64, hashlib, hmac, json, secrets, time

def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")

def mint_upload_token(kid, secret, ttl_secs, max_files, max_bytes, origin=None):
    claims = {"kid": kid, "exp": int(time.time()) + ttl_secs, "jti": secrets.token_hex(16),
              "max_files": max_files, "max_bytes": max_bytes}
    if origin:
        claims["origin"] = origin  # the page's origin, e.g. "https://www.example.com"
    body = b64url(json.dumps(claims).encode("utf-8"))
    mac = hmac.new(secret.encode("utf-8"), body.encode("ascii"), hashlib.sha256).digest()
    return body + "." + b64url(mac)
