#!/usr/bin/env python3
"""Prints presigned S3 URLs (AWS Signature Version 4, query-string auth).

For the direct-PUT baseline of bench/s3.sh: wrk cannot sign requests, so
it cycles through URLs signed here in advance, one object key each. Standard
library only; path-style URLs (http://HOST:PORT/BUCKET/KEY).

  presign.py --endpoint http://127.0.0.1:3900 --bucket images \\
      --region garage --count 1000 --prefix bench/small- --suffix .jpg
      prints 1000 lines of path?query (what wrk's request line takes)
  presign.py ... --key big.jpg --full
      prints one complete URL (for curl)

Credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
"""

import argparse
import datetime
import hashlib
import hmac
import os
import sys
import urllib.parse


def quote(s: str, safe: str = "-_.~") -> str:
    return urllib.parse.quote(s, safe=safe)


def signing_key(secret: str, date: str, region: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def presign(method, endpoint, bucket, key, region, key_id, secret, expires, now):
    url = urllib.parse.urlsplit(endpoint)
    host = url.netloc
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    scope = f"{date}/{region}/s3/aws4_request"
    path = "/" + quote(bucket) + "/" + quote(key, safe="-_.~/")
    params = {
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Credential": f"{key_id}/{scope}",
        "X-Amz-Date": amz_date,
        "X-Amz-Expires": str(expires),
        "X-Amz-SignedHeaders": "host",
    }
    query = "&".join(f"{quote(k)}={quote(v)}" for k, v in sorted(params.items()))
    canonical = "\n".join(
        [method, path, query, f"host:{host}\n", "host", "UNSIGNED-PAYLOAD"]
    )
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            amz_date,
            scope,
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    signature = hmac.new(
        signing_key(secret, date, region), to_sign.encode(), hashlib.sha256
    ).hexdigest()
    return f"{path}?{query}&X-Amz-Signature={signature}", f"{url.scheme}://{host}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--endpoint", required=True)
    p.add_argument("--bucket", required=True)
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--method", default="PUT")
    p.add_argument("--expires", type=int, default=3600)
    p.add_argument("--key", help="one object key")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--prefix", default="", help="keys PREFIX<n>SUFFIX, n = 0..count-1")
    p.add_argument("--suffix", default="")
    p.add_argument("--full", action="store_true", help="print whole URLs")
    a = p.parse_args()
    key_id = os.environ.get("AWS_ACCESS_KEY_ID")
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not key_id or not secret:
        print("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set", file=sys.stderr)
        return 2
    now = datetime.datetime.now(datetime.timezone.utc)
    keys = [a.key] if a.key else (f"{a.prefix}{n}{a.suffix}" for n in range(a.count))
    out = sys.stdout
    for key in keys:
        target, origin = presign(
            a.method, a.endpoint, a.bucket, key, a.region, key_id, secret, a.expires, now
        )
        out.write((origin + target if a.full else target) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
