// Mints an upload token (docs/keys-and-tokens.md). Node.js, standard library only.
const crypto = require("crypto");

function mintUploadToken(kid, secret, ttlSecs, maxFiles, maxBytes, origin) {
  const claims = { kid, exp: Math.floor(Date.now() / 1000) + ttlSecs,
    jti: crypto.randomBytes(16).toString("hex"), max_files: maxFiles, max_bytes: maxBytes };
  if (origin) claims.origin = origin; // the page's origin, e.g. "https://www.example.com"
  const body = Buffer.from(JSON.stringify(claims)).toString("base64url");
  const mac = crypto.createHmac("sha256", secret).update(body).digest("base64url");
  return body + "." + mac;
}

module.exports = { mintUploadToken };
